"""Dominant literals: which input literals characterise each cluster.

For a problem (one layer, head, sample, query kind) with clusters ``0..k-1`` fitted by a
one-vs-rest LinearSVC on the sample's inputs x (n_rows × n_dims, ±1), every cluster c gets a
score for each of the ``2 * n_dims`` literals (j, sign), sign +1 meaning ``x_j`` and -1 ``¬x_j``:

- ``svm_score = sign * w_c[j]``, where ``w_c`` is the SVM's weight vector for "c vs rest". For
  k = 2 scikit-learn returns one row, "cluster 1 vs cluster 0": cluster 1 takes that row and
  cluster 0 takes its negation.
- ``data_score = P(x_j = sign | row in c) - P(x_j = sign | row not in c)``: the same question
  asked of the data directly, in [-1, 1], with no model.
- ``rank``: 1 for the highest svm_score in the cluster, ties broken by literal index then sign;
  scores within the tie band of :mod:`attnstore.analysis.backends.base` (1e-9 of the cluster's
  largest score) count as tied, so that rounding that differs between CPUs ranks alike.
- ``is_dominant``: ``svm_score > 0`` and ``svm_score >= dominance * (the cluster's top
  svm_score)``, with ``dominance = 0.5`` by default (recorded in ``analyses``).
- ``in_target``: whether the literal occurs in the sample's hidden function (some term has
  weight ``sign`` at j); null for tasks whose functions are not made of literals.
"""

from __future__ import annotations

import numpy as np

from attnstore.analysis.backends.base import TIE_RTOL


def dominant_literals(
    labels: np.ndarray,
    x: np.ndarray,
    coef: np.ndarray,
    n_coef_rows: np.ndarray,
    dominance: float,
) -> dict[str, np.ndarray]:
    """Scores of every (problem, cluster, literal, sign), all problems at once.

    ``labels`` of shape (P, n_rows), ``x`` of shape (P, n_rows, n_dims) in ±1, ``coef`` of shape
    (P, C, n_dims) as LinearSVC returns it (NaN-padded), ``n_coef_rows`` of shape (P,). Problems
    without an SVM (``n_coef_rows == 0``) get no rows. Returns columns ``problem, cluster,
    literal, sign, svm_score, data_score, rank, is_dominant, cluster_size`` as equal-length
    arrays, ordered by problem, cluster, sign (+1 first), literal."""
    P, N, F = x.shape
    K = int(labels.max()) + 1 if labels.size else 1
    member = labels[..., None] == np.arange(K)  # (P, N, K)
    size = member.sum(1)  # (P, K)
    present = size > 0
    # Row of coef_ for each present class: classes are sorted, so the rank among present ones.
    row = np.cumsum(present, axis=1) - 1  # (P, K)
    binary = n_coef_rows == 1
    take = np.where(binary[:, None], 0, row).clip(0, coef.shape[1] - 1)
    w = np.take_along_axis(coef, take[..., None], axis=1)  # (P, K, F)
    lowest = present & (row == 0)
    w = np.where((binary[:, None] & lowest)[..., None], -w, w)  # binary: class 0 takes -row
    svm = np.stack([w, -w], axis=2)  # (P, K, 2, F): sign +1, then -1
    pos = (x > 0).astype(np.float64)
    m = member.astype(np.float64)
    in_pos = np.einsum("pnk,pnf->pkf", m, pos)  # members with x_j = +1
    out_pos = pos.sum(1)[:, None, :] - in_pos
    n_in, n_out = size[..., None], (N - size)[..., None]
    p_in = np.stack([in_pos, n_in - in_pos], axis=2) / np.maximum(n_in, 1)[..., None]
    p_out = np.stack([out_pos, n_out - out_pos], axis=2) / np.maximum(n_out, 1)[..., None]
    data = p_in - np.where(n_out[..., None] > 0, p_out, 0.0)
    # Rank: highest svm_score first, ties by literal then sign (+1 first).
    inter = svm.transpose(0, 1, 3, 2).reshape(P, K, 2 * F)  # literal-major order
    scale = np.abs(np.nan_to_num(inter)).max(2, keepdims=True)
    banded = np.round(inter / np.where(scale > 0, scale * TIE_RTOL, 1.0))
    order = np.argsort(-banded, axis=2, kind="stable")
    rank_inter = np.empty_like(order)
    np.put_along_axis(rank_inter, order, np.arange(1, 2 * F + 1)[None, None, :], axis=2)
    rank = rank_inter.reshape(P, K, F, 2).transpose(0, 1, 3, 2)  # (P, K, 2, F)
    top = svm.reshape(P, K, -1).max(2)[..., None, None]
    dominant = (svm > 0) & (svm >= dominance * top)
    keep = present & (n_coef_rows > 0)[:, None]  # (P, K)
    p_idx, c_idx = np.nonzero(keep)
    n = len(p_idx)
    sel = (p_idx, c_idx)
    return {
        "problem": np.repeat(p_idx, 2 * F),
        "cluster": np.repeat(c_idx, 2 * F).astype(np.int16),
        "literal": np.tile(np.arange(F, dtype=np.int16), 2 * n),
        "sign": np.tile(np.repeat(np.array([1, -1], dtype=np.int8), F), n),
        "svm_score": svm[sel].reshape(-1).astype(np.float32),
        "data_score": data[sel].reshape(-1).astype(np.float32),
        "rank": rank[sel].reshape(-1).astype(np.int16),
        "is_dominant": dominant[sel].reshape(-1),
        "cluster_size": np.repeat(size[sel], 2 * F).astype(np.int16),
    }


def target_literals(weights: np.ndarray) -> np.ndarray:
    """in_target lookup of shape (n_samples, 2, n_dims) from weights (n_samples, n_terms,
    n_dims): index 0 for sign +1, 1 for sign -1."""
    return np.stack([(weights == 1).any(1), (weights == -1).any(1)], axis=1)
