"""k-means for many problems at once, from their squared distances: scikit-learn's algorithm.

Greedy k-means++ (``2 + int(log k)`` candidates per centre, the one that lowers the potential
most is kept), then Lloyd iterations until no label changes (or ``max_iter``), an empty cluster
taking the row farthest from its centre. The first initialisation uses the very random numbers
``KMeans(random_state=random_state)`` draws (they do not depend on the data), so with
``n_init=1`` the clustering is the reference's. Centres are never formed: the squared distance
from row i to the mean of cluster S is ``mean_{l in S} D2[i, l] - sum_{l, m in S} D2[l, m] /
(2 |S|^2)``, and the inertia is ``sum_S sum_{l, m in S} D2[l, m] / (2 |S|)``.

Everything runs in float64. Each choice (nearest centre, best candidate, farthest row, best
initialisation) goes to the first index among values within the tie band of ``backends.base``
(``TIE_RTOL`` times the problem's largest squared distance, times n_rows for sums over rows), so
that rounding which differs between kernels does not change a label. The iterations are not run
in float32: a float32 kernel's rounding (about 1e-7 of the values) is too coarse for a band to
absorb without merging real differences.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from attnstore.analysis.backends.base import TIE_RTOL, first_best


def kmeans(
    d2: torch.Tensor,
    k: int,
    n_init: int,
    max_iter: int,
    generator: torch.Generator,
    random_state: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means of each problem from its squared distances (P, N, N), float64: ``n_init`` greedy
    k-means++ initialisations (the first one scikit-learn's, see ``_kmeans_plusplus``), Lloyd
    iterations, the lowest inertia kept. Returns labels (P, N) and the inertia (P,)."""
    P, N, _ = d2.shape
    band = TIE_RTOL * d2.flatten(1).amax(1)  # (P,): ties among squared distances
    centres, closest = _kmeans_plusplus(d2, k, n_init, generator, random_state, band)
    I = closest.shape[1]
    # Initial assignment: distances to the chosen rows, d2[p, centres[p, i, c], n] as (P, N, I, k).
    to_centres = d2.gather(1, centres.reshape(P, I * k, 1).expand(P, I * k, N))
    to_centres = to_centres.view(P, I, k, N).permute(0, 3, 1, 2)
    labels = first_best(to_centres, 3, band[:, None, None, None])  # (P, N, I)
    own_dist = to_centres.gather(3, labels.unsqueeze(3)).squeeze(3)
    labels = _lloyd(d2, labels, own_dist, k, max_iter, band)
    inertia = _inertia(d2, labels, k)  # (P, I)
    best = first_best(inertia, 1, N * band[:, None]).unsqueeze(1)  # the first of equal inertias
    chosen = labels.gather(2, best.unsqueeze(1).expand(P, N, 1)).squeeze(2)
    return chosen, inertia.gather(1, best).squeeze(1)


def _kmeans_plusplus(
    d2: torch.Tensor,
    k: int,
    n_init: int,
    generator: torch.Generator,
    random_state: int,
    band: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy k-means++ as scikit-learn's ``_kmeans_plusplus``, n_init times per problem: the
    first centre uniformly, then for each next one ``2 + int(log k)`` candidates drawn with
    probability proportional to the squared distance to the nearest centre, keeping the one that
    leaves the least potential (the first within ``N * band`` of it). The first initialisation
    takes the draws of ``KMeans(random_state=random_state)``, the others come from
    ``generator``. Returns centre indices (P, I, k) and the squared distance of every row to its
    nearest centre (P, I, N)."""
    P, N, _ = d2.shape
    dev = d2.device
    first_sk, uniforms_sk = _sklearn_draws(random_state, N, k)
    n_trials = uniforms_sk.shape[1]
    uniforms_sk = torch.as_tensor(uniforms_sk, device=dev, dtype=d2.dtype)
    first = torch.full((P, n_init), first_sk, device=dev)
    if n_init > 1:
        first[:, 1:] = torch.randint(N, (P, n_init - 1), generator=generator, device=dev)
    closest = d2.gather(1, first.unsqueeze(2).expand(P, n_init, N))  # (P, I, N)
    centres = [first]
    pot_band = N * band[:, None, None]
    for c in range(1, k):
        cumulative = closest.cumsum(2)  # (P, I, N)
        draws = uniforms_sk[c - 1].expand(P, n_init, n_trials)
        if n_init > 1:
            more = torch.rand(
                (P, n_init - 1, n_trials), generator=generator, device=dev, dtype=d2.dtype
            )
            draws = torch.cat([draws[:, :1], more], 1)
        # The potential is the end of the same cumulative sum: every target falls inside it.
        targets = draws * cumulative[:, :, -1:]
        candidates = torch.searchsorted(cumulative, targets).clamp_max_(N - 1)  # (P, I, T)
        to_cand = d2.gather(1, candidates.view(P, -1, 1).expand(P, n_init * n_trials, N))
        to_cand = torch.minimum(to_cand.view(P, n_init, n_trials, N), closest.unsqueeze(2))
        best = first_best(to_cand.sum(3), 2, pot_band).unsqueeze(2)  # (P, I, 1)
        closest = to_cand.gather(2, best.unsqueeze(3).expand(P, n_init, 1, N)).squeeze(2)
        centres.append(candidates.gather(2, best).squeeze(2))
    return torch.stack(centres, 2), closest


@functools.lru_cache(maxsize=256)
def _sklearn_draws(random_state: int, n_rows: int, k: int) -> tuple[int, np.ndarray]:
    """The random numbers ``KMeans(n_clusters=k, random_state=random_state).fit`` draws for
    k-means++ on n_rows rows of weight 1: the first centre, then ``2 + int(log k)`` uniforms per
    further centre, shape (k - 1, n_trials). They do not depend on the rows, so one set serves
    every problem of a batch."""
    state = np.random.RandomState(random_state)
    weight = np.ones(n_rows, dtype=np.float32)
    first = int(state.choice(n_rows, p=weight / weight.sum()))
    n_trials = 2 + int(np.log(k))
    uniforms = np.array([state.uniform(size=n_trials) for _ in range(k - 1)])
    return first, uniforms.reshape(k - 1, n_trials)


def _lloyd(
    d2: torch.Tensor,
    labels: torch.Tensor,
    own_dist: torch.Tensor,
    k: int,
    max_iter: int,
    band: torch.Tensor,
) -> torch.Tensor:
    """Lloyd iterations on labels (P, N, I) until none changes, or ``max_iter``. Problems that
    have converged leave the working set once they are the majority, so the slow tail of the
    batch iterates alone."""
    labels = labels.clone()
    work = torch.arange(d2.shape[0], device=d2.device)
    w_d2, w_labels, w_dist, w_band = d2, labels, own_dist, band
    for _ in range(max_iter):
        new, w_dist = _lloyd_step(w_d2, w_labels, w_dist, k, w_band)
        changed = (new != w_labels).flatten(1).any(1)  # (W,)
        w_labels = new
        n_changed = int(changed.sum())
        if n_changed == 0:
            break
        if 2 * n_changed < len(work):
            labels[work] = w_labels
            work, w_d2, w_band = work[changed], w_d2[changed], w_band[changed]
            w_labels, w_dist = w_labels[changed], w_dist[changed]
    labels[work] = w_labels
    return labels


def _lloyd_step(
    d2: torch.Tensor, labels: torch.Tensor, own_dist: torch.Tensor, k: int, band: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Lloyd iteration: the labels (P, N, I) define the centres (the cluster means), every
    row goes to its nearest centre. Returns the new labels and each row's squared distance."""
    P, N, I = labels.shape
    member = one_hot(labels, k, d2.dtype)  # (P, N, I, k)
    counts = member.sum(1)  # (P, I, k)
    if bool((counts == 0).any()):
        member, counts = _relocate_empty(member, counts, own_dist, band)
    inv_n = 1 / counts.clamp_min(1)
    # mean_d2[p, n, i, c]: the mean of D2[n, l] over the rows l of cluster c.
    mean_d2 = torch.bmm(d2, (member * inv_n.unsqueeze(1)).view(P, N, I * k)).view(P, N, I, k)
    half_spread = (member * mean_d2).sum(1) * (0.5 * inv_n)  # (P, I, k)
    to_centre = mean_d2 - half_spread.unsqueeze(1)  # (P, N, I, k)
    new = first_best(to_centre, 3, band[:, None, None, None])
    return new, to_centre.gather(3, new.unsqueeze(3)).squeeze(3)


def _relocate_empty(
    member: torch.Tensor, counts: torch.Tensor, own_dist: torch.Tensor, band: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Give each empty cluster the row farthest from its centre (scikit-learn's rule; the first
    within the band), taken from a cluster that keeps at least one row. member (P, N, I, k),
    counts (P, I, k), own_dist (P, N, I), band (P,)."""
    k = member.shape[3]
    score = own_dist.clone()
    for c in range(k):
        empty = counts[:, :, c] == 0  # (P, I)
        if not bool(empty.any()):
            continue
        label = member.argmax(3, keepdim=True)  # (P, N, I, 1)
        movable = counts.unsqueeze(1).expand_as(member).gather(3, label).squeeze(3) > 1
        candidates = torch.where(movable, score, -math.inf)
        far = first_best(candidates, 1, band[:, None, None], largest=True).unsqueeze(1)
        moved = torch.zeros_like(score, dtype=torch.bool).scatter_(1, far, True)
        moved &= empty.unsqueeze(1)
        target = torch.zeros(k, dtype=member.dtype, device=member.device)
        target[c] = 1
        member = torch.where(moved.unsqueeze(3), target, member)
        counts = member.sum(1)
        score = torch.where(moved, -math.inf, score)
    return member, counts


def _inertia(d2: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Sum of squared distances to the cluster means, (P, I), for labels (P, N, I):
    ``sum_c sum_{l, m in c} D2[l, m] / (2 |c|)``."""
    P, N, I = labels.shape
    member = one_hot(labels, k, d2.dtype)  # (P, N, I, k)
    sums = torch.bmm(d2, member.view(P, N, I * k)).view(P, N, I, k)
    within = (member * sums).sum(1)  # (P, I, k)
    return (within / (2 * member.sum(1).clamp_min(1))).sum(2)


def one_hot(labels: torch.Tensor, k: int, dtype: torch.dtype) -> torch.Tensor:
    """Indicators (..., k) of labels (...) in 0..k-1."""
    return (labels.unsqueeze(-1) == torch.arange(k, device=labels.device)).to(dtype)
