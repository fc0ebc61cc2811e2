"""Speed of the named queries on a store of the default model with 1,000 samples, in one run.

    python benchmarks/bench_queries.py                      # builds the store in a temp folder
    python benchmarks/bench_queries.py --store /tmp/bench   # builds it there, or reuses it
    python benchmarks/bench_queries.py --samples 200 --backend sklearn

    mkdir /tmp/old && git archive HEAD~3 queries | tar -x -C /tmp/old   # an older library ...
    python benchmarks/bench_queries.py --baseline /tmp/old/queries   # ... timed against this one

The store holds one extraction of the bundled model (``extract(store, samples=N)``) and one
analysis per view (raw and shared_keys by default; the torch backend unless told). Each query
runs with its default parameters (the latest run; head 0 of layer 0 where one is required):
one warm-up, then the median of ``--repeats`` runs, two ways: ``attnstore.query()`` end to end
(open the store, read every file footer, create the views, bind, run, hand back pandas) and
the SQL alone on a connection already open (which computes the shared views it reads: they
are views, not tables). The ranking queries are marked *. Then each shared view of
``connect()`` alone (``select count(*)``), the cost of each layer.

``--baseline DIR`` times another version of the library too: DIR is a ``queries/`` folder (its
named queries, and its ``views/`` and ``macros/``, created on a second connection in place of
this version's), each of its queries run in turn with this version's on the same parameters,
and the ratio printed: this version's time / the baseline's, measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import attnstore
from attnstore.connection import SHARED_VIEWS, connect
from attnstore.queries import Query, _resolve, load_queries
from attnstore.store import Store
from attnstore.vocab import BACKENDS, DEFAULT_BACKEND

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


def run_sql(con, text: str, params: dict):
    return con.execute(text, params or None).df()


def timed_pair(fn, other, repeats: int) -> tuple[float, float]:
    """Medians of ``fn`` and ``other`` run in turn, so that both see the same machine load,
    each going first every other time (the second of a pair runs on warmer caches)."""
    fn(), other()  # warm-up
    times: dict = {fn: [], other: []}
    for i in range(repeats):
        for f in (fn, other) if i % 2 == 0 else (other, fn):
            t0 = time.perf_counter()
            f()
            times[f].append(time.perf_counter() - t0)
    return statistics.median(times[fn]), statistics.median(times[other])


def baseline_connection(path: Path, folder: Path):
    """A connection over ``path`` whose shared macros and views are those of ``folder``
    (another version's ``queries/``), created in an order that satisfies their references."""
    import duckdb

    con = connect(path)
    pending = [("macro", f) for f in sorted((folder / "macros").glob("*.sql"))]
    pending += [("view", f) for f in sorted((folder / "views").glob("*.sql"))]
    while pending:  # a file that reads one not yet created waits for the next round
        failed = []
        for kind, f in pending:
            text = f.read_text()
            if kind == "macro":
                text = text.replace("create macro", "create or replace macro", 1)
            else:
                text = f"create or replace view {f.stem} as {text}"
            try:
                con.execute(text)
            except duckdb.Error:
                failed.append((kind, f))
        if len(failed) == len(pending):
            names = ", ".join(f.name for _, f in failed)
            raise SystemExit(f"--baseline {folder}: cannot create {names}")
        pending = failed
    return con


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--store", type=Path, help="Store folder [default: a temporary one].")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS)
    ap.add_argument("--views", default="raw,shared_keys", help="Comma-separated row views.")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--baseline", type=Path, help="A queries/ folder of another version to time against."
    )
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
        base = {
            f.stem: Query(f.stem, f, f.read_text())
            for f in (sorted(args.baseline.glob("*.sql")) if args.baseline else [])
        }
        base_con = baseline_connection(path, args.baseline) if args.baseline else None
        extra = f" {'baseline ms':>12} {'ratio':>6}" if args.baseline else ""
        print(f"{'query':<27} {'rows':>6} {'query() ms':>11} {'SQL only ms':>12}{extra}")
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
            sql = partial(run_sql, con, q.sql, bound)
            columns = ""
            old = base.get(name)
            if old is not None:  # the same parameters, on the baseline's views
                old_bound = {n: values.get(n) for n in old.used_params}
                old_sql = partial(run_sql, base_con, old.sql, old_bound)
                sql_only, baseline = timed_pair(sql, old_sql, args.repeats)
                columns = f" {baseline * 1e3:>12.0f} {sql_only / baseline:>6.2f}"
            else:
                sql_only, _ = timed(sql, args.repeats)
            mark = "*" if name in RANKINGS else " "
            print(
                f"{name + mark:<27} {len(df):>6} {end_to_end * 1e3:>11.0f} {sql_only * 1e3:>12.0f}"
                + columns
            )
        print(f"\n{'shared view':<27} {'rows':>6} {'ms':>11}")
        for view in SHARED_VIEWS:
            took, n = timed(
                lambda v=view: con.execute(f"select count(*) from {v}").fetchall()[0][0],
                args.repeats,
            )
            print(f"{view:<27} {n:>6} {took * 1e3:>11.0f}")
        con.close()
        if base_con is not None:
            base_con.close()


if __name__ == "__main__":
    main()
