"""Extraction throughput, size on disk and peak memory, this code next to a previous version's,
at two sample counts, in one run.

    python benchmarks/bench_extract.py                  # 1k and 8k samples, default model
    python benchmarks/bench_extract.py --samples 200 800 --baseline 4c60924
    python benchmarks/bench_extract.py --baseline none  # this code only

The previous version (``--baseline``, a commit: by default 4c60924, the last main of store
format 1) is checked out into a temporary git worktree and run from there (PYTHONPATH points
at it); the worktree is removed at the end. Each extraction runs in its own process, so its
peak RSS is its own, and versions alternate at each size. Prints one row per version and size
(attention rows/s, the CPU seconds of the call, store MB/s, attention bytes per row, peak
RSS), then the ratios: this code over the baseline at each size, and per version the largest
size over the smallest (rows/s should stay flat and peak RSS should not grow with the number
of samples: streaming writes). Wall and CPU time are those of the ``extract()`` call, imports
excluded, as a notebook would see it; CPU time counts every thread, and is the steadier figure
on a machine shared with other work.

    python benchmarks/bench_extract.py --encodings      # bytes per attention row by encoding

``--encodings`` instead extracts ``--samples`` (the first size) with this code, reads the
attention back and writes it again under each candidate encoding, one file per layer and one
row group per head and batch of 128 samples as the store writes them, and prints the bytes per
attention row and the seconds each took to write (docs/measurements.md has the table).
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
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
t, c = time.perf_counter(), cpu()
r = extract(store, checkpoint="default", samples=samples, seed=0, **kwargs)
wall, cpu_s = time.perf_counter() - t, cpu() - c
run = Store(store).read("runs").to_pylist()[0]
n = run["n_layers"] * run["n_heads"] * samples * 2 * run["n_points"]
print(json.dumps({"wall_s": wall, "cpu_s": cpu_s, "attention_rows": n, "run_id": r.run_id,
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


def encodings(samples: int) -> None:
    """Bytes per attention row of one extraction's attention under each candidate encoding."""
    import time

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from attnstore.extraction import extract
    from attnstore.schema import TABLES, full_rows, parquet_options
    from attnstore.store import Store

    floats = ["entropy", "max_weight", "mass_x", "mass_y", "mass_y_pos"]
    bss = {c: "BYTE_STREAM_SPLIT" for c in [*floats, "weights.list.element"]}
    fmt1 = {"compression": "zstd", "use_dictionary": True}
    plain = {"compression": "zstd", "use_dictionary": False}
    split = {**plain, "column_encoding": bss}
    weights_only = {**plain, "column_encoding": {"weights.list.element": "BYTE_STREAM_SPLIT"}}
    fmt2 = parquet_options(TABLES["attention"])
    variants = [  # name, keys kept, weights' values, row order, batches per row group, options
        ("80 keys, dictionary (format 1)", "all", "f32", "sq", 1, fmt1),
        ("80 keys, no dictionary, PLAIN", "all", "f32", "sq", 1, plain),
        ("80 keys, BYTE_STREAM_SPLIT floats", "all", "f32", "sq", 1, split),
        ("causal keys, dictionary", "causal", "f32", "sq", 1, fmt1),
        ("causal keys, no dictionary, PLAIN", "causal", "f32", "sq", 1, plain),
        ("causal keys, BYTE_STREAM_SPLIT weights only", "causal", "f32", "sq", 1, weights_only),
        ("causal keys, BYTE_STREAM_SPLIT floats (format 2)", "causal", "f32", "sq", 1, fmt2),
        ("  the same, zstd level 3", "causal", "f32", "sq", 1, {**fmt2, "compression_level": 3}),
        ("  the same, zstd level 9", "causal", "f32", "sq", 1, {**fmt2, "compression_level": 9}),
        ("  the same, brotli", "causal", "f32", "sq", 1, {**fmt2, "compression": "brotli"}),
        ("  the same, 4 batches per row group", "causal", "f32", "sq", 4, fmt2),
        ("  the same, rows by (query_pos, sample)", "causal", "f32", "qs", 1, fmt2),
        ("float16-rounded float32, dictionary", "causal", "r16", "sq", 1, fmt1),
        ("float16-rounded float32 (--precision float16)", "causal", "r16", "sq", 1, fmt2),
        ("float16 column (halffloat), PLAIN", "causal", "f16", "sq", 1, plain),
    ]
    tmp = Path(tempfile.mkdtemp(prefix="attnstore-encodings-"))
    try:
        run_id = extract(tmp / "store", samples=samples, seed=0).run_id
        s = Store(tmp / "store")
        run = s.run(run_id)
        S, H, T = run["n_samples"], run["n_heads"], 2 * run["n_points"]
        layers = []
        for layer in range(run["n_layers"]):
            t = s.read("attention", run_id=run_id, layer=layer)
            t = t.select(TABLES["attention"].schema.names).sort_by(
                [("head", "ascending"), ("sample", "ascending"), ("query_pos", "ascending")]
            )
            layers.append((t, full_rows(t.column("weights"), T)))
        n_rows = sum(t.num_rows for t, _ in layers)
        print(f"{samples} samples, {n_rows} attention rows")
        print(f"{'attention encoding':50} {'B/row':>6} {'write s':>8}")
        for name, keep, value, order, k, options in variants:
            size, seconds = 0, 0.0
            for t, rows in layers:
                qp = t.column("query_pos").to_numpy()
                n_keys = qp.astype(np.int64) + 1 if keep == "causal" else np.full(len(qp), T)
                vals = rows[np.arange(T)[None, :] < n_keys[:, None]]
                if value != "f32":
                    vals = vals.astype(np.float16)
                    vals = vals.astype(np.float32) if value == "r16" else vals
                offsets = pa.array(np.concatenate([[0], np.cumsum(n_keys)]).astype(np.int32))
                w = pa.ListArray.from_arrays(offsets, pa.array(vals))
                v = t.set_column(t.schema.get_field_index("weights"), "weights", w)
                groups = [  # the store's order: batch after batch, head after head
                    v.slice((head * S + lo) * T, (min(lo + 128 * k, S) - lo) * T)
                    for lo in range(0, S, 128 * k)
                    for head in range(H)
                ]
                if order == "qs":
                    by = [("query_pos", "ascending"), ("sample", "ascending")]
                    groups = [g.sort_by(by) for g in groups]
                path = tmp / "layer.parquet"
                start = time.perf_counter()
                with pq.ParquetWriter(path, v.schema, **options) as writer:
                    for g in groups:
                        writer.write_table(g, row_group_size=1 << 22)
                seconds += time.perf_counter() - start
                size += path.stat().st_size
            print(f"{name:50} {size / n_rows:6.1f} {seconds:8.1f}", flush=True)
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
    ap.add_argument(
        "--encodings",
        action="store_true",
        help="bytes per attention row by encoding, for the first --samples size",
    )
    args = ap.parse_args()
    if args.encodings:
        encodings(args.samples[0])
        return
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
        f"{'version':>9} {'samples':>8} {'rows':>10} {'wall s':>7} {'CPU s':>6} {'rows/s':>8} "
        f"{'MB/s':>6} {'B/row':>6} {'store MB':>9} {'peak RSS MB':>12}"
    )
    for name, rs in results.items():
        for r in rs:
            print(
                f"{name:>9} {r['samples']:>8} {r['attention_rows']:>10} {r['wall_s']:>7.1f} "
                f"{r['cpu_s']:>6.1f} {rate(r):>8.0f} {r['store_bytes'] / r['wall_s'] / 1e6:>6.1f} "
                f"{per_row(r):>6.1f} {r['store_bytes'] / 1e6:>9.1f} {r['peak_rss_mb']:>12.0f}"
            )
    if len(versions) > 1:
        base = results[args.baseline]
        for old, new in zip(base, results["current"], strict=True):
            same = "same run id" if old["run_id"] == new["run_id"] else "run ids differ"
            print(
                f"current / {args.baseline} at {new['samples']} samples: rows/s "
                f"{rate(new) / rate(old):.2f}x (CPU s {old['cpu_s'] / new['cpu_s']:.2f}x fewer), "
                f"B/row {per_row(new):.1f} / {per_row(old):.1f} "
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
