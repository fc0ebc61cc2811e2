"""What both backends share (attnstore.analysis.backends.base): the k range, the choice of k,
the notes, the tie band, and the SVM's decision rule against scikit-learn's own."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.svm import LinearSVC

from attnstore.analysis.backends.base import (
    NOTE_CONSTANT_ROWS,
    NOTE_K_ABOVE_DISTINCT,
    NOTE_ONE_CLASS,
    NOTE_SVM_NOT_CONVERGED,
    TIE_RTOL,
    best_k,
    clip_k_values,
    empty_result,
    first_best,
    problem_notes,
    svm_accuracy,
    svm_predict,
)
from attnstore.analysis.views import MIN_ROWS, make_view
from attnstore.errors import ConfigError


def test_k_range_is_clipped_to_the_rows():
    np.testing.assert_array_equal(clip_k_values(2, 9, 4), [2, 3])
    np.testing.assert_array_equal(clip_k_values(3, 5, 40), [3, 4, 5])
    assert len(clip_k_values(2, 9, 2)) == 0


def test_an_analysis_needs_min_rows():
    """The one rule, at its boundary: MIN_ROWS rows allow k = 2 only, one row fewer is refused
    by the view (raw: its k; the other views: their m), naming the rows and what is needed."""
    assert MIN_ROWS == 3
    np.testing.assert_array_equal(make_view("raw").k_values(MIN_ROWS), [2])
    with pytest.raises(ConfigError, match=r"keeps 2 rows .* of 2 points: .*at least 3 rows"):
        make_view("raw").k_values(MIN_ROWS - 1)
    for name in ("shared_keys", "per_example"):
        kept = make_view(name, m=3, n_points=3 + MIN_ROWS)  # rows of points 3, 4, 5
        np.testing.assert_array_equal(kept.k_values(3 + MIN_ROWS), [2])
        with pytest.raises(ConfigError, match=f"m must be between 1 and n_points - {MIN_ROWS}"):
            make_view(name, m=4, n_points=3 + MIN_ROWS)
    np.testing.assert_array_equal(make_view("raw").k_values(5, k_min=4), [4])  # 4 <= 5 - 1
    with pytest.raises(ConfigError, match=r"any k >= 5 .*at least 6 rows"):
        make_view("raw").k_values(5, k_min=5)


def test_empty_result_has_room_for_every_k():
    r = empty_result(clip_k_values(2, 9, 40), n_problems=3, n_rows=40, n_features=5)
    assert r.silhouette_.shape == (3, 8) and np.isnan(r.silhouette_).all()
    assert r.coef_.shape == (3, 9, 5) and r.labels_.shape == (3, 40)
    assert (r.best_k_ == 1).all() and list(r.notes_) == ["", "", ""]
    assert empty_result(clip_k_values(2, 2, 40), 1, 40, 5).coef_.shape == (1, 1, 5)  # k = 2: 1 row


def test_best_k_is_the_first_of_tied_silhouettes():
    ks = np.array([2, 3, 4])
    sil = np.array(
        [
            [0.5, 0.5 + 1e-15, 0.3],  # equal but for rounding: the smaller k
            [0.5, 0.5 + 1e-6, 0.3],  # a real difference
            [np.nan, np.nan, np.nan],  # no k: 1
            [np.nan, 0.2, 0.2],  # an exact tie after a skipped k
            [-0.1, -0.1 - 1e-16, -0.5],
        ]
    )
    np.testing.assert_array_equal(best_k(ks, sil), [2, 3, 1, 3, 2])
    assert best_k(np.array([], dtype=np.int64), np.zeros((2, 0))).tolist() == [1, 1]


def test_first_best_takes_the_first_index_within_the_band():
    v = torch.tensor(
        [[3.0, 1.0 + 1e-13, 1.0, 2.0], [0.0, 5.0 - 1e-13, 5.0, -torch.inf]], dtype=torch.float64
    )
    assert first_best(v, 1, 1e-9).tolist() == [1, 3]
    assert first_best(v, 1, 0.0).tolist() == [2, 3]  # no band: the exact argmin
    assert first_best(v, 1, 1e-9, largest=True).tolist() == [0, 1]
    assert first_best(v, 1, 0.0, largest=True).tolist() == [0, 2]
    band = torch.tensor([[0.0], [1e-9]], dtype=torch.float64)  # one band per row, broadcast
    assert first_best(v, 1, band).tolist() == [2, 3]
    assert first_best(v, 1, band, largest=True).tolist() == [0, 1]
    assert first_best(torch.full((1, 3), -torch.inf), 1, 1e-9, largest=True).tolist() == [0]


def test_notes_follow_the_decisions():
    ks = np.array([2, 3, 4])
    n_distinct = np.array([10, 3, 1, 10, 10, 2])
    best = np.array([3, 2, 1, 1, 2, 2])
    n_classes = np.array([3, 2, 0, 0, 1, 2])
    converged = np.array([True, True, True, True, True, False])
    assert problem_notes(ks, n_distinct, best, n_classes, converged).tolist() == [
        "",
        NOTE_K_ABOVE_DISTINCT,
        f"{NOTE_K_ABOVE_DISTINCT},{NOTE_CONSTANT_ROWS}",
        NOTE_ONE_CLASS,
        NOTE_ONE_CLASS,
        f"{NOTE_K_ABOVE_DISTINCT},{NOTE_SVM_NOT_CONVERGED}",
    ]


# ---- the SVM's decision rule -------------------------------------------------------------------


def _fitted(classes, n_problems=20, n_rows=40, n_features=6, seed=0):
    """Random ±1 inputs, labels drawn from ``classes``, LinearSVC fitted on each problem; the
    coefficients NaN-padded as the backends store them."""
    rng = np.random.default_rng(seed + len(classes))
    x = rng.choice([-1.0, 1.0], size=(n_problems, n_rows, n_features)).astype(np.float32)
    labels = np.asarray(classes)[rng.integers(0, len(classes), size=(n_problems, n_rows))]
    C = 1 if len(classes) == 2 else len(classes)
    coef = np.full((n_problems, C, n_features), np.nan)
    intercept = np.full((n_problems, C), np.nan)
    svms = []
    for p in range(n_problems):
        svm = LinearSVC(multi_class="ovr", random_state=0).fit(x[p], labels[p])
        coef[p], intercept[p] = svm.coef_, svm.intercept_
        svms.append(svm)
    n_rows = np.full(n_problems, C)
    return x, labels, coef, intercept, n_rows, svms


@pytest.mark.parametrize("classes", [(0, 1), (1, 3), (0, 1, 2), (0, 2, 5, 6)])
def test_svm_rule_is_scikit_learns(classes):
    """Both backends decide with svm_predict: it predicts what LinearSVC.predict does, for two
    classes (one row, "the second vs the first") and more, classes absent from 0..k-1 too."""
    x, labels, coef, intercept, n_rows, svms = _fitted(classes)
    t = [torch.as_tensor(a) for a in (x, labels, coef, intercept, n_rows)]
    pred = svm_predict(*t).numpy()
    acc = svm_accuracy(*t).numpy()
    for p, svm in enumerate(svms):
        np.testing.assert_array_equal(pred[p], svm.predict(x[p]))
        assert acc[p] == pytest.approx(svm.score(x[p], labels[p]), abs=1e-12)


def test_svm_rule_without_coefficients_is_nan():
    x, labels, coef, intercept, n_rows, _ = _fitted((0, 1), n_problems=2)
    n_rows[1] = 0
    t = [torch.as_tensor(a) for a in (x, labels, coef, intercept, n_rows)]
    assert (svm_predict(*t)[1] == -1).all()
    acc = svm_accuracy(*t)
    assert not torch.isnan(acc[0]) and torch.isnan(acc[1])


def test_svm_rule_settles_ties_the_same_way_whatever_the_rounding():
    """A score that is 0 in exact arithmetic predicts the first class, however it rounds; two
    classes whose scores are equal but for rounding go to the first of them."""
    x = torch.tensor([[[1.0, 1.0], [1.0, -1.0]]])  # (1, 2 rows, 2 features)
    labels = torch.tensor([[0, 1]])
    # 0.1 + 0.2 - 0.3 is 5.6e-17 in float64: scikit-learn would call it positive.
    coef = torch.tensor([[[0.1, 0.2]]], dtype=torch.float64)
    intercept = torch.tensor([[-0.3]], dtype=torch.float64)
    assert float(x[0, 0].double() @ coef[0, 0] + intercept[0, 0]) > 0
    pred = svm_predict(x, labels, coef, intercept, torch.tensor([1]))
    assert pred.tolist() == [[0, 0]]
    # Three classes, the rows of classes 1 and 2 equal up to a rounding error: class 1 wins.
    labels3 = torch.tensor([[0, 1, 2]])
    x3 = torch.tensor([[[1.0, 1.0], [1.0, 1.0], [-1.0, 1.0]]])
    w = torch.tensor([[[-1.0, 0.0], [0.5, 0.5], [0.5, 0.5 + 1e-15]]], dtype=torch.float64)
    b = torch.zeros(1, 3, dtype=torch.float64)
    pred = svm_predict(x3, labels3, w, b, torch.tensor([3]))
    assert pred[0, 0] == 1 and pred[0, 1] == 1
    assert TIE_RTOL < 1e-6  # a real difference in the scores still decides
    w[0, 2, 1] = 0.5 + 1e-6
    assert svm_predict(x3, labels3, w, b, torch.tensor([3]))[0, 0] == 2
