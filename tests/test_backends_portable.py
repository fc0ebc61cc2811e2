"""The torch backend decides the same on any CPU: distances are exact where decisions need it,
and every decision has a tie band, so the summation order of a matrix product (which differs
between BLAS kernels, and between batch shapes) changes no label, k, note or prediction.

"Another CPU" is simulated by summing every matrix product in the opposite order (the inner
dimension reversed), by permuting the keys, and by solving a problem in another batch. Values
that went through a product are compared with a stated tolerance, never bit for bit.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from attnstore.analysis.backends.base import ClusterResult, clip_k_values
from attnstore.analysis.backends.sklearn import fit_sklearn
from attnstore.analysis.backends.torch import count_distinct, fit_torch, pairwise_sq_distances
from tests.test_backends import attention_like


@pytest.fixture
def reverse_sums(monkeypatch):
    """Call it to have every torch.bmm and torch.baddbmm sum over its inner dimension in
    reverse: the same numbers in exact arithmetic, other rounding (as another CPU's kernels
    would give)."""
    bmm, baddbmm = torch.bmm, torch.baddbmm

    def apply():
        monkeypatch.setattr(torch, "bmm", lambda a, b: bmm(a.flip(-1), b.flip(-2)))
        monkeypatch.setattr(
            torch, "baddbmm", lambda c, a, b, **kw: baddbmm(c, a.flip(-1), b.flip(-2), **kw)
        )

    return apply


def grid_rows(n_problems, n_rows, n_keys, levels, scale, seed=0):
    """Rows whose weights are multiples of 1 / scale (levels of them): many distances, centre
    distances, potentials and silhouettes are equal in exact arithmetic, which is where the
    rounding of a sum decides. Also ±1 inputs x with 5 features."""
    rng = np.random.default_rng(seed)
    rows = (rng.integers(0, levels, (n_problems, n_rows, n_keys)) / scale).astype(np.float32)
    x = rng.choice(np.array([-1.0, 1.0], np.float32), size=(n_problems, n_rows, 5))
    return rows, x


def assert_same_decisions(a: ClusterResult, b: ClusterResult) -> None:
    """Labels, k, notes, distinct rows, SVM rows and predictions equal; values within rounding."""
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.best_k_, b.best_k_)
    assert a.notes_.tolist() == b.notes_.tolist()
    np.testing.assert_array_equal(a.n_distinct_rows_, b.n_distinct_rows_)
    np.testing.assert_array_equal(a.n_coef_rows_, b.n_coef_rows_)
    # Accuracies are counts of equal predictions over n_rows: equal, or a decision differed.
    np.testing.assert_array_equal(a.svm_accuracy_, b.svm_accuracy_)
    np.testing.assert_allclose(a.silhouette_, b.silhouette_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.inertia_, b.inertia_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=0, atol=1e-8)


# ---- distances ---------------------------------------------------------------------------------


def test_distances_are_symmetric_and_exact_where_it_matters():
    rows = attention_like(4)[0]
    rows[0, 1] = rows[0, 0]  # an exact duplicate
    rows[1, 1] = rows[1, 0]
    rows[1, 1, -1] = 1e-30  # a difference far below float64 rounding of the squared norms
    rows[2] = rows[2, 7]  # all rows equal
    d2 = pairwise_sq_distances(torch.as_tensor(rows))
    assert torch.equal(d2, d2.mT)  # by construction: one value per pair
    assert (d2.diagonal(dim1=1, dim2=2) == 0).all() and (d2 >= 0).all()
    same = (rows[:, :, None, :] == rows[:, None, :, :]).all(-1)  # (P, N, N)
    np.testing.assert_array_equal(d2.numpy() == 0, same)  # 0 exactly for identical rows only
    assert count_distinct(d2).tolist() == [len(np.unique(r, axis=0)) for r in rows]


def test_distances_stay_symmetric_whatever_the_kernel(reverse_sums):
    reverse_sums()
    rows = grid_rows(50, 20, 8, 3, 7)[0]
    d2 = pairwise_sq_distances(torch.as_tensor(rows))
    assert torch.equal(d2, d2.mT)
    same = (rows[:, :, None, :] == rows[:, None, :, :]).all(-1)
    np.testing.assert_array_equal(d2.numpy() == 0, same)


# ---- decisions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(20, 8, 2, 7), (30, 10, 3, 9)])
def test_decisions_do_not_depend_on_the_order_of_sums(shape, reverse_sums):
    """Before the tie band (k-means in float32, argmin on raw values), reversing the sums
    changed the labels of 1 and 3 of these 400 problems, and best k and SVM accuracies too."""
    n_rows, n_keys, levels, scale = shape
    rows, x = grid_rows(400, n_rows, n_keys, levels, scale, seed=n_rows)
    ks = clip_k_values(2, 9, n_rows)
    here = fit_torch(rows, x, ks)
    reverse_sums()
    elsewhere = fit_torch(rows, x, ks)
    assert_same_decisions(here, elsewhere)


def test_decisions_do_not_depend_on_the_order_of_keys():
    rows, x = attention_like(100, seed=3)
    ks = clip_k_values(2, 9, rows.shape[1])
    perm = np.random.default_rng(0).permutation(rows.shape[2])
    assert_same_decisions(fit_torch(rows, x, ks), fit_torch(rows[:, :, perm], x, ks))
    rows, x = grid_rows(200, 20, 8, 2, 7)
    ks = clip_k_values(2, 9, 20)
    perm = np.random.default_rng(1).permutation(8)
    assert_same_decisions(fit_torch(rows, x, ks), fit_torch(rows[:, :, perm], x, ks))


def test_decisions_do_not_depend_on_the_batch():
    """A problem solved in another batch (other shapes, other kernels) decides the same."""
    rows, x = grid_rows(120, 20, 8, 2, 7, seed=5)
    ks = clip_k_values(2, 9, 20)
    whole = fit_torch(rows, x, ks)
    backwards = fit_torch(rows[::-1].copy(), x[::-1].copy(), ks, chunk_size=7)
    per_problem = [f.name for f in dataclasses.fields(ClusterResult) if f.name != "k_values"]
    again = dataclasses.replace(
        backwards, **{name: getattr(backwards, name)[::-1] for name in per_problem}
    )
    assert_same_decisions(whole, again)


def same_partition(a, b) -> bool:
    return len(set(zip(a, b, strict=True))) == len(set(a)) == len(set(b))


@pytest.mark.parametrize("fit", [fit_sklearn, fit_torch], ids=["sklearn", "torch"])
def test_planted_groups_are_found_in_any_row_order(fit):
    """Well-separated groups: whatever the order of the rows (and so the first centre drawn),
    the same k and the same partition."""
    rng = np.random.default_rng(0)
    n_rows, groups = 30, 3
    group = np.arange(n_rows) % groups
    rows = np.full((n_rows, 12), 0.02) + rng.uniform(0, 0.02, (n_rows, 12))
    for g in range(groups):
        rows[group == g, g * 3 : g * 3 + 3] = 1.0
    rows = (rows / rows.sum(1, keepdims=True)).astype(np.float32)
    x = rng.choice([-1.0, 1.0], size=(n_rows, 6)).astype(np.float32)
    perms = [np.arange(n_rows)] + [rng.permutation(n_rows) for _ in range(4)]
    r = fit(
        np.stack([rows[p] for p in perms]), np.stack([x[p] for p in perms]), clip_k_values(2, 9, 30)
    )
    assert (r.best_k_ == groups).all()
    for i, p in enumerate(perms):
        assert same_partition(r.labels_[i], group[p])


def test_equidistant_rows_tie_at_every_k_in_any_row_order():
    """One-hot rows are all sqrt(2) apart: every clustering has silhouette 0 and every choice is
    a tie. The tie band makes each the first, so the result depends on positions only: the same
    labels, position by position, whichever rows sit where, and k = 2 (the smallest)."""
    n_rows, n_keys = 12, 16
    rng = np.random.default_rng(0)
    rows = np.zeros((6, n_rows, n_keys), dtype=np.float32)
    for p in range(6):
        rows[p, np.arange(n_rows), rng.permutation(n_keys)[:n_rows]] = 1
    x = rng.choice([-1.0, 1.0], size=(6, n_rows, 4)).astype(np.float32)
    r = fit_torch(rows, x, clip_k_values(2, 9, n_rows))
    np.testing.assert_allclose(r.silhouette_, 0, atol=1e-12)
    assert (r.best_k_ == 2).all()
    assert (r.labels_ == r.labels_[0]).all()
