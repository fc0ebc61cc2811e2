"""The reference backend: the seed notebook's scikit-learn calls, one problem at a time.

For each problem, exactly as ``analyze_attn_matrix`` does on float32 rows: for every k,
``KMeans(n_clusters=k, random_state=0, n_init="auto")`` and ``silhouette_score``; the k with the
best score (the first on ties) is kept; then ``LinearSVC(multi_class="ovr")`` is fitted from the
inputs x of the *same sample* to the labels. The seed fitted ``x[i]`` (i = 0 for x rows, 1 for
y rows: samples 0 and 1, whatever sample was analysed); attnstore fits ``x[sample]``.

Two deliberate differences, both recorded: a k above the number of distinct rows is skipped
(KMeans would return duplicate centres and a silhouette of a smaller clustering), and LinearSVC
gets ``random_state=0`` so that its coordinate-descent order, and so the run, is reproducible.
The seed refits KMeans at the best k; with the same ``random_state`` that refit is identical to
the fit of the sweep, so the sweep's labels are kept.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import silhouette_score
from sklearn.svm import LinearSVC

from attnstore.analysis.result import (
    NOTE_CONSTANT_ROWS,
    NOTE_K_ABOVE_DISTINCT,
    NOTE_ONE_CLASS,
    NOTE_SVM_NOT_CONVERGED,
    ClusterResult,
    best_k,
)


def fit_sklearn(rows: np.ndarray, x: np.ndarray, k_values: np.ndarray) -> ClusterResult:
    """Cluster and fit SVMs for rows of shape (n_problems, n_rows, n_keys) and inputs x of shape
    (n_problems, n_rows, n_features); ``k_values`` as from ``clip_k_values``."""
    P, N, _ = rows.shape
    F = x.shape[2]
    K = len(k_values)
    C = max(1, int(k_values.max()) if K and k_values.max() > 2 else 1)
    sil = np.full((P, K), np.nan, dtype=np.float64)
    inertia = np.full((P, K), np.nan, dtype=np.float64)
    labels = np.zeros((P, N), dtype=np.int64)
    coef = np.full((P, C, F), np.nan, dtype=np.float64)
    intercept = np.full((P, C), np.nan, dtype=np.float64)
    n_coef = np.zeros(P, dtype=np.int64)
    acc = np.full(P, np.nan, dtype=np.float64)
    notes = np.full(P, "", dtype=object)
    distinct = np.zeros(P, dtype=np.int64)
    for p in range(P):
        r = np.ascontiguousarray(rows[p], dtype=np.float32)
        n_distinct = distinct[p] = len(np.unique(r, axis=0))
        note: list[str] = []
        fits: dict[int, np.ndarray] = {}
        for j, k in enumerate(k_values):
            if k > n_distinct:
                if NOTE_K_ABOVE_DISTINCT not in note:
                    note.append(NOTE_K_ABOVE_DISTINCT)
                continue
            with warnings.catch_warnings():
                # "fewer distinct clusters than k" on near-duplicate rows: the clustering is
                # kept as computed, as the seed would; the torch backend does the same.
                warnings.simplefilter("ignore", ConvergenceWarning)
                km = KMeans(n_clusters=int(k), random_state=0, n_init="auto").fit(r)
            inertia[p, j] = km.inertia_
            if len(np.unique(km.labels_)) >= 2:
                sil[p, j] = silhouette_score(r, km.labels_)
                fits[int(k)] = km.labels_
        k_best = int(best_k(k_values, sil[p : p + 1])[0])
        if k_best == 1:
            note.append(NOTE_CONSTANT_ROWS if n_distinct < 2 else NOTE_ONE_CLASS)
        else:
            labels[p] = fits[k_best]
            svm_note = _fit_svm(x[p], labels[p], coef[p], intercept[p])
            if svm_note:
                note.append(svm_note)
            n_coef[p] = int(np.isfinite(coef[p, :, 0]).sum())
            if n_coef[p]:
                acc[p] = _svm_accuracy(
                    x[p], labels[p], coef[p, : n_coef[p]], intercept[p, : n_coef[p]]
                )
        notes[p] = ",".join(note)
    return ClusterResult(
        k_values=np.asarray(k_values),
        silhouette_=sil,
        inertia_=inertia,
        best_k_=best_k(k_values, sil),
        labels_=labels,
        coef_=coef,
        intercept_=intercept,
        n_coef_rows_=n_coef,
        svm_accuracy_=acc,
        notes_=notes,
        n_distinct_rows_=distinct,
    )


def _fit_svm(x: np.ndarray, labels: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> str:
    """Fit LinearSVC into the given (C, F) / (C,) slots; returns a note or ""."""
    if len(np.unique(labels)) < 2:
        return NOTE_ONE_CLASS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        svm = LinearSVC(multi_class="ovr", random_state=0).fit(x, labels)
    c = svm.coef_.shape[0]
    coef[:c] = svm.coef_
    intercept[:c] = svm.intercept_
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return "" if converged else NOTE_SVM_NOT_CONVERGED


def _svm_accuracy(x: np.ndarray, labels: np.ndarray, coef: np.ndarray, b: np.ndarray) -> float:
    """Training accuracy of a one-vs-rest linear model, scikit-learn's decision rule."""
    scores = x @ coef.T + b  # (n_rows, C)
    classes = np.unique(labels)
    pred = classes[(scores[:, 0] > 0).astype(int)] if len(coef) == 1 else classes[scores.argmax(1)]
    return float((pred == labels).mean())
