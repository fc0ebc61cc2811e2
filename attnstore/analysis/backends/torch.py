"""The batched backend: the reference analysis for many problems at once, in torch.

It computes what :func:`attnstore.analysis.sklearn_backend.fit_sklearn` computes (k-means for
every k, silhouette, the best k, a one-vs-rest linear SVM on the inputs) for a whole batch of
problems of one shape, on the CPU or a GPU, chunked over problems to bound memory. Python loops
run only over k, k-means++ steps, Lloyd and Newton iterations, never over problems.

How each step is computed
-------------------------
- *Distances.* Each problem's squared pairwise distances (n_rows, n_rows) are computed once, in
  float64 as scikit-learn computes them, with identical rows exactly 0 apart (``np.unique``
  decides which k are skipped); every later step reads them and never the rows again.
- *k-means* is scikit-learn's: greedy k-means++ (``2 + int(log k)`` candidates per centre, the
  one that lowers the potential most is kept), then Lloyd iterations until no label changes (or
  ``max_iter``), an empty cluster taking the row farthest from its centre. The first
  initialisation uses the very random numbers ``KMeans(random_state=seed)`` draws (they do not
  depend on the data), so with ``n_init=1`` the clustering is the reference's. Centres are never
  formed: the squared distance from row i to the mean of cluster S is
  ``mean_{l in S} D2[i, l] - sum_{l, m in S} D2[l, m] / (2 |S|^2)``, and the inertia is
  ``sum_S sum_{l, m in S} D2[l, m] / (2 |S|)``. The iterations run in float32, inertias and
  silhouettes in float64.
- *Silhouette*: scikit-learn's definition, exactly, from the float64 distances.
- *SVM*: the optimum of the primal problem that ``LinearSVC(multi_class="ovr")`` solves through
  liblinear (C = 1, squared hinge, L2 penalty on the weights *and* the intercept, which is the
  weight of a constant feature 1), found by a generalised Newton method with a backtracking line
  search in float64: the objective is strongly convex and piecewise quadratic, so a few
  iterations reach it to machine precision, where liblinear stops at its tolerance.

The initialisations after the first draw from one ``torch.Generator`` on the device, seeded with
``seed``: a run is reproducible for a given seed, device and ``chunk_size``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from attnstore.analysis.result import (
    NOTE_CONSTANT_ROWS,
    NOTE_K_ABOVE_DISTINCT,
    NOTE_ONE_CLASS,
    NOTE_SVM_NOT_CONVERGED,
    ClusterResult,
    best_k,
)
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
    seed: int = 0,
    n_init: int = 1,
    max_iter: int = 300,
    chunk_size: int | None = None,
) -> ClusterResult:
    """See :func:`_fit_torch`. On the CPU this runs on one thread: the work is many small
    batched operations, and two threads that wait on each other slowed it 7-60x whenever
    another process held a core (one thread is as fast on an idle machine)."""
    if torch.device(device).type != "cpu":
        return _fit_torch(rows, x, k_values, device, seed, n_init, max_iter, chunk_size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit_torch(rows, x, k_values, device, seed, n_init, max_iter, chunk_size)
    finally:
        torch.set_num_threads(threads)


def _fit_torch(
    rows: np.ndarray | torch.Tensor,
    x: np.ndarray | torch.Tensor,
    k_values: np.ndarray,
    device: str | torch.device = "cpu",
    seed: int = 0,
    n_init: int = 1,
    max_iter: int = 300,
    chunk_size: int | None = None,
) -> ClusterResult:
    """Cluster and fit SVMs for rows of shape (n_problems, n_rows, n_keys) and inputs x of shape
    (n_problems, n_rows, n_features), as ``fit_sklearn`` does; ``k_values`` as from
    ``clip_k_values``. Arrays or tensors (on any device: a chunk at a time moves to ``device``).

    For every k, ``n_init`` k-means++ initialisations keep the lowest inertia. The first one
    draws the random numbers of ``KMeans(random_state=seed)``, so with ``n_init=1`` the
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
    F = x.shape[2]
    K = len(k_values)
    n_coef_max = int(k_values.max()) if K and k_values.max() > 2 else 1
    if chunk_size is None:
        chunk_size = CUDA_CHUNK if device.type == "cuda" else CPU_CHUNK
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)

    sil = np.full((P, K), np.nan)
    inertia = np.full((P, K), np.nan)
    labels = np.zeros((P, N), dtype=np.int64)
    coef = np.full((P, n_coef_max, F), np.nan)
    intercept = np.full((P, n_coef_max), np.nan)
    n_coef = np.zeros(P, dtype=np.int64)
    acc = np.full(P, np.nan)
    note_code = np.zeros(P, dtype=np.int64)
    n_distinct = np.zeros(P, dtype=np.int64)
    for start in range(0, P, chunk_size):
        part = slice(start, min(start + chunk_size, P))
        out = _fit_chunk(
            torch.as_tensor(rows[part]).to(device, torch.float32),
            torch.as_tensor(x[part]).to(device, torch.float32),
            k_values,
            n_coef_max,
            gen,
            seed,
            n_init,
            max_iter,
        )
        sil[part], inertia[part], labels[part] = out["sil"], out["inertia"], out["labels"]
        coef[part], intercept[part] = out["coef"], out["intercept"]
        n_coef[part], acc[part], note_code[part] = out["n_coef"], out["acc"], out["note_code"]
        n_distinct[part] = out["n_distinct"]
    return ClusterResult(
        k_values=k_values,
        silhouette_=sil,
        inertia_=inertia,
        best_k_=best_k(k_values, sil),
        labels_=labels,
        coef_=coef,
        intercept_=intercept,
        n_coef_rows_=n_coef,
        svm_accuracy_=acc,
        notes_=_NOTES[note_code],
        n_distinct_rows_=n_distinct,
    )


# Notes by code: 4 * (some k above the distinct rows) + (nothing, constant rows, one class,
# SVM not converged), in the order fit_sklearn writes them.
_SECOND = ["", NOTE_CONSTANT_ROWS, NOTE_ONE_CLASS, NOTE_SVM_NOT_CONVERGED]
_NOTES = np.array(
    [
        ",".join(n for n in (first, second) if n)
        for first in ("", NOTE_K_ABOVE_DISTINCT)
        for second in _SECOND
    ],
    dtype=object,
)


def _fit_chunk(
    rows: torch.Tensor,
    x: torch.Tensor,
    k_values: np.ndarray,
    n_coef_max: int,
    gen: torch.Generator,
    seed: int,
    n_init: int,
    max_iter: int,
) -> dict[str, np.ndarray]:
    """Everything for one chunk of problems: rows (P, N, D) and x (P, N, F) on the device."""
    P, N, _ = rows.shape
    K = len(k_values)
    d2 = pairwise_sq_distances(rows)  # (P, N, N), float64
    dist = d2.sqrt()
    # k-means runs in float32 (it reproduces scikit-learn's float32 k-means as well as float64
    # does, and a GPU moves half the bytes); inertia and silhouettes come from the float64.
    d2_work = d2.float()
    n_distinct = count_distinct(d2)
    sil = torch.full((P, K), math.nan, dtype=torch.float64, device=rows.device)
    inertia = torch.full_like(sil, math.nan)
    labels_k = torch.zeros((P, K, N), dtype=torch.int64, device=rows.device)
    for j, k in enumerate(int(k) for k in k_values):
        # Only the problems with at least k distinct rows (a view when that is all of them).
        ok = n_distinct >= k
        some = slice(None) if bool(ok.all()) else ok.nonzero().squeeze(1)
        if isinstance(some, torch.Tensor) and len(some) == 0:
            continue
        lab, inert = kmeans(d2_work[some], k, n_init, max_iter, gen, seed, exact_d2=d2[some])
        labels_k[some, j] = lab
        inertia[some, j] = inert
        sil[some, j] = _silhouette_from_distances(dist[some], lab, k)

    sil_np = sil.cpu().numpy()
    k_best = best_k(k_values, sil_np)
    j_best = np.searchsorted(k_values, k_best).clip(0, max(K - 1, 0))
    has_k = torch.as_tensor(k_best >= 2, device=rows.device)
    labels = torch.zeros((P, N), dtype=torch.int64, device=rows.device)
    if K:
        j_best_t = torch.as_tensor(j_best, device=rows.device)
        chosen = labels_k.gather(1, j_best_t[:, None, None].expand(P, 1, N)).squeeze(1)
        labels = torch.where(has_k[:, None], chosen, labels)

    coef, intercept, n_coef, converged = linear_svc_ovr(x, labels, n_coef_max, fit=has_k)
    acc = svm_accuracy(x, labels, coef, intercept, n_coef)
    # The note after the k's note: constant rows or one class without a best k; else the SVM's.
    n_classes = _present(labels, max(n_coef_max, 2)).sum(1)
    second = torch.where(
        has_k,
        torch.where(n_classes < 2, 2, torch.where(converged, 0, 3)),
        torch.where(n_distinct < 2, 1, 2),
    )
    above = torch.as_tensor(k_values, device=rows.device)[None, :] > n_distinct[:, None]
    note_code = 4 * above.any(1).long() + second if K else second
    return {
        "sil": sil_np,
        "inertia": inertia.cpu().numpy(),
        "labels": labels.cpu().numpy(),
        "coef": coef.cpu().numpy(),
        "intercept": intercept.cpu().numpy(),
        "n_coef": n_coef.cpu().numpy(),
        "acc": acc.cpu().numpy(),
        "note_code": note_code.cpu().numpy(),
        "n_distinct": n_distinct.cpu().numpy(),
    }


# ---- distances and silhouette ---------------------------------------------------------------


def pairwise_sq_distances(rows: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between the rows of each problem in float64: rows of shape
    (n_problems, n_rows, n_keys) give (n_problems, n_rows, n_rows).

    As scikit-learn's ``euclidean_distances`` on float32 input: ``|a|^2 + |b|^2 - 2 a.b`` in
    float64; then the pairs within reach of its rounding (squared distance below 1e-9 of
    ``|a|^2 + |b|^2``) again from differences, so that identical rows are exactly 0 apart and
    distinct rows never are, as ``np.unique`` tells them apart."""
    r = rows.double()
    sq = r.square().sum(2)  # (P, N)
    norms = sq.unsqueeze(2) + sq.unsqueeze(1)
    d2 = torch.baddbmm(norms, r, r.transpose(1, 2), alpha=-2).clamp_min_(0)
    d2.diagonal(dim1=1, dim2=2).zero_()
    lower = torch.ones(d2.shape[1:], dtype=torch.bool, device=d2.device).tril(-1)
    p, i, j = ((d2 <= 1e-9 * norms) & lower).nonzero(as_tuple=True)
    for block in range(0, len(p), _PAIR_BLOCK):
        at = slice(block, block + _PAIR_BLOCK)
        exact = (r[p[at], i[at]] - r[p[at], j[at]]).square().sum(1)
        d2[p[at], i[at], j[at]] = exact
        d2[p[at], j[at], i[at]] = exact
    return d2


_PAIR_BLOCK = 1 << 18  # near pairs recomputed at once: 170 MB of differences for 80 keys


def count_distinct(d2: torch.Tensor) -> torch.Tensor:
    """The number of distinct rows of each problem, from squared distances (P, N, N): rows equal
    to no earlier row."""
    N = d2.shape[1]
    earlier = torch.ones(N, N, dtype=torch.bool, device=d2.device).tril(-1)  # (i, j): j < i
    return N - ((d2 == 0) & earlier).any(2).sum(1)


def silhouette_scores(rows: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean silhouette of each problem, as ``sklearn.metrics.silhouette_score``: rows of shape
    (n_problems, n_rows, n_keys), labels of shape (n_problems, n_rows) in 0..k-1; NaN for a
    problem whose labels have fewer than two distinct values. Float64, shape (n_problems,)."""
    dist = pairwise_sq_distances(rows).sqrt_()
    return _silhouette_from_distances(dist, labels, int(labels.max()) + 1)


def _silhouette_from_distances(dist: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Silhouettes from distances (P, N, N) and labels (P, N) in 0..k-1: ``(b - a) / max(a, b)``
    with a the mean distance to the rest of the own cluster and b the least mean distance to
    another cluster, 0 in singleton clusters (and where a = b = 0), averaged over the rows."""
    one_hot = _one_hot(labels, k, dist.dtype)  # (P, N, k)
    sums = torch.bmm(dist, one_hot)  # (P, N, k): total distance from row i to cluster c
    counts = one_hot.sum(1)  # (P, k)
    own = labels.unsqueeze(2)
    own_n = counts.gather(1, labels)  # (P, N)
    a = sums.gather(2, own).squeeze(2) / (own_n - 1).clamp_min(1)
    other = (counts > 0).unsqueeze(1) & (one_hot == 0)  # (P, N, k)
    b = torch.where(other, sums / counts.clamp_min(1).unsqueeze(1), math.inf).amin(2)
    s = (b - a) / torch.maximum(a, b)
    s = torch.where((own_n > 1) & (torch.maximum(a, b) > 0), s, 0.0)
    return torch.where((counts > 0).sum(1) >= 2, s.mean(1), math.nan)


# ---- k-means --------------------------------------------------------------------------------


def kmeans(
    d2: torch.Tensor,
    k: int,
    n_init: int,
    max_iter: int,
    generator: torch.Generator,
    seed: int = 0,
    exact_d2: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means of each problem from its squared distances (P, N, N): ``n_init`` greedy k-means++
    initialisations (the first one scikit-learn's, see ``_kmeans_plusplus``), Lloyd iterations,
    the lowest inertia kept. Returns labels (P, N) and the inertia (P,) in float64, computed from
    ``exact_d2`` when given (the same distances in float64)."""
    centres, closest = _kmeans_plusplus(d2, k, n_init, generator, seed)
    P, I, N = closest.shape
    # Initial assignment: distances to the chosen rows, d2[p, centres[p, i, c], n] as (P, N, I, k).
    to_centres = d2.gather(1, centres.reshape(P, I * k, 1).expand(P, I * k, N))
    own_dist, labels = to_centres.view(P, I, k, N).permute(0, 3, 1, 2).min(3)  # (P, N, I)
    labels = _lloyd(d2, labels, own_dist, k, max_iter)
    inertia = _inertia(d2 if exact_d2 is None else exact_d2, labels, k)  # (P, I)
    best = inertia.argmin(1, keepdim=True)  # the first of equal inertias
    chosen = labels.gather(2, best.unsqueeze(1).expand(P, N, 1)).squeeze(2)
    return chosen, inertia.gather(1, best).squeeze(1)


def _kmeans_plusplus(
    d2: torch.Tensor, k: int, n_init: int, generator: torch.Generator, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy k-means++ as scikit-learn's ``_kmeans_plusplus``, n_init times per problem: the
    first centre uniformly, then for each next one ``2 + int(log k)`` candidates drawn with
    probability proportional to the squared distance to the nearest centre, keeping the one that
    leaves the least potential. The first initialisation takes the draws of
    ``KMeans(random_state=seed)``, the others come from ``generator``. Returns centre indices
    (P, I, k) and the squared distance of every row to its nearest centre (P, I, N)."""
    P, N, _ = d2.shape
    dev = d2.device
    first_sk, uniforms_sk = _sklearn_draws(seed, N, k)
    n_trials = uniforms_sk.shape[1]
    uniforms_sk = torch.as_tensor(uniforms_sk, device=dev, dtype=d2.dtype)
    first = torch.full((P, n_init), first_sk, device=dev)
    if n_init > 1:
        first[:, 1:] = torch.randint(N, (P, n_init - 1), generator=generator, device=dev)
    closest = d2.gather(1, first.unsqueeze(2).expand(P, n_init, N))  # (P, I, N)
    centres = [first]
    for c in range(1, k):
        cumulative = closest.cumsum(2)  # (P, I, N)
        draws = uniforms_sk[c - 1].expand(P, n_init, n_trials)
        if n_init > 1:
            more = torch.rand(
                (P, n_init - 1, n_trials), generator=generator, device=dev, dtype=d2.dtype
            )
            draws = torch.cat([draws[:, :1], more], 1)
        targets = draws * closest.sum(2, keepdim=True)
        candidates = torch.searchsorted(cumulative, targets).clamp_max_(N - 1)  # (P, I, T)
        to_cand = d2.gather(1, candidates.view(P, -1, 1).expand(P, n_init * n_trials, N))
        to_cand = torch.minimum(to_cand.view(P, n_init, n_trials, N), closest.unsqueeze(2))
        best = to_cand.sum(3).argmin(2, keepdim=True)  # (P, I, 1)
        closest = to_cand.gather(2, best.unsqueeze(3).expand(P, n_init, 1, N)).squeeze(2)
        centres.append(candidates.gather(2, best).squeeze(2))
    return torch.stack(centres, 2), closest


@functools.lru_cache(maxsize=256)
def _sklearn_draws(seed: int, n_rows: int, k: int) -> tuple[int, np.ndarray]:
    """The random numbers ``KMeans(n_clusters=k, random_state=seed).fit`` draws for k-means++
    on n_rows rows of weight 1: the first centre, then ``2 + int(log k)`` uniforms per further
    centre, shape (k - 1, n_trials). They do not depend on the rows, so one set serves every
    problem of a batch."""
    state = np.random.RandomState(seed)
    weight = np.ones(n_rows, dtype=np.float32)
    first = int(state.choice(n_rows, p=weight / weight.sum()))
    n_trials = 2 + int(np.log(k))
    uniforms = np.array([state.uniform(size=n_trials) for _ in range(k - 1)])
    return first, uniforms.reshape(k - 1, n_trials)


def _lloyd(
    d2: torch.Tensor, labels: torch.Tensor, own_dist: torch.Tensor, k: int, max_iter: int
) -> torch.Tensor:
    """Lloyd iterations on labels (P, N, I) until none changes, or ``max_iter``. Problems that
    have converged leave the working set once they are the majority, so the slow tail of the
    batch iterates alone."""
    labels = labels.clone()
    work = torch.arange(d2.shape[0], device=d2.device)
    w_d2, w_labels, w_dist = d2, labels, own_dist
    for _ in range(max_iter):
        new, w_dist = _lloyd_step(w_d2, w_labels, w_dist, k)
        changed = (new != w_labels).flatten(1).any(1)  # (W,)
        w_labels = new
        n_changed = int(changed.sum())
        if n_changed == 0:
            break
        if 2 * n_changed < len(work):
            labels[work] = w_labels
            work, w_d2 = work[changed], w_d2[changed]
            w_labels, w_dist = w_labels[changed], w_dist[changed]
    labels[work] = w_labels
    return labels


def _lloyd_step(
    d2: torch.Tensor, labels: torch.Tensor, own_dist: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Lloyd iteration: the labels (P, N, I) define the centres (the cluster means), every
    row goes to its nearest centre. Returns the new labels and each row's squared distance."""
    P, N, I = labels.shape
    one_hot = _one_hot(labels, k, d2.dtype)  # (P, N, I, k)
    counts = one_hot.sum(1)  # (P, I, k)
    if bool((counts == 0).any()):
        one_hot, counts = _relocate_empty(one_hot, counts, own_dist)
    inv_n = 1 / counts.clamp_min(1)
    # mean_d2[p, n, i, c]: the mean of D2[n, l] over the rows l of cluster c.
    mean_d2 = torch.bmm(d2, (one_hot * inv_n.unsqueeze(1)).view(P, N, I * k)).view(P, N, I, k)
    half_spread = (one_hot * mean_d2).sum(1) * (0.5 * inv_n)  # (P, I, k)
    own_dist, new = (mean_d2 - half_spread.unsqueeze(1)).min(3)
    return new, own_dist


def _relocate_empty(
    one_hot: torch.Tensor, counts: torch.Tensor, own_dist: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Give each empty cluster the row farthest from its centre (scikit-learn's rule), taken
    from a cluster that keeps at least one row. one_hot (P, N, I, k), counts (P, I, k),
    own_dist (P, N, I)."""
    k = one_hot.shape[3]
    score = own_dist.clone()
    for c in range(k):
        empty = counts[:, :, c] == 0  # (P, I)
        if not bool(empty.any()):
            continue
        label = one_hot.argmax(3, keepdim=True)  # (P, N, I, 1)
        movable = counts.unsqueeze(1).expand_as(one_hot).gather(3, label).squeeze(3) > 1
        far = torch.where(movable, score, -math.inf).argmax(1, keepdim=True)  # (P, 1, I)
        moved = torch.zeros_like(score, dtype=torch.bool).scatter_(1, far, True)
        moved &= empty.unsqueeze(1)
        target = torch.zeros(k, dtype=one_hot.dtype, device=one_hot.device)
        target[c] = 1
        one_hot = torch.where(moved.unsqueeze(3), target, one_hot)
        counts = one_hot.sum(1)
        score = torch.where(moved, -math.inf, score)
    return one_hot, counts


def _inertia(d2: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Sum of squared distances to the cluster means, (P, I), for labels (P, N, I):
    ``sum_c sum_{l, m in c} D2[l, m] / (2 |c|)``."""
    P, N, I = labels.shape
    one_hot = _one_hot(labels, k, d2.dtype)  # (P, N, I, k)
    sums = torch.bmm(d2, one_hot.view(P, N, I * k)).view(P, N, I, k)
    within = (one_hot * sums).sum(1)  # (P, I, k)
    return (within / (2 * one_hot.sum(1).clamp_min(1))).sum(2)


def _one_hot(labels: torch.Tensor, k: int, dtype: torch.dtype) -> torch.Tensor:
    return (labels.unsqueeze(-1) == torch.arange(k, device=labels.device)).to(dtype)


# ---- the linear SVM -------------------------------------------------------------------------


def _present(labels: torch.Tensor, k: int) -> torch.Tensor:
    """Which of the labels 0..k-1 each problem uses: (P, k) booleans."""
    return (labels.unsqueeze(2) == torch.arange(k, device=labels.device)).any(1)


def linear_svc_ovr(
    x: torch.Tensor,
    labels: torch.Tensor,
    n_rows_max: int | None = None,
    fit: torch.Tensor | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``LinearSVC(multi_class="ovr").fit(x[p], labels[p])`` for every problem p, solved exactly:
    x of shape (n_problems, n_rows, n_features), labels (n_problems, n_rows) in 0..k-1.

    Returns ``coef`` (n_problems, n_rows_max, n_features) and ``intercept`` (n_problems,
    n_rows_max) as scikit-learn's ``coef_`` / ``intercept_``, NaN-padded: one row, "the second
    class present vs the first", for two classes, one row per present class (in order) for more,
    none for one class or where ``fit`` (n_problems,) is False; then the number of rows
    (n_problems,) and whether Newton's method converged (n_problems,). Float64."""
    P, N, F = x.shape
    dev = x.device
    k = int(labels.max()) + 1 if labels.numel() else 1
    present = _present(labels, max(k, 2))  # (P, k)
    n_classes = present.sum(1)
    rank = present.cumsum(1) - 1
    if fit is None:
        fit = torch.ones(P, dtype=torch.bool, device=dev)
    n_rows = torch.where(fit & (n_classes >= 2), torch.where(n_classes == 2, 1, n_classes), 0)
    if n_rows_max is None:
        n_rows_max = max(int(n_rows.max()) if P else 1, 1)
    # One binary problem per coefficient row: class c against the rest.
    wanted = present & (n_rows > 0).unsqueeze(1) & ((n_classes > 2).unsqueeze(1) | (rank == 1))
    p_idx, c_idx = wanted.nonzero(as_tuple=True)
    row = torch.where(n_classes[p_idx] == 2, 0, rank[p_idx, c_idx])
    features = torch.cat([x[p_idx].double(), x.new_ones(len(p_idx), N, 1, dtype=torch.float64)], 2)
    target = torch.where(labels[p_idx] == c_idx.unsqueeze(1), 1.0, -1.0).double()
    w, ok = squared_hinge_svm(features, target, tol=tol, max_iter=max_iter)
    coef = torch.full((P, n_rows_max, F), math.nan, dtype=torch.float64, device=dev)
    intercept = torch.full((P, n_rows_max), math.nan, dtype=torch.float64, device=dev)
    coef[p_idx, row] = w[:, :F]
    intercept[p_idx, row] = w[:, F]
    converged = torch.ones(P, dtype=torch.bool, device=dev)
    converged[p_idx[~ok]] = False
    return coef, intercept, n_rows, converged


def squared_hinge_svm(
    features: torch.Tensor,
    target: torch.Tensor,
    C: float = 1.0,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise ``w.w / 2 + C * sum_i max(0, 1 - y_i w.x_i)^2`` for a batch of binary problems:
    features (B, N, F) (a constant-1 column for an intercept), target (B, N) in {-1, +1}.

    Generalised Newton: on the rows inside the margin the objective is quadratic with Hessian
    ``I + 2C X'X``; each step solves that system and backtracks (Armijo) until the objective
    falls enough. Returns the weights (B, F) and whether the gradient fell below ``tol`` times its
    size at w = 0 (B,). Problems that have converged leave the batch once they are the majority.
    """
    B, N, F = features.shape
    dtype, dev = features.dtype, features.device
    eye = torch.eye(F, dtype=dtype, device=dev)
    w_out = torch.zeros(B, F, dtype=dtype, device=dev)
    done_out = torch.zeros(B, dtype=torch.bool, device=dev)
    work = torch.arange(B, device=dev)
    w = torch.zeros(B, F, dtype=dtype, device=dev)
    margin = torch.zeros(B, N, dtype=dtype, device=dev)  # X w
    f_w = _svm_objective(w, margin, target, C)
    g0 = None
    for _ in range(max_iter):
        inside = (target * margin < 1).to(dtype)  # (W, N)
        xt = features.transpose(1, 2)  # (W, F, N)
        grad = w + 2 * C * torch.bmm(xt, (inside * (margin - target)).unsqueeze(2)).squeeze(2)
        g_norm = grad.norm(dim=1)
        if g0 is None:
            g0 = g_norm.clamp_min(1e-300)
        done = g_norm <= tol * g0
        n_done = int(done.sum())
        if n_done == len(work):
            break
        if 2 * n_done > len(work):
            w_out[work[done]], done_out[work[done]] = w[done], True
            keep = ~done
            work, features, target, g0 = work[keep], features[keep], target[keep], g0[keep]
            w, margin, f_w, grad = w[keep], margin[keep], f_w[keep], grad[keep]
            inside, xt, done = inside[keep], features.transpose(1, 2), done[keep]
        hessian = eye + 2 * C * torch.bmm(xt * inside.unsqueeze(1), features)
        direction = -torch.linalg.solve(hessian, grad.unsqueeze(2)).squeeze(2)  # (W, F)
        x_dir = torch.bmm(features, direction.unsqueeze(2)).squeeze(2)  # (W, N)
        # Backtracking: halve the step where the objective does not fall enough (Armijo).
        slope = (grad * direction).sum(1)  # negative
        step = torch.where(done, 0.0, 1.0).to(dtype)
        for _ in range(40):
            f_t = _svm_objective(
                w + step[:, None] * direction, margin + step[:, None] * x_dir, target, C
            )
            enough = f_t <= f_w + 1e-4 * step * slope
            if bool(enough.all()):
                break
            step = torch.where(enough, step, step / 2)
        w = w + step.unsqueeze(1) * direction
        margin = margin + step.unsqueeze(1) * x_dir
        f_w = _svm_objective(w, margin, target, C)
    w_out[work], done_out[work] = w, done
    return w_out, done_out


def _svm_objective(w: torch.Tensor, margin: torch.Tensor, target: torch.Tensor, C: float):
    """``w.w / 2 + C * sum max(0, 1 - y * margin)^2`` for weights (B, F), margins X w (B, N)."""
    return 0.5 * (w * w).sum(1) + C * (1 - target * margin).clamp_min(0).square().sum(1)


def svm_accuracy(
    x: torch.Tensor,
    labels: torch.Tensor,
    coef: torch.Tensor,
    intercept: torch.Tensor,
    n_rows: torch.Tensor,
) -> torch.Tensor:
    """Training accuracy with scikit-learn's decision rule (a positive score for the second
    class with one row, else the class of the highest score); NaN without coefficients.
    x (P, N, F), labels (P, N), coef (P, C, F), intercept (P, C), n_rows (P,)."""
    P, N, F = x.shape
    C = coef.shape[1]
    k = max(int(labels.max()) + 1 if labels.numel() else 1, 2)
    present = _present(labels, k)
    # classes[p, r]: the r-th class present in problem p (k past the last one).
    ranks = torch.arange(k, device=x.device)
    classes = torch.where(present, ranks, k).sort(1).values  # (P, k)
    scores = (
        torch.bmm(x.double(), coef.nan_to_num(0).transpose(1, 2))
        + intercept.nan_to_num(0)[:, None, :]
    )  # (P, N, C)
    filled = torch.arange(C, device=x.device) < n_rows.unsqueeze(1)  # (P, C)
    winner = torch.where(filled.unsqueeze(1), scores, -math.inf).argmax(2)  # (P, N)
    pick = torch.where((n_rows == 1).unsqueeze(1), (scores[:, :, 0] > 0).long(), winner)
    pred = classes.gather(1, pick.clamp_max(k - 1))
    acc = (pred == labels).double().mean(1)
    return torch.where(n_rows > 0, acc, math.nan)
