"""Speed of the named queries on a store of the default model with 1,000 samples, in one run.

    python benchmarks/bench_queries.py                      # builds the store in a temp folder
    python benchmarks/bench_queries.py --store /tmp/bench   # builds it there, or reuses it
    python benchmarks/bench_queries.py --samples 200 --backend sklearn

The store holds one extraction of the bundled model (``extract(store, samples=N)``) and one
analysis per view (raw and shared_keys by default; the torch backend unless told). Each query
runs with its default parameters (the latest run; head 0 of layer 0 where one is required):
one warm-up, then the median of ``--repeats`` runs, two ways: ``attnstore.query()`` end to end
(open the store, read every file footer, create the views, bind, run, hand back pandas) and
the SQL alone on a connection already open. The ranking queries are marked *.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import attnstore
from attnstore.connection import connect
from attnstore.queries import _resolve, load_queries
from attnstore.store import Store

RANKINGS = (
    "heads_by_cluster_quality",
    "heads_by_literals",
    "heads_by_xy_difference",
    "heads_by_label_routing",
)


def build(path: Path, samples: int, backend: str, views: list[str]) -> str:
    """Extract the default model into ``path`` (if not there) and analyse it once per view."""
    from attnstore.analysis.run import analyze
    from attnstore.extraction import extract

    t0 = time.perf_counter()
    run = extract(path, checkpoint="default", samples=samples, progress=True)
    print(f"extract: {time.perf_counter() - t0:.1f} s (existed: {run.existed})", file=sys.stderr)
    for view in views:
        t0 = time.perf_counter()
        a = analyze(path, run.run_id, backend=backend, view=view, progress=True)
        took = time.perf_counter() - t0
        print(f"analyze {view} ({backend}): {took:.1f} s (existed: {a.existed})", file=sys.stderr)
    return run.run_id


def timed(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--store", type=Path, help="Store folder [default: a temporary one].")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--backend", default="torch", choices=("sklearn", "torch"))
    ap.add_argument("--views", default="raw,shared_keys", help="Comma-separated row views.")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.store or Path(tmp) / "store"
        run_id = build(path, args.samples, args.backend, args.views.split(","))
        con = connect(path)
        sizes = {
            t: con.execute(f"select count(*) from {t}").fetchall()[0][0]
            for t in ("attention", "fits", "clusters", "dominant_literals")
        }
        print(f"store {path}: run {run_id}, {args.samples} samples; rows: {sizes}")
        print(f"median of {args.repeats} runs after one warm-up; * = ranking query\n")
        print(f"{'query':<27} {'rows':>6} {'query() ms':>11} {'SQL only ms':>12}")
        s = Store(path)
        for name, q in load_queries().items():
            params = {p.name: 0 for p in q.params if p.required}
            if name == "compare_runs":  # one run: compare its two views
                views = args.views.split(",")
                params |= {"run_a": run_id, "view_a": views[0], "view_b": views[-1]}
            end_to_end, df = timed(
                lambda n=name, p=params: attnstore.query(path, n, **p), args.repeats
            )
            values = _resolve(con, s, q, q.bind(params))
            bound = {n: values[n] for n in q.used_params}
            sql_only, _ = timed(
                lambda q=q, b=bound: con.execute(q.sql, b or None).df(), args.repeats
            )
            mark = "*" if name in RANKINGS else " "
            print(
                f"{name + mark:<27} {len(df):>6} {end_to_end * 1e3:>11.0f} {sql_only * 1e3:>12.0f}"
            )
        con.close()


if __name__ == "__main__":
    main()
