"""The batched backend: the reference analysis for many problems at once, in torch.

It computes what :func:`attnstore.analysis.backends.sklearn.fit_sklearn` computes (k-means for
every k, silhouette, the best k, a one-vs-rest linear SVM on the inputs) for a whole batch of
problems of one shape, on the CPU or a GPU, chunked over problems to bound memory. Python loops
run only over k, k-means++ steps, Lloyd and Newton iterations, never over problems.

How each step is computed
-------------------------
- *Distances.* Each problem's squared pairwise distances (n_rows, n_rows) are computed once, in
  float64 as scikit-learn computes them, symmetric and with identical rows exactly 0 apart by
  construction (``np.unique`` decides which k are skipped); every later step reads them and
  never the rows again.
- *k-means* is scikit-learn's (``torch_kmeans``): greedy k-means++, then Lloyd iterations until
  no label changes. The first initialisation uses the very random numbers
  ``KMeans(random_state=random_state)`` draws, so with ``n_init=1`` the clustering is the
  reference's. It runs in float64, and every choice in it uses the tie band of
  ``backends.base``.
- *Silhouette*: scikit-learn's definition, exactly, from the float64 distances.
- *SVM*: the optimum of the primal problem that ``LinearSVC(multi_class="ovr")`` solves through
  liblinear (``torch_svm``), found to machine precision by a generalised Newton method.

Portability: the matrix products round differently on different CPUs (and GPUs), so values
(inertias, silhouettes, coefficients) may differ in their last float64 bits from one machine to
another; the decisions taken on them (labels, best k, notes, the SVM's predictions) do not, up
to the tie band. The initialisations after the first draw from one ``torch.Generator`` on the
device, seeded with ``random_state``: a run is reproducible for a given seed, device and
``chunk_size``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from attnstore.analysis.backends.base import (
    ClusterResult,
    best_k,
    empty_result,
    n_coef_rows_max,
    present_classes,
    problem_notes,
    svm_accuracy,
)
from attnstore.analysis.backends.torch_kmeans import kmeans, one_hot
from attnstore.analysis.backends.torch_svm import linear_svc_ovr
from attnstore.errors import ConfigError

# Problems per chunk when chunk_size is None: on a CPU, enough to amortise each operation's
# overhead (larger chunks are no faster); on a GPU, as many as fit in about 12 GB for problems of
# 40 rows over 80 keys, since every Lloyd and Newton iteration costs a few kernel launches and a
# synchronisation per chunk. With n_init=1 the results do not depend on the chunks.
CPU_CHUNK = 256
CUDA_CHUNK = 1 << 17


def fit_torch(
    rows: np.ndarray | torch.Tensor,
    x: np.ndarray | torch.Tensor,
    k_values: np.ndarray,
    device: str | torch.device = "cpu",
    random_state: int = 0,
    n_init: int = 1,
    max_iter: int = 300,
    chunk_size: int | None = None,
) -> ClusterResult:
    """See :func:`_fit_torch`. On the CPU this runs on one thread: the work is many small
    batched operations, and two threads that wait on each other slowed it 7-60x whenever
    another process held a core (one thread is as fast on an idle machine)."""
    args = (rows, x, k_values, device, random_state, n_init, max_iter, chunk_size)
    if torch.device(device).type != "cpu":
        return _fit_torch(*args)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit_torch(*args)
    finally:
        torch.set_num_threads(threads)


def _fit_torch(
    rows: np.ndarray | torch.Tensor,
    x: np.ndarray | torch.Tensor,
    k_values: np.ndarray,
    device: str | torch.device = "cpu",
    random_state: int = 0,
    n_init: int = 1,
    max_iter: int = 300,
    chunk_size: int | None = None,
) -> ClusterResult:
    """Cluster and fit SVMs for rows of shape (n_problems, n_rows, n_keys) and inputs x of shape
    (n_problems, n_rows, n_features), as ``fit_sklearn`` does; ``k_values`` as from
    ``clip_k_values``. Arrays or tensors (on any device: a chunk at a time moves to ``device``).

    For every k, ``n_init`` k-means++ initialisations keep the lowest inertia. The first one
    draws the random numbers of ``KMeans(random_state=random_state)``, so with ``n_init=1`` the
    clustering is scikit-learn's own; more initialisations find lower inertias, and with them
    often other silhouettes and another best k than the reference. Lloyd iterations stop when no
    label changes, or after ``max_iter``. ``chunk_size`` problems are solved at once (None: a
    default for the device); the draws of the other initialisations depend on it."""
    if not isinstance(rows, torch.Tensor):
        rows = np.asarray(rows, dtype=np.float32)
    if not isinstance(x, torch.Tensor):
        x = np.asarray(x, dtype=np.float32)
    k_values = np.asarray(k_values, dtype=np.int64)
    if rows.ndim != 3 or x.ndim != 3 or tuple(x.shape[:2]) != tuple(rows.shape[:2]):
        raise ConfigError(
            f"rows of shape {tuple(rows.shape)} and x of shape {tuple(x.shape)} do not match; "
            "expected (n_problems, n_rows, n_keys) and (n_problems, n_rows, n_features)"
        )
    if n_init < 1 or max_iter < 1:
        raise ConfigError(f"n_init={n_init}, max_iter={max_iter}; both must be at least 1")
    if chunk_size is not None and chunk_size < 1:
        raise ConfigError(f"chunk_size={chunk_size}; expected a positive number or None")
    device = torch.device(device)
    P, N, _ = rows.shape
    if chunk_size is None:
        chunk_size = CUDA_CHUNK if device.type == "cuda" else CPU_CHUNK
    gen = torch.Generator(device=device)
    gen.manual_seed(random_state)

    r = empty_result(k_values, P, N, x.shape[2])
    decided = {"n_classes": np.zeros(P, dtype=np.int64), "converged": np.ones(P, dtype=bool)}
    for start in range(0, P, chunk_size):
        part = slice(start, min(start + chunk_size, P))
        out = _fit_chunk(
            torch.as_tensor(rows[part]).to(device, torch.float32),
            torch.as_tensor(x[part]).to(device, torch.float32),
            k_values,
            gen,
            random_state,
            n_init,
            max_iter,
        )
        for name, value in out.items():  # result arrays by their field names, and two more
            (decided[name] if name in decided else getattr(r, name))[part] = value
    r.best_k_ = best_k(k_values, r.silhouette_)
    r.notes_ = problem_notes(k_values, r.n_distinct_rows_, r.best_k_, **decided)
    return r


def _fit_chunk(
    rows: torch.Tensor,
    x: torch.Tensor,
    k_values: np.ndarray,
    gen: torch.Generator,
    random_state: int,
    n_init: int,
    max_iter: int,
) -> dict[str, np.ndarray]:
    """Everything for one chunk of problems: rows (P, N, D) and x (P, N, F) on the device."""
    P, N, _ = rows.shape
    K = len(k_values)
    dev = rows.device
    d2 = pairwise_sq_distances(rows)  # (P, N, N), float64
    dist = d2.sqrt()
    n_distinct = count_distinct(d2)
    sil = torch.full((P, K), math.nan, dtype=torch.float64, device=dev)
    inertia = torch.full_like(sil, math.nan)
    labels_k = torch.zeros((P, K, N), dtype=torch.int64, device=dev)
    for j, k in enumerate(int(k) for k in k_values):
        # Only the problems with at least k distinct rows (a view when that is all of them).
        ok = n_distinct >= k
        some = slice(None) if bool(ok.all()) else ok.nonzero().squeeze(1)
        if isinstance(some, torch.Tensor) and len(some) == 0:
            continue
        lab, inert = kmeans(d2[some], k, n_init, max_iter, gen, random_state)
        labels_k[some, j] = lab
        inertia[some, j] = inert
        sil[some, j] = _silhouette_from_distances(dist[some], lab, k)

    sil_np = sil.cpu().numpy()
    k_best = best_k(k_values, sil_np)
    j_best = np.searchsorted(k_values, k_best).clip(0, max(K - 1, 0))
    has_k = torch.as_tensor(k_best >= 2, device=dev)
    labels = torch.zeros((P, N), dtype=torch.int64, device=dev)
    if K:
        j_best_t = torch.as_tensor(j_best, device=dev)
        chosen = labels_k.gather(1, j_best_t[:, None, None].expand(P, 1, N)).squeeze(1)
        labels = torch.where(has_k[:, None], chosen, labels)

    n_coef_max = n_coef_rows_max(k_values)
    coef, intercept, n_coef, converged = linear_svc_ovr(x, labels, n_coef_max, fit=has_k)
    acc = svm_accuracy(x, labels, coef, intercept, n_coef)
    n_classes = present_classes(labels, max(n_coef_max, 2)).sum(1)
    return {
        "silhouette_": sil_np,
        "inertia_": inertia.cpu().numpy(),
        "labels_": labels.cpu().numpy(),
        "coef_": coef.cpu().numpy(),
        "intercept_": intercept.cpu().numpy(),
        "n_coef_rows_": n_coef.cpu().numpy(),
        "svm_accuracy_": acc.cpu().numpy(),
        "n_distinct_rows_": n_distinct.cpu().numpy(),
        "n_classes": n_classes.cpu().numpy(),
        "converged": converged.cpu().numpy(),
    }


# ---- distances and silhouette ---------------------------------------------------------------


def pairwise_sq_distances(rows: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between the rows of each problem in float64: rows of shape
    (n_problems, n_rows, n_keys) give (n_problems, n_rows, n_rows).

    As scikit-learn's ``euclidean_distances`` on float32 input: ``|a|^2 + |b|^2 - 2 a.b`` in
    float64, through a matrix product whose last bits depend on the kernel. What decisions rely
    on is exact by construction: one value per pair (the lower triangle, mirrored), so the
    matrix is symmetric to the bit on any machine; 0 on the diagonal; and the pairs within
    reach of the product's rounding (squared distance below 1e-9 of ``|a|^2 + |b|^2``) again
    from differences, so that identical rows are exactly 0 apart and distinct rows never are,
    as ``np.unique`` tells them apart."""
    r = rows.double()
    sq = r.square().sum(2)  # (P, N)
    norms = sq.unsqueeze(2) + sq.unsqueeze(1)
    d2 = torch.baddbmm(norms, r, r.mT, alpha=-2).clamp_min_(0).tril_(-1)  # pairs i > j only
    lower = torch.ones(d2.shape[1:], dtype=torch.bool, device=d2.device).tril(-1)
    p, i, j = ((d2 <= 1e-9 * norms) & lower).nonzero(as_tuple=True)
    for block in range(0, len(p), _PAIR_BLOCK):
        at = slice(block, block + _PAIR_BLOCK)
        d2[p[at], i[at], j[at]] = (r[p[at], i[at]] - r[p[at], j[at]]).square().sum(1)
    return d2 + d2.mT  # x + 0 is x: the upper triangle is the lower one, bit for bit


_PAIR_BLOCK = 1 << 18  # near pairs recomputed at once: 170 MB of differences for 80 keys


def count_distinct(d2: torch.Tensor) -> torch.Tensor:
    """The number of distinct rows of each problem, from squared distances (P, N, N) in which
    identical rows, and only those, are exactly 0 apart: rows equal to no earlier row."""
    N = d2.shape[1]
    earlier = torch.ones(N, N, dtype=torch.bool, device=d2.device).tril(-1)  # (i, j): j < i
    return N - ((d2 == 0) & earlier).any(2).sum(1)


def _silhouette_from_distances(dist: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Silhouettes from distances (P, N, N) and labels (P, N) in 0..k-1: ``(b - a) / max(a, b)``
    with a the mean distance to the rest of the own cluster and b the least mean distance to
    another cluster, 0 in singleton clusters (and where a = b = 0), averaged over the rows."""
    member = one_hot(labels, k, dist.dtype)  # (P, N, k)
    sums = torch.bmm(dist, member)  # (P, N, k): total distance from row i to cluster c
    counts = member.sum(1)  # (P, k)
    own = labels.unsqueeze(2)
    own_n = counts.gather(1, labels)  # (P, N)
    a = sums.gather(2, own).squeeze(2) / (own_n - 1).clamp_min(1)
    other = (counts > 0).unsqueeze(1) & (member == 0)  # (P, N, k)
    b = torch.where(other, sums / counts.clamp_min(1).unsqueeze(1), math.inf).amin(2)
    s = (b - a) / torch.maximum(a, b)
    s = torch.where((own_n > 1) & (torch.maximum(a, b) > 0), s, 0.0)
    return torch.where((counts > 0).sum(1) >= 2, s.mean(1), math.nan)
