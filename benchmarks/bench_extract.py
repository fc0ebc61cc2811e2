"""Extraction throughput, size on disk and peak memory, at two sample counts, in one run.

    python benchmarks/bench_extract.py                  # 1k and 8k samples, default model
    python benchmarks/bench_extract.py --samples 200 800

Each extraction runs in its own process, so its peak RSS is its own. Prints one row per size and
the ratios between the largest and the smallest: rows/s should stay flat and peak RSS should not
grow with the number of samples (streaming writes).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from attnstore.extraction import extract
from attnstore.store import Store
store, samples, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = time.perf_counter()
r = extract(store, checkpoint="default", samples=samples, batch_size=batch, seed=0)
wall = time.perf_counter() - t
rows = Store(store).read("runs").to_pylist()[0]
n = rows["n_layers"] * rows["n_heads"] * samples * 2 * rows["n_points"]
print(json.dumps({"wall_s": wall, "attention_rows": n,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _bytes(path: Path, table: str) -> int:
    return sum(f.stat().st_size for f in (path / table).glob("**/*.parquet"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, nargs="+", default=[1000, 8000])
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    results = []
    for n in args.samples:
        tmp = Path(tempfile.mkdtemp(prefix="attnstore-bench-"))
        try:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(tmp), str(n), str(args.batch_size)],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            total = sum(
                _bytes(tmp, t) for t in ("runs", "inputs", "functions", "predictions", "attention")
            )
            r |= {"samples": n, "attention_bytes": _bytes(tmp, "attention"), "store_bytes": total}
            results.append(r)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"{'samples':>8} {'rows':>10} {'wall s':>8} {'rows/s':>9} {'MB/s':>7} "
        f"{'B/row':>6} {'store MB':>9} {'peak RSS MB':>12}"
    )
    for r in results:
        print(
            f"{r['samples']:>8} {r['attention_rows']:>10} {r['wall_s']:>8.1f} "
            f"{r['attention_rows'] / r['wall_s']:>9.0f} "
            f"{r['store_bytes'] / r['wall_s'] / 1e6:>7.1f} "
            f"{r['attention_bytes'] / r['attention_rows']:>6.1f} "
            f"{r['store_bytes'] / 1e6:>9.1f} {r['peak_rss_mb']:>12.0f}"
        )
    if len(results) > 1:
        a, b = results[0], results[-1]
        print(
            f"ratio {b['samples']}/{a['samples']} samples: peak RSS "
            f"{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x, rows/s "
            f"{(b['attention_rows'] / b['wall_s']) / (a['attention_rows'] / a['wall_s']):.2f}x"
        )


if __name__ == "__main__":
    main()
