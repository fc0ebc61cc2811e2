"""What a clustering backend returns: one batch of (layer, head, sample, query_kind) problems.

A *problem* is one set of attention rows to cluster: ``n_rows`` query rows (one per point kept by
the row view) over ``n_keys`` keys, together with the inputs ``x`` of the same points, from which
a linear SVM predicts the cluster labels. Every backend solves a batch of problems of one shape
and fills a :class:`ClusterResult`; everything downstream (dominant literals, pathways, the
tables) is shared, so backends differ only in how they compute these arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    - ``best_k_``: shape (P,); the k of the best silhouette (first on ties), 1 where none;
    - ``labels_``: shape (P, n_rows), the clustering refit at ``best_k_``;
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


def clip_k_values(k_min: int, k_max: int, n_rows: int) -> np.ndarray:
    """The k to try: ``k_min..k_max`` clipped to ``2..n_rows - 1`` (what silhouette allows)."""
    hi = min(k_max, n_rows - 1)
    return np.arange(max(k_min, 2), hi + 1, dtype=np.int64)


def best_k(k_values: np.ndarray, silhouette: np.ndarray) -> np.ndarray:
    """The k of each problem's best silhouette (the first on ties, as ``np.argmax``), 1 if none."""
    valid = ~np.isnan(silhouette)
    filled = np.where(valid, silhouette, -np.inf)
    out = k_values[np.argmax(filled, axis=1)] if len(k_values) else np.ones(len(silhouette))
    return np.where(valid.any(axis=1), out, 1).astype(np.int64)
