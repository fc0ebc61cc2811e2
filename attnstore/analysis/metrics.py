"""Checks of a clustering against what the rows are known to carry, for many problems at once.

- :func:`nmi`: normalised mutual information of the labels with another labelling (the rows'
  y), as scikit-learn's ``normalized_mutual_info_score``;
- :func:`eta2`: the share of a per-row quantity's variance (the point index) that the clusters
  explain; a high value says the clusters mostly encode *where* a row is.

Both count rows with 0/1 indicators, so their sums are whole numbers, exact in any order; what
follows is a few divisions and logarithms per problem (numpy's vectorised logarithm may differ
in the last bit between CPUs; the tables store these as float32).
"""

from __future__ import annotations

import numpy as np


def _one_hot(labels: np.ndarray) -> np.ndarray:
    """(P, N) non-negative ints -> (P, N, max + 1) float64 indicators."""
    return (labels[..., None] == np.arange(labels.max() + 1)).astype(np.float64)


def nmi(labels: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Normalised mutual information (arithmetic mean of the entropies, as scikit-learn's
    ``normalized_mutual_info_score``) between two labellings of shape (P, N), per problem."""
    a, b = _one_hot(labels), _one_hot(other.astype(np.int64))
    joint = np.einsum("pnk,pnc->pkc", a, b) / labels.shape[1]  # (P, Ka, Kb)
    pa, pb = joint.sum(2), joint.sum(1)

    def xlogx(v):
        return np.where(v > 0, v * np.log(np.where(v > 0, v, 1)), 0.0)

    outer = pa[:, :, None] * pb[:, None, :]
    mi = np.where(
        joint > 0, joint * np.log(np.where(joint > 0, joint, 1) / np.where(outer > 0, outer, 1)), 0
    ).sum((1, 2))
    h_a, h_b = -xlogx(pa).sum(1), -xlogx(pb).sum(1)
    single = ((pa > 0).sum(1) == 1) & ((pb > 0).sum(1) == 1)
    norm = np.maximum((h_a + h_b) / 2, np.finfo(np.float64).eps)
    return np.where(single, 1.0, np.where(mi <= 0, 0.0, np.maximum(mi, 0) / norm))


def eta2(labels: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Share of the variance of ``points`` (N,) explained by each problem's clusters (P, N)."""
    var = points.var()
    if var == 0:
        return np.full(len(labels), np.nan)
    onehot = _one_hot(labels)  # (P, N, K)
    counts = onehot.sum(1)  # (P, K)
    means = np.einsum("pnk,n->pk", onehot, points) / np.maximum(counts, 1)
    between = (counts * (means - points.mean()) ** 2).sum(1) / len(points)
    return between / var
