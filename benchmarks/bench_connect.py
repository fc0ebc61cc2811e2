"""What the locked-down connection costs: every named query on ``attnstore.connect()`` (DuckDB's
Parquet reader over each table's committed files through the read-only StoreFiles, file access
switched off) against the same SQL on a plain DuckDB connection whose table views read the same
committed files by their real paths with ``read_parquet`` (what a user's own DuckDB session
does once it has the file list), alternating the two in one run.

    python benchmarks/bench_connect.py --store /tmp/qbench     # a store bench_queries.py built

Prints, per query, the median SQL time of each connection over ``--repeats`` runs after a
warm-up, and the ratio (connect() / read_parquet).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import duckdb

from attnstore.connection import SHARED_MACROS, SHARED_VIEWS, connect, macro_sql, view_sql
from attnstore.queries import _resolve, load_queries
from attnstore.schema import TABLES
from attnstore.store import Store


def read_parquet_connection(store: Store):
    """The same views over DuckDB's own Parquet reader given the committed files' real paths
    (hive partitioning from the paths), nothing locked."""
    con = duckdb.connect()
    types = {"run_id": "VARCHAR", "analysis_id": "VARCHAR", "layer": "SMALLINT"}
    for name, t in TABLES.items():
        cols = ", ".join(f'"{c}"' for c in t.columns)
        if store.files(name):
            hive = ", ".join(f"'{k}': {types[k]}" for k, _ in t.partition)
            files = [str(f) for f in store.files(name)]
            src = f"read_parquet({files!r}, hive_partitioning = true, hive_types = {{{hive}}})"
        else:
            con.register(f"__empty_{name}", t.full_schema.empty_table())
            src = f"__empty_{name}"
        con.execute(f"create view {name} as select {cols} from {src}")
    for name in SHARED_MACROS:
        con.execute(macro_sql(name))
    for name in SHARED_VIEWS:
        con.execute(f"create view {name} as {view_sql(name)}")
    return con


def timed(con, sql: str, params: dict) -> float:
    t = time.perf_counter()
    con.execute(sql, params or None).fetchall()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    store = Store(args.store)
    locked, plain = connect(store), read_parquet_connection(store)
    print(f"{'query':28s} {'connect() ms':>13s} {'read_parquet ms':>16s} {'ratio':>6s}")
    ratios = []
    for name, q in load_queries().items():
        defaults = {"layer": 0, "head": 0, "sample": 0}
        values = q.bind({p.name: defaults[p.name] for p in q.params if p.required})
        try:
            values = _resolve(locked, store, q, values)
        except Exception as e:  # e.g. a query needing two runs on a one-run store
            print(f"{name:28s} skipped: {e}")
            continue
        params = {n: values[n] for n in q.used_params}
        times: dict[str, list[float]] = {"locked": [], "plain": []}
        for i in range(args.repeats + 1):
            for key, con in (("locked", locked), ("plain", plain)):
                took = timed(con, q.sql, params)
                if i:  # the first round warms both up
                    times[key].append(took)
        a, b = (statistics.median(times[k]) * 1e3 for k in ("locked", "plain"))
        ratios.append(a / b)
        print(f"{name:28s} {a:13.0f} {b:16.0f} {a / b:6.2f}")
    print(f"\nmedian ratio {statistics.median(ratios):.2f} over {len(ratios)} queries")


if __name__ == "__main__":
    main()
