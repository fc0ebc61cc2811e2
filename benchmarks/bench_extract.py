"""Extraction throughput, size on disk and peak memory, this code next to a previous version's,
at two sample counts, in one run.

    python benchmarks/bench_extract.py                  # 1k and 8k samples, default model
    python benchmarks/bench_extract.py --samples 200 800 --baseline 4c60924
    python benchmarks/bench_extract.py --baseline none  # this code only

The previous version (``--baseline``, a commit: by default 4c60924, the last main of store
format 1) is checked out into a temporary git worktree and run from there (PYTHONPATH points
at it); the worktree is removed at the end. Each extraction runs in its own process, so its
peak RSS is its own, and versions alternate at each size. Prints one row per version and size
(attention rows/s, store MB/s, attention bytes per row, peak RSS), then the ratios: this code
over the baseline at each size, and per version the largest size over the smallest (rows/s
should stay flat and peak RSS should not grow with the number of samples: streaming writes).
Wall time is that of the ``extract()`` call, imports excluded, as a notebook would see it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = r"""
import json, resource, sys, time
import attnstore
from attnstore.extraction import extract
from attnstore.store import Store
store, samples, batch = sys.argv[1], int(sys.argv[2]), sys.argv[3]
kwargs = {} if batch == "default" else {"batch_size": int(batch)}
t = time.perf_counter()
r = extract(store, checkpoint="default", samples=samples, seed=0, **kwargs)
wall = time.perf_counter() - t
run = Store(store).read("runs").to_pylist()[0]
n = run["n_layers"] * run["n_heads"] * samples * 2 * run["n_points"]
print(json.dumps({"wall_s": wall, "attention_rows": n, "run_id": r.run_id,
                  "package": attnstore.__file__,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _bytes(path: Path, table: str) -> int:
    return sum(f.stat().st_size for f in (path / table).glob("**/*.parquet"))


def _extract(code: Path, samples: int, batch: str) -> dict:
    """One extraction in a fresh process running the package found at ``code``."""
    tmp = Path(tempfile.mkdtemp(prefix="attnstore-bench-"))
    try:
        env = {**os.environ, "PYTHONPATH": str(code)}
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(tmp / "store"), str(samples), batch],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,  # not the repository: the package comes from PYTHONPATH only
        )
        if out.returncode:
            raise SystemExit(f"extraction from {code} failed:\n{out.stderr[-4000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if Path(r["package"]).resolve().parent.parent != code.resolve():
            raise SystemExit(f"the child imported {r['package']}, not the code in {code}")
        store = tmp / "store"
        tables = ("runs", "inputs", "functions", "predictions", "attention")
        r |= {
            "samples": samples,
            "attention_bytes": _bytes(store, "attention"),
            "store_bytes": sum(_bytes(store, t) for t in tables),
        }
        return r
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, nargs="+", default=[1000, 8000])
    ap.add_argument(
        "--batch-size",
        default="default",
        help="prompts per forward pass, for both versions [default: each version's own]",
    )
    ap.add_argument(
        "--baseline", default="4c60924", help="commit to compare with, or 'none' [4c60924]"
    )
    args = ap.parse_args()
    versions = {"current": ROOT}
    worktree = None
    if args.baseline != "none":
        worktree = Path(tempfile.mkdtemp(prefix="attnstore-baseline-")) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.baseline],
            check=True,
            capture_output=True,
        )
        versions = {args.baseline: worktree, "current": ROOT}
    try:
        results = {name: [] for name in versions}
        for n in args.samples:
            for name, code in versions.items():
                results[name].append(_extract(code, n, args.batch_size))
    finally:
        if worktree is not None:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)],
                check=False,
            )
            shutil.rmtree(worktree.parent, ignore_errors=True)

    def rate(r: dict) -> float:
        return r["attention_rows"] / r["wall_s"]

    def per_row(r: dict) -> float:
        return r["attention_bytes"] / r["attention_rows"]

    print(
        f"{'version':>9} {'samples':>8} {'rows':>10} {'wall s':>8} {'rows/s':>9} {'MB/s':>7} "
        f"{'B/row':>6} {'store MB':>9} {'peak RSS MB':>12}"
    )
    for name, rs in results.items():
        for r in rs:
            print(
                f"{name:>9} {r['samples']:>8} {r['attention_rows']:>10} {r['wall_s']:>8.1f} "
                f"{rate(r):>9.0f} {r['store_bytes'] / r['wall_s'] / 1e6:>7.1f} "
                f"{per_row(r):>6.1f} "
                f"{r['store_bytes'] / 1e6:>9.1f} {r['peak_rss_mb']:>12.0f}"
            )
    if len(versions) > 1:
        base = results[args.baseline]
        for old, new in zip(base, results["current"], strict=True):
            same = "same run id" if old["run_id"] == new["run_id"] else "run ids differ"
            print(
                f"current / {args.baseline} at {new['samples']} samples: rows/s "
                f"{rate(new) / rate(old):.2f}x, B/row {per_row(new):.1f} / {per_row(old):.1f} "
                f"= {per_row(new) / per_row(old):.2f}x, peak RSS "
                f"{new['peak_rss_mb'] / old['peak_rss_mb']:.2f}x ({same})"
            )
    for name, rs in results.items():
        if len(rs) > 1:
            a, b = rs[0], rs[-1]
            print(
                f"{name} {b['samples']}/{a['samples']} samples: peak RSS "
                f"{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x, rows/s {rate(b) / rate(a):.2f}x"
            )


if __name__ == "__main__":
    main()
