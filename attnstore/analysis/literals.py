"""Dominant literals: which input literals characterise each cluster.

For a problem (one layer, head, sample, query kind) with clusters ``0..k-1`` fitted by a
one-vs-rest LinearSVC on the sample's inputs x (n_rows × n_dims, ±1), every cluster c gets a
score for each of the ``2 * n_dims`` literals (j, sign), sign +1 meaning ``x_j`` and -1 ``¬x_j``:

- ``svm_score = sign * w_c[j]``, where ``w_c`` is the SVM's weight vector for "c vs rest". For
  k = 2 scikit-learn returns one row, "cluster 1 vs cluster 0": cluster 1 takes that row and
  cluster 0 takes its negation.
- ``data_score = P(x_j = sign | row in c) - P(x_j = sign | row not in c)``: the same question
  asked of the data directly, in [-1, 1], with no model.
- ``rank``: 1 for the highest svm_score in the cluster, ties broken by literal index then sign.
- ``is_dominant``: ``svm_score > 0`` and ``svm_score >= dominance * (the cluster's top
  svm_score)``, with ``dominance = 0.5`` by default (recorded in ``analyses``).
- ``in_target``: whether the literal occurs in the sample's hidden function (some term has
  weight ``sign`` at j); null for tasks whose functions are not made of literals.
"""

from __future__ import annotations

import numpy as np


def cluster_weights(
    coef: np.ndarray, n_rows_coef: int, classes: np.ndarray
) -> dict[int, np.ndarray]:
    """Each present cluster's "c vs rest" weight vector from LinearSVC's ``coef_`` rows."""
    if n_rows_coef == 0:
        return {}
    if n_rows_coef == 1:  # binary: one row for classes[1] vs classes[0]
        return {int(classes[1]): coef[0], int(classes[0]): -coef[0]}
    return {int(c): coef[i] for i, c in enumerate(classes)}


def dominant_literals(
    labels: np.ndarray,
    x: np.ndarray,
    coef: np.ndarray,
    n_coef_rows: int,
    dominance: float,
) -> dict[str, np.ndarray]:
    """Scores of every (cluster, literal, sign) of one problem; labels of shape (n_rows,), x of
    shape (n_rows, n_dims) in ±1, coef of shape (C, n_dims). Columns as arrays of equal length."""
    classes = np.unique(labels)
    weights = cluster_weights(coef, n_coef_rows, classes)
    n_dims = x.shape[1]
    signs = np.array([1, -1], dtype=np.int8)
    out: dict[str, list] = {
        k: []
        for k in (
            "cluster",
            "literal",
            "sign",
            "svm_score",
            "data_score",
            "rank",
            "is_dominant",
            "cluster_size",
        )
    }
    for c, w in sorted(weights.items()):
        member = labels == c
        # (2, n_dims): sign +1 row, then sign -1 row
        svm = np.stack([w, -w])
        p_in = np.stack([(x[member] > 0).mean(0), (x[member] < 0).mean(0)])
        rest = ~member
        p_out = (
            np.stack([(x[rest] > 0).mean(0), (x[rest] < 0).mean(0)])
            if rest.any()
            else np.zeros_like(p_in)
        )
        flat = svm.reshape(-1)
        order = np.lexsort((np.repeat([0, 1], n_dims), np.tile(np.arange(n_dims), 2), -flat))
        rank = np.empty(2 * n_dims, dtype=np.int16)
        rank[order] = np.arange(1, 2 * n_dims + 1)
        top = flat.max()
        out["cluster"].append(np.full(2 * n_dims, c, dtype=np.int16))
        out["literal"].append(np.tile(np.arange(n_dims, dtype=np.int16), 2))
        out["sign"].append(np.repeat(signs, n_dims))
        out["svm_score"].append(flat.astype(np.float32))
        out["data_score"].append((p_in - p_out).reshape(-1).astype(np.float32))
        out["rank"].append(rank)
        out["is_dominant"].append((flat > 0) & (flat >= dominance * top))
        out["cluster_size"].append(np.full(2 * n_dims, member.sum(), dtype=np.int16))
    return {k: (np.concatenate(v) if v else np.array([])) for k, v in out.items()}


def target_literals(weights: np.ndarray) -> np.ndarray:
    """in_target lookup of shape (2, n_dims) for one sample's weights (n_terms, n_dims): row 0
    for sign +1, row 1 for sign -1."""
    return np.stack([(weights == 1).any(0), (weights == -1).any(0)])
