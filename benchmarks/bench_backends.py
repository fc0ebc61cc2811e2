"""Speed of the two analysis backends on the same attention rows, in one run.

    python benchmarks/bench_backends.py                   # CPU: sklearn on 200, torch on 2,000
    python benchmarks/bench_backends.py --quick           # a smoke run
    python benchmarks/bench_backends.py --device cuda     # also 96 heads x 1,000 samples x 2

Both backends do the whole analysis (k-means and silhouette for k = 2..9, the best k, the SVM)
on synthetic causal attention rows with planted groups: 40 rows over 80 keys, 10 ±1 features.
scikit-learn solves one problem at a time, so it gets fewer problems; the table compares time per
problem, and the last column is the speed-up over scikit-learn on the CPU. With ``--device cuda``
the GPU solves 192,000 problems (96 heads x 1,000 samples x x/y queries) after a warm-up, from
rows already on the GPU and from rows in host memory, and the floor that reading the rows once
at about 3 TB/s would set. ``--threads`` limits both backends alike (torch and OpenMP); on a busy
machine two threads that wait on each other slow both by a large and varying factor.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from threadpoolctl import threadpool_limits

from attnstore.analysis.backends.base import clip_k_values
from attnstore.analysis.backends.sklearn import fit_sklearn
from attnstore.analysis.backends.torch import fit_torch

N_ROWS, N_KEYS, N_FEATURES = 40, 80, 10
GPU_PROBLEMS = 96 * 1000 * 2  # heads x samples x query kinds
HBM_BYTES_PER_S = 3e12  # an H100's memory bandwidth, roughly


def attention_like(n_problems: int, seed: int = 0, device: str = "cpu"):
    """Causal attention rows (n_problems, 40, 80) with 2 to 5 planted groups of rows per problem
    (a group adds 5 to the logits of its own 2 of the first 12 keys; row i sees keys 0..2 i), and
    ±1 inputs x (n_problems, 40, 10); float32 tensors on ``device``."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    P, N, D = n_problems, N_ROWS, N_KEYS
    n_groups = torch.randint(2, 6, (P, 1), generator=g, device=device)
    group = torch.randint(0, 1 << 30, (P, N), generator=g, device=device) % n_groups
    focus = torch.rand(P, 12, generator=g, device=device).argsort(1).view(P, 6, 2)
    keys = focus.gather(1, group.unsqueeze(2).expand(P, N, 2))  # (P, N, 2)
    logits = 0.5 * torch.randn(P, N, D, generator=g, device=device)
    logits.scatter_(2, keys, logits.gather(2, keys) + 5.0)
    visible = torch.arange(D, device=device) <= 2 * torch.arange(N, device=device)[:, None]
    rows = logits.masked_fill_(~visible, -torch.inf).softmax(2)
    x = torch.randint(0, 2, (P, N, N_FEATURES), generator=g, device=device).float() * 2 - 1
    return rows, x


def _timed(fn, sync=lambda: None) -> tuple[float, object]:
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - start, out


def _device_runs(dev: torch.device, n: int, n_check: int, k_values, n_init: int):
    """Time the whole analysis of n problems on dev, from rows already there and from rows in host
    memory; check the labels of the first n_check against scikit-learn's."""
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rows, x = attention_like(n, seed=1, device=dev)
    fit_torch(rows[:4096], x[:4096], k_values, device=dev, n_init=n_init)  # warm-up
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    on_dev_s, res = _timed(lambda: fit_torch(rows, x, k_values, device=dev, n_init=n_init), sync)
    peak = torch.cuda.max_memory_allocated(dev) if cuda else 0
    rows_h, x_h = rows.cpu().numpy(), x.cpu().numpy()
    host_s, _ = _timed(lambda: fit_torch(rows_h, x_h, k_values, device=dev, n_init=n_init), sync)
    ref = fit_sklearn(rows_h[:n_check], x_h[:n_check], k_values)
    same = (res.labels_[:n_check] == ref.labels_).all(1).mean()
    read = (rows.numel() + x.numel()) * 4
    floor = read / HBM_BYTES_PER_S
    name = torch.cuda.get_device_name(dev) if cuda else str(dev)
    lines = [
        f"{dev.type}: same labels as sklearn on {same:.1%} of {n_check} problems",
        f"{dev.type}: {name}; peak memory {peak / 2**30:.1f} GiB; reading the rows and x once "
        f"({read / 1e9:.2f} GB) at 3 TB/s takes {floor * 1e3:.2f} ms, "
        f"{on_dev_s / floor:.0f}x less than the analysis",
    ]
    return [("torch", dev.type, n, on_dev_s), ("torch", f"{dev.type}<-host", n, host_s)], lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=2000, help="problems for torch on the CPU")
    ap.add_argument("--sklearn-problems", type=int, default=200)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda to add the GPU runs")
    ap.add_argument("--gpu-problems", type=int, default=GPU_PROBLEMS)
    ap.add_argument("--n-init", type=int, default=1, help="k-means++ initialisations (torch)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for both backends")
    ap.add_argument("--quick", action="store_true", help="a few problems, to check it runs")
    args = ap.parse_args()
    if args.quick:
        args.problems, args.sklearn_problems = 300, 20
        args.gpu_problems = min(args.gpu_problems, 19_200)
    if args.threads:
        torch.set_num_threads(args.threads)
    k_values = clip_k_values(2, 9, N_ROWS)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load average {load}; "
        f"{N_ROWS} rows x {N_KEYS} keys, k = {k_values[0]}..{k_values[-1]}, "
        f"n_init {args.n_init}"
    )

    rows_t, x_t = attention_like(max(args.problems, args.sklearn_problems))
    rows, x = rows_t.numpy(), x_t.numpy()
    n_sk = args.sklearn_problems
    with threadpool_limits(args.threads):
        sk_s, ref = _timed(lambda: fit_sklearn(rows[:n_sk], x[:n_sk], k_values))
    fit_torch(rows[:64], x[:64], k_values, n_init=args.n_init)  # warm-up
    cpu_s, res = _timed(lambda: fit_torch(rows, x, k_values, n_init=args.n_init))
    results = [("sklearn", "cpu", n_sk, sk_s), ("torch", "cpu", len(rows), cpu_s)]
    same = (res.labels_[:n_sk] == ref.labels_).all(1).mean()
    agree = [f"cpu: same labels as sklearn on {same:.1%} of {n_sk} problems"]

    if args.device != "cpu":
        rows_out, lines = _device_runs(
            torch.device(args.device), args.gpu_problems, min(n_sk, 50), k_values, args.n_init
        )
        results += rows_out
        agree += lines

    per_sk = sk_s / n_sk
    print(
        f"\n{'backend':<8} {'device':<10} {'problems':>9} {'seconds':>8} {'ms/problem':>11} "
        f"{'problems/s':>11} {'vs sklearn':>11}"
    )
    for backend, device, n, s in results:
        print(
            f"{backend:<8} {device:<10} {n:>9} {s:>8.2f} {s / n * 1e3:>11.4f} "
            f"{n / s:>11.0f} {per_sk / (s / n):>10.1f}x"
        )
    print()
    print("\n".join(agree))


if __name__ == "__main__":
    main()
