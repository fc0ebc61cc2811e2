"""What every clustering backend shares: the result, its notes, the choice of k, the SVM's
decision rule, and the tie band that settles each decision the same way on every CPU.

A *problem* is one set of attention rows to cluster: ``n_rows`` query rows (one per point kept by
the row view) over ``n_keys`` keys, together with the inputs ``x`` of the same points, from which
a linear SVM predicts the cluster labels. A backend solves a batch of problems of one shape and
fills a :class:`ClusterResult`; everything downstream (dominant literals, pathways, the tables)
is shared, so backends differ only in how they compute these arrays.

Ties and portability
--------------------
Distances, inertias, silhouettes and SVM scores go through matrix products and reductions whose
summation order, and so whose last bits, depend on the CPU's BLAS kernels (and on the shape of
the batch). Values that are equal in exact arithmetic (duplicate rows, a row as far from two
centres, one-hot rows that are all equally far apart) then come out a rounding error apart, in
either order. So every decision (nearest centre, k-means++ candidate, farthest row, best
initialisation, best k, SVM prediction) is taken with a *tie band*: values within
``TIE_RTOL`` times the scale of the values compared count as equal, and the first wins (the
lowest index: the lowest cluster, row, k). Float64 rounding is about 1e-16 of that scale, far
inside the band, so a tie is settled the same way on any machine; a decision could only differ
where two values are ``TIE_RTOL`` apart to within rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# Values within this share of the scale of the values compared are a tie (the first wins).
TIE_RTOL = 1e-9

# Per-problem notes: degenerate but valid outcomes, recorded rather than raised.
NOTE_K_ABOVE_DISTINCT = "k_above_distinct_rows"  # some k exceeded the distinct rows: skipped
NOTE_CONSTANT_ROWS = "constant_rows"  # fewer than 2 distinct rows: nothing to cluster
NOTE_ONE_CLASS = "one_class"  # the chosen labelling has one class: no SVM
NOTE_SVM_NOT_CONVERGED = "svm_not_converged"  # the SVM solver stopped at its iteration cap


@dataclass
class ClusterResult:
    """Fitted arrays for P problems of n_rows rows; trailing underscores as in scikit-learn.

    - ``k_values``: the k tried, shape (K,), after clipping to ``n_rows - 1``;
    - ``silhouette_``, ``inertia_``: shape (P, K); NaN where k was skipped for a problem;
    - ``best_k_``: shape (P,); the k of the best silhouette (see :func:`best_k`), 1 where none;
    - ``labels_``: shape (P, n_rows), the clustering at ``best_k_`` (all 0 without one);
    - ``coef_``: shape (P, C, n_features), LinearSVC's ``coef_`` exactly as scikit-learn returns
      it (one row, "cluster 1 vs 0", for two classes; one row per class otherwise), NaN-padded
      to C rows; ``intercept_``: shape (P, C); ``n_coef_rows_``: shape (P,);
    - ``svm_accuracy_``: shape (P,), training accuracy of the SVM (NaN without an SVM; the
      tables store null);
    - ``notes_``: shape (P,), comma-separated NOTE_* values, "" when nothing happened;
    - ``n_distinct_rows_``: shape (P,), distinct rows of each problem (as ``np.unique``).
    """

    k_values: np.ndarray
    silhouette_: np.ndarray
    inertia_: np.ndarray
    best_k_: np.ndarray
    labels_: np.ndarray
    coef_: np.ndarray
    intercept_: np.ndarray
    n_coef_rows_: np.ndarray
    svm_accuracy_: np.ndarray
    notes_: np.ndarray
    n_distinct_rows_: np.ndarray

    @property
    def n_problems(self) -> int:
        return len(self.best_k_)


def empty_result(k_values: np.ndarray, n_problems: int, n_rows: int, n_features: int):
    """A :class:`ClusterResult` for a backend to fill: NaN scores and coefficients, labels 0,
    best k 1, no notes, no coefficient rows."""
    P, K = n_problems, len(k_values)
    C = n_coef_rows_max(k_values)
    return ClusterResult(
        k_values=np.asarray(k_values, dtype=np.int64),
        silhouette_=np.full((P, K), np.nan),
        inertia_=np.full((P, K), np.nan),
        best_k_=np.ones(P, dtype=np.int64),
        labels_=np.zeros((P, n_rows), dtype=np.int64),
        coef_=np.full((P, C, n_features), np.nan),
        intercept_=np.full((P, C), np.nan),
        n_coef_rows_=np.zeros(P, dtype=np.int64),
        svm_accuracy_=np.full(P, np.nan),
        notes_=np.full(P, "", dtype=object),
        n_distinct_rows_=np.zeros(P, dtype=np.int64),
    )


def clip_k_values(k_min: int, k_max: int, n_rows: int) -> np.ndarray:
    """The k to try: ``k_min..k_max`` clipped to ``2..n_rows - 1`` (what silhouette allows)."""
    hi = min(k_max, n_rows - 1)
    return np.arange(max(k_min, 2), hi + 1, dtype=np.int64)


def n_coef_rows_max(k_values: np.ndarray) -> int:
    """Rows of ``coef_`` to make room for: one for k = 2 only, else the largest k."""
    return int(max(k_values)) if len(k_values) and max(k_values) > 2 else 1


def best_k(k_values: np.ndarray, silhouette: np.ndarray) -> np.ndarray:
    """The k of each problem's best silhouette, (P, K) -> (P,); 1 where no k has one.

    As the seed's ``np.argmax``, the first (smallest) k on ties, where silhouettes within
    ``TIE_RTOL`` of the best count as tied (silhouettes lie in [-1, 1])."""
    valid = ~np.isnan(silhouette)
    if len(k_values) == 0:
        return np.ones(len(silhouette), dtype=np.int64)
    filled = np.where(valid, silhouette, -np.inf)
    best = filled.max(axis=1, keepdims=True)
    first = np.argmax(filled >= best - TIE_RTOL, axis=1)
    return np.where(valid.any(axis=1), k_values[first], 1).astype(np.int64)


def problem_notes(
    k_values: np.ndarray,
    n_distinct: np.ndarray,
    best: np.ndarray,
    n_classes: np.ndarray,
    converged: np.ndarray,
) -> np.ndarray:
    """The notes of each problem, (P,) strings, from what was decided: the distinct rows, the
    best k, the classes of the chosen labels and whether the SVM converged (each (P,)).

    First ``k_above_distinct_rows`` if some k was skipped; then, without a best k,
    ``constant_rows`` (fewer than 2 distinct rows) or ``one_class``; with one, ``one_class``
    if the labels have one class, else ``svm_not_converged`` if the SVM stopped at its cap."""
    above = (np.asarray(k_values)[None, :] > n_distinct[:, None]).any(axis=1)
    clustered = np.where(
        n_classes < 2, NOTE_ONE_CLASS, np.where(converged, "", NOTE_SVM_NOT_CONVERGED)
    )
    unclustered = np.where(n_distinct < 2, NOTE_CONSTANT_ROWS, NOTE_ONE_CLASS)
    second = np.where(best >= 2, clustered, unclustered)
    first = np.where(above, NOTE_K_ABOVE_DISTINCT, "")
    return np.array(
        [",".join(n for n in pair if n) for pair in zip(first, second, strict=True)], dtype=object
    )


# ---- decisions --------------------------------------------------------------------------------


def first_best(
    values: torch.Tensor, dim: int, band: torch.Tensor | float, largest: bool = False
) -> torch.Tensor:
    """Index along ``dim`` of the first value within ``band`` of the least (or the largest)
    one: argmin (argmax) with ties, and near-ties within rounding, going to the lowest index.
    ``band`` broadcasts against ``values`` with ``dim`` kept."""
    if largest:
        near = values >= values.amax(dim, keepdim=True) - band
    else:
        near = values <= values.amin(dim, keepdim=True) + band
    return near.to(torch.uint8).argmax(dim)  # the first True


def present_classes(labels: torch.Tensor, k: int) -> torch.Tensor:
    """Which of the labels 0..k-1 each problem uses: labels (P, N) -> (P, k) booleans."""
    return (labels.unsqueeze(2) == torch.arange(k, device=labels.device)).any(1)


def svm_predict(
    x: torch.Tensor,
    labels: torch.Tensor,
    coef: torch.Tensor,
    intercept: torch.Tensor,
    n_rows: torch.Tensor,
) -> torch.Tensor:
    """The labels a one-vs-rest linear SVM predicts for its training rows: scikit-learn's
    decision rule, for P problems at once, on any device.

    x (P, N, F); labels (P, N), the training labels, whose sorted distinct values are the
    classes; coef (P, C, F) and intercept (P, C) as ``LinearSVC`` returns them, NaN-padded, with
    n_rows (P,) rows filled. With one row ("the second class vs the first") a positive score
    predicts the second class, else the first; with more, the class of the highest score.
    Scores within ``TIE_RTOL`` of the scale of their terms count as 0, and as tied (the first
    class wins). Returns (P, N); -1 where a problem has no coefficients."""
    P, N, F = x.shape
    C = coef.shape[1]
    k = max(int(labels.max()) + 1 if labels.numel() else 1, 2)
    present = present_classes(labels, k)  # (P, k)
    # classes[p, r]: the r-th class present in problem p (k past the last one).
    classes = torch.where(present, torch.arange(k, device=x.device), k).sort(1).values
    xd = x.double()
    w, b = coef.nan_to_num(0), intercept.nan_to_num(0)
    scores = torch.bmm(xd, w.mT) + b[:, None, :]  # (P, N, C)
    scale = torch.bmm(xd.abs(), w.abs().mT) + b.abs()[:, None, :]
    filled = (torch.arange(C, device=x.device) < n_rows.unsqueeze(1)).unsqueeze(1)  # (P, 1, C)
    masked = torch.where(filled, scores, -torch.inf)
    band = TIE_RTOL * torch.where(filled, scale, 0).amax(2, keepdim=True)
    winner = first_best(masked, 2, band, largest=True)  # (P, N)
    positive = (scores[:, :, 0] > TIE_RTOL * scale[:, :, 0]).long()
    pick = torch.where((n_rows == 1).unsqueeze(1), positive, winner)
    pred = classes.gather(1, pick.clamp_max(k - 1))
    return torch.where((n_rows > 0).unsqueeze(1), pred, -1)


def svm_accuracy(
    x: torch.Tensor,
    labels: torch.Tensor,
    coef: torch.Tensor,
    intercept: torch.Tensor,
    n_rows: torch.Tensor,
) -> torch.Tensor:
    """Training accuracy (P,) float64 of :func:`svm_predict`; NaN without coefficients."""
    pred = svm_predict(x, labels, coef, intercept, n_rows)
    acc = (pred == labels).double().mean(1)
    return torch.where(n_rows > 0, acc, torch.nan)
