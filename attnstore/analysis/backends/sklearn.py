"""The reference backend: the seed notebook's scikit-learn calls, one problem at a time.

For each problem, exactly as ``analyze_attn_matrix`` does on float32 rows: for every k,
``KMeans(n_clusters=k, random_state=random_state, n_init="auto")`` and ``silhouette_score``; the
k with the best score (the first on ties) is kept; then ``LinearSVC(multi_class="ovr")`` is
fitted from the inputs x of the *same sample* to the labels. The seed fitted ``x[i]`` (i = 0 for
x rows, 1 for y rows: samples 0 and 1, whatever sample was analysed); attnstore fits
``x[sample]``. The seed's ``random_state=0`` is the default.

Two deliberate differences, both recorded: a k above the number of distinct rows is skipped
(KMeans would return duplicate centres and a silhouette of a smaller clustering), and LinearSVC
gets the same ``random_state`` so that its coordinate-descent order, and so the run, is
reproducible. The seed refits KMeans at the best k; with the same ``random_state`` that refit is
identical to the fit of the sweep, so the sweep's labels are kept.

Portability: scikit-learn's k-means and silhouettes compute float32 distances through the BLAS,
so on another CPU a near-tie between two centres can go the other way and give another
clustering. This backend is the reference for what the calls return *here*; the torch backend
takes its decisions in float64 with a tie band (see ``backends.base``).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import silhouette_score
from sklearn.svm import LinearSVC

from attnstore.analysis.backends.base import (
    ClusterResult,
    best_k,
    empty_result,
    problem_notes,
    svm_accuracy,
)


def fit_sklearn(
    rows: np.ndarray, x: np.ndarray, k_values: np.ndarray, random_state: int = 0
) -> ClusterResult:
    """Cluster and fit SVMs for rows of shape (n_problems, n_rows, n_keys) and inputs x of shape
    (n_problems, n_rows, n_features); ``k_values`` as from ``clip_k_values``; ``random_state``
    for KMeans and LinearSVC."""
    P, N, _ = rows.shape
    r = empty_result(k_values, P, N, x.shape[2])
    k_values = r.k_values
    n_classes = np.zeros(P, dtype=np.int64)
    converged = np.ones(P, dtype=bool)
    for p in range(P):
        rp = np.ascontiguousarray(rows[p], dtype=np.float32)
        n_distinct = r.n_distinct_rows_[p] = len(np.unique(rp, axis=0))
        fits: dict[int, np.ndarray] = {}
        for j, k in enumerate(int(k) for k in k_values):
            if k > n_distinct:
                continue
            with warnings.catch_warnings():
                # "fewer distinct clusters than k" on near-duplicate rows: the clustering is
                # kept as computed, as the seed would; the torch backend does the same.
                warnings.simplefilter("ignore", ConvergenceWarning)
                km = KMeans(n_clusters=k, random_state=random_state, n_init="auto").fit(rp)
            r.inertia_[p, j] = km.inertia_
            if len(np.unique(km.labels_)) >= 2:
                r.silhouette_[p, j] = silhouette_score(rp, km.labels_)
                fits[k] = km.labels_
        k_best = r.best_k_[p] = best_k(k_values, r.silhouette_[p : p + 1])[0]
        if k_best < 2:
            continue
        r.labels_[p] = fits[int(k_best)]
        n_classes[p] = len(np.unique(r.labels_[p]))
        if n_classes[p] >= 2:
            converged[p] = _fit_svm(x[p], r.labels_[p], r, p, random_state)
    r.notes_ = problem_notes(k_values, r.n_distinct_rows_, r.best_k_, n_classes, converged)
    r.svm_accuracy_ = svm_accuracy(
        torch.as_tensor(np.asarray(x, dtype=np.float32)),
        torch.as_tensor(r.labels_),
        torch.as_tensor(r.coef_),
        torch.as_tensor(r.intercept_),
        torch.as_tensor(r.n_coef_rows_),
    ).numpy()
    return r


def _fit_svm(x: np.ndarray, labels: np.ndarray, r: ClusterResult, p: int, seed: int) -> bool:
    """Fit LinearSVC into problem p's rows of ``r``; returns whether liblinear converged."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        svm = LinearSVC(multi_class="ovr", random_state=seed).fit(x, labels)
    c = r.n_coef_rows_[p] = svm.coef_.shape[0]
    r.coef_[p, :c] = svm.coef_
    r.intercept_[p, :c] = svm.intercept_
    return not any(issubclass(w.category, ConvergenceWarning) for w in caught)
