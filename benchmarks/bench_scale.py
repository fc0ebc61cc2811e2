"""What a store costs as it grows: stores of 1, 10, 50 and 200 runs, this code next to the
version before the store-at-scale work, in one run.

    python benchmarks/bench_scale.py                          # sizes 1 10 50 200, baseline fbe883a
    python benchmarks/bench_scale.py --sizes 1 10 --baseline none --samples 8
    python benchmarks/bench_scale.py --s3                     # also S3 requests (local moto)

Each version grows its own store (their formats differ) to each size in turn, in a fresh
process running that version (PYTHONPATH at its code; the baseline from a temporary git
worktree): each run is one extraction of the bundled model (``--samples`` prompts, its own
prompt seed) and one analysis, what a sweep item does. The baseline stops at
``--baseline-max`` runs (50: its writes grow with the store). At each size the store is copied,
and a fresh process of that version measures on the copy, imports excluded:

- ``files``: Parquet files in the store;
- ``open``: ``Store(path)``; ``connect``: ``attnstore.connect(store)``;
- ``+run``: one more extraction and analysis into the store (the cost of a sweep's next item);
- three named queries on an open connection (``Reader``), median of ``--repeats``, each
  next to the same SQL on a plain DuckDB connection whose views read the same committed files
  by their real paths with ``read_parquet`` (ratio: named / plain);
- ``query e2e``: ``attnstore.query()`` end to end (open, connect, resolve, run) for the first;
- ``cli`` and ``plain``: the same query as a user runs it, each a fresh process timed from
  start to exit (median of ``--repeats``, alternated, after one warm-up each, bytecode cached
  as an installed package has it): ``attnstore query NAME --store S --format csv`` against
  ``python -c`` with DuckDB alone that creates the same views over the same committed files
  by their real paths with ``read_parquet``, runs the same SQL and writes CSV (``diff``:
  cli - plain, target 0.3 s; the summary adds each one's CPU seconds, which other work on
  the machine sways less).

Then the ratios the store is held to: ``+run`` at the largest size over the same at 10 runs
(target 1.2x), named over plain (target 1.5x), and the build: the time to grow the store to its
largest size against that many runs built as sweeps of 10 (the time of the first 10 runs,
repeated; target 1.5x, linear rather than quadratic).

``--s3`` also copies each store into a bucket of a local moto server (127.0.0.1, a free port)
and counts the requests it logs for ``connect()`` and for each query, per version.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUERIES = (
    ("heads_by_cluster_quality", {}),
    ("head_attention", {"layer": 0, "head": 0}),
    ("head_emergence", {}),
)

CHILD = r"""
import json, statistics, sys, time
args = json.loads(sys.argv[1])
import attnstore, duckdb, fsspec, pandas, pyarrow.dataset  # imported before timing
from attnstore.connection import SHARED_MACROS, SHARED_VIEWS, connect, macro_sql, view_sql
from attnstore.queries import Reader, _resolve, query
from attnstore.schema import TABLES
from attnstore.store import Store

def plain_statements(store):
    # what a plain DuckDB session runs to see the store: a view per table over its committed
    # files by their real paths (read_parquet), the shared macros and views
    types = {"run_id": "VARCHAR", "analysis_id": "VARCHAR", "intervention_id": "VARCHAR",
             "layer": "SMALLINT"}
    out = []
    for name, t in TABLES.items():
        cols = ", ".join(f'"{c}"' for c in t.columns)
        files = [store.fs.url(f) if args["s3"] else str(f) for f in store.files(name)]
        if files:
            hive = ", ".join(f"'{k}': {types[k]}" for k, _ in t.partition)
            src = f"read_parquet({files!r}, hive_partitioning = true, hive_types = {{{hive}}})"
            out.append(f"create view {name} as select {cols} from {src}")
        else:  # no file yet: the declared columns (DuckDB's types of them), no rows
            empty = duckdb.from_arrow(t.full_schema.empty_table())
            nulls = ", ".join(f'null::{ty} as "{c}"' for c, ty in zip(empty.columns, empty.types)
                              if c in t.columns)
            out.append(f"create view {name} as select {nulls} where false")
    out += [macro_sql(name) for name in SHARED_MACROS]
    out += [f"create view {name} as {view_sql(name)}" for name in SHARED_VIEWS]
    return out

def plain_connection(store):
    con = duckdb.connect()
    for statement in plain_statements(store):
        con.execute(statement)
    return con

def e2e(store, name, params, bound):
    # attnstore query and a plain DuckDB script, each a fresh process, alternated
    import os, resource, subprocess, tempfile
    job = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump({"statements": plain_statements(store), "sql": store_sql[name], "params": bound}, job)
    job.close()
    cli = [sys.executable, "-m", "attnstore", "query", name, "--store", path, "--format", "csv"]
    cli += [a for k, v in params.items() for a in ("--param", f"{k}={v}")]
    runs = {"cli": cli, "plain": [sys.executable, "-c", PLAIN, job.name]}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = args["pycache"]  # cached bytecode, outside the repository
    times = {k: [] for k in [*runs, *(f"{k}_cpu" for k in runs)]}
    for i in range(args["repeats"] + 1):
        for key, command in runs.items():
            used = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
            took = time.perf_counter() - t
            now = resource.getrusage(resource.RUSAGE_CHILDREN)
            if i:  # the first round writes the bytecode and warms the file cache
                times[key].append(took)  # CPU seconds too: less swayed by other work
                cpu = now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime
                times[f"{key}_cpu"].append(cpu)
    os.unlink(job.name)
    return times

PLAIN = '''
import csv, json, sys
import duckdb
job = json.load(open(sys.argv[1]))
con = duckdb.connect()
for statement in job["statements"]:
    con.execute(statement)
cursor = con.execute(job["sql"], job["params"] or None)
out = csv.writer(sys.stdout, lineterminator="\\n")
out.writerow([d[0] for d in cursor.description])
out.writerows(cursor.fetchall())
'''
store_sql = {}

def requests():
    return sum(1 for _ in open(args["log"])) if args["log"] else 0

out = {"package": attnstore.__file__}
path = args["store"]
if args.get("grow_to"):
    from attnstore.analysis.run import analyze
    from attnstore.extraction import extract
    import pathlib
    have = len(list(pathlib.Path(path, "runs").glob("*"))) if pathlib.Path(path).exists() else 0
    built = []
    for i in range(have, args["grow_to"]):
        t = time.perf_counter()
        r = extract(path, checkpoint="default", samples=args["samples"], seed=i)
        analyze(path, r.run_id)
        built.append(time.perf_counter() - t)
    print(json.dumps({"package": attnstore.__file__, "built": built}))
    sys.exit(0)
n0 = requests()
t = time.perf_counter(); s = Store(path); out["open_s"] = time.perf_counter() - t
out["open_requests"] = requests() - n0
if not args["s3"]:
    out["files"] = sum(1 for _ in __import__("pathlib").Path(path).rglob("*.parquet"))
n0 = requests()
t = time.perf_counter(); con = connect(s); out["connect_s"] = time.perf_counter() - t
out["connect_requests"] = requests() - n0
con.close()
queries, queries_bound = {}, {}
with Reader(s) as reader:
    plain = None if args["s3"] else plain_connection(s)
    for name, params in args["queries"]:
        q = reader.named(name)
        values = _resolve(reader.connection(), s, q, q.bind(params))
        bound = {n: values[n] for n in q.used_params}
        store_sql[name], queries_bound[name] = q.sql, bound
        n0 = requests()
        reader.connection().execute(q.sql, bound or None).fetchall()
        row = {"requests": requests() - n0, "named_s": [], "plain_s": []}
        for i in range(args["repeats"]):
            t = time.perf_counter(); reader.connection().execute(q.sql, bound or None).fetchall()
            row["named_s"].append(time.perf_counter() - t)
            if plain is not None:
                t = time.perf_counter(); plain.execute(q.sql, bound or None).fetchall()
                row["plain_s"].append(time.perf_counter() - t)
        queries[name] = row
out["queries"] = queries
name, params = args["queries"][0]
t = time.perf_counter(); query(path, name, **params); out["e2e_s"] = time.perf_counter() - t
if args.get("pycache") and not args["s3"]:
    out["cli_e2e"] = e2e(s, name, params, queries_bound[name])
if args["grow"]:
    from attnstore.analysis.run import analyze
    from attnstore.extraction import extract
    t = time.perf_counter()
    r = extract(path, checkpoint="default", samples=args["samples"], seed=args["seed"])
    analyze(path, r.run_id)
    out["add_run_s"] = time.perf_counter() - t
print(json.dumps(out))
"""


def child(code: Path, store: str, **args) -> dict:
    """The CHILD measurements in a fresh process running the package at ``code``."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    payload = json.dumps({"store": store, "s3": store.startswith("s3://"), **args})
    out = subprocess.run(
        [sys.executable, "-c", CHILD, payload],
        capture_output=True,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),  # not the repository: the package comes from PYTHONPATH
    )
    if out.returncode:
        raise SystemExit(f"measuring with {code} failed:\n{out.stderr[-4000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(r["package"]).resolve().parent.parent != code.resolve():
        raise SystemExit(f"the child imported {r['package']}, not the code in {code}")
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50, 200])
    ap.add_argument("--samples", type=int, default=16, help="prompts per run")
    ap.add_argument("--repeats", type=int, default=5, help="runs of each query (median)")
    ap.add_argument(
        "--baseline",
        default="fbe883a",
        help="commit to compare with (the main before the store-at-scale work), or 'none'",
    )
    ap.add_argument("--s3", action="store_true", help="also count requests on a local S3")
    ap.add_argument(
        "--baseline-max",
        type=int,
        default=50,
        help="the largest store the baseline builds (its writes grow with the store: 200 runs "
        "take it about 20 minutes)",
    )
    args = ap.parse_args()
    sizes = sorted(set(args.sizes))
    work = Path(tempfile.mkdtemp(prefix="attnstore-scale-"))
    versions = {"current": ROOT}
    if args.baseline != "none":
        tree = work / "baseline"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.baseline],
            check=True,
            capture_output=True,
        )
        versions = {args.baseline: tree, "current": ROOT}
    server = None
    try:
        if args.s3:
            sys.path.insert(0, str(ROOT))
            from tests.conftest import moto_process

            log = work / "moto.log"
            server = moto_process(log)
            endpoint = server.__enter__()
            os.environ.update(
                AWS_ENDPOINT_URL=endpoint,
                AWS_ACCESS_KEY_ID="testing",
                AWS_SECRET_ACCESS_KEY="testing",
                AWS_DEFAULT_REGION="us-east-1",
            )
            import s3fs

            s3 = s3fs.S3FileSystem()
            s3.mkdir("scale")
        rows, built = [], {name: [] for name in versions}
        header()
        for size in sizes:
            for name, code in versions.items():
                if name != "current" and size > args.baseline_max:
                    continue
                store = work / f"grown-{name}"  # each version builds its own: formats differ
                built[name] += child(
                    code, str(store), grow_to=size, samples=args.samples, log=None
                )["built"]
                copy = work / f"copy-{name}"
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(store, copy)
                r = child(
                    code,
                    str(copy),
                    queries=QUERIES,
                    repeats=args.repeats,
                    grow=True,
                    samples=args.samples,
                    seed=100_000 + size,
                    log=None,
                    pycache=str(work / "pycache"),
                )
                r.update(version=name, size=size)
                if args.s3:
                    prefix = f"scale/{name}-{size}"
                    s3.put(str(store), prefix, recursive=True)
                    r["s3"] = child(
                        code,
                        f"s3://{prefix}",
                        queries=QUERIES,
                        repeats=1,
                        grow=False,
                        log=str(log),
                    )
                rows.append(r)
                report_row(r)
        summary(rows, built["current"], versions)
    finally:
        if server is not None:
            server.__exit__(None, None, None)
        if args.baseline != "none":
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / "baseline")],
                capture_output=True,
            )
        shutil.rmtree(work, ignore_errors=True)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.0f}"


def header() -> None:
    names = "  ".join(f"{q[:14]:>14s} named/plain" for q, _ in QUERIES)
    print(
        f"{'version':>8s} {'runs':>5s} {'files':>6s} {'open ms':>8s} {'conn ms':>8s} "
        f"{'+run s':>7s} {'e2e ms':>8s} {'cli ms':>7s} {'plain ms':>8s} {'diff s':>6s}  {names}"
    )


def report_row(r: dict) -> None:
    cells = []
    for q, _ in QUERIES:
        row = r["queries"][q]
        named = statistics.median(row["named_s"])
        plain = statistics.median(row["plain_s"])
        cells.append(f"{named * 1e3:8.1f} ms {named / plain:5.2f}x")
    cli, plain = (statistics.median(r["cli_e2e"][k]) for k in ("cli", "plain"))
    print(
        f"{r['version'][:8]:>8s} {r['size']:5d} {r['files']:6d} {_ms(r['open_s'])} "
        f"{_ms(r['connect_s'])} {r['add_run_s']:7.2f} {_ms(r['e2e_s'])} {cli * 1e3:7.0f} "
        f"{plain * 1e3:8.0f} {cli - plain:6.2f}  " + "  ".join(cells)
    )
    if "s3" in r:
        s3 = r["s3"]
        per_query = ", ".join(f"{q} {s3['queries'][q]['requests']}" for q, _ in QUERIES)
        print(
            f"{'':>8s} S3: open {s3['open_requests']} requests, connect "
            f"{s3['connect_requests']} ({s3['connect_s']:.2f} s), queries: {per_query}"
        )
    sys.stdout.flush()


def summary(rows: list[dict], built: list[float], versions: dict) -> None:
    print()
    for name in versions:
        mine = {r["size"]: r for r in rows if r["version"] == name}
        if 10 in mine and len(mine) > 1:
            big = max(mine)
            print(
                f"{name}: one more run into {big} runs / into 10 runs: "
                f"{mine[big]['add_run_s'] / mine[10]['add_run_s']:.2f}x (target 1.2x)"
            )
        ratios = [
            statistics.median(q["named_s"]) / statistics.median(q["plain_s"])
            for r in mine.values()
            for q in r["queries"].values()
        ]
        print(
            f"{name}: named / plain DuckDB, median over sizes and queries: "
            f"{statistics.median(ratios):.2f}x (target 1.5x)"
        )
        for size, r in sorted(mine.items()):
            cli, plain, cli_cpu, plain_cpu = (
                statistics.median(r["cli_e2e"][k]) for k in ("cli", "plain", "cli_cpu", "plain_cpu")
            )
            print(
                f"{name}: attnstore query {QUERIES[0][0]} end to end at {size} runs: "
                f"{cli:.2f} s against {plain:.2f} s for plain DuckDB: +{cli - plain:.2f} s "
                f"(target 0.3 s); CPU {cli_cpu:.2f} s against {plain_cpu:.2f} s: "
                f"+{cli_cpu - plain_cpu:.2f} s"
            )
    if len(built) >= 20:
        tens = sum(built[:10]) * len(built) / 10
        print(
            f"build of {len(built)} runs: {sum(built):.0f} s against {len(built) // 10} sweeps "
            f"of 10 runs {tens:.0f} s: {sum(built) / tens:.2f}x (target 1.5x)"
        )


if __name__ == "__main__":
    main()
