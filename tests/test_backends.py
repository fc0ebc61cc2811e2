"""The two backends (attnstore.analysis.backends): the sklearn backend makes exactly the seed's
scikit-learn calls, the torch backend agrees with it, and random_state reaches both.

scikit-learn's k-means and silhouettes go through float32 BLAS products, so the reference is not
bit-stable across CPUs: parity is asserted with stated tolerances (shares of problems, value
differences), never bit for bit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.metrics import silhouette_score
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from attnstore.analysis.backends import get_backend
from attnstore.analysis.backends.base import (
    NOTE_CONSTANT_ROWS,
    NOTE_K_ABOVE_DISTINCT,
    NOTE_ONE_CLASS,
    TIE_RTOL,
    clip_k_values,
)
from attnstore.analysis.backends.sklearn import fit_sklearn
from attnstore.analysis.backends.torch import (
    _silhouette_from_distances,
    fit_torch,
    pairwise_sq_distances,
)
from attnstore.analysis.backends.torch_kmeans import _kmeans_plusplus, _lloyd
from attnstore.analysis.backends.torch_svm import linear_svc_ovr
from attnstore.errors import ConfigError

N_PROBLEMS, N_ROWS, N_KEYS, N_FEATURES = 200, 40, 80, 10
K_VALUES = clip_k_values(2, 9, N_ROWS)


def attention_like(n_problems: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Causal attention rows with planted groups, and ±1 inputs: rows of shape (n_problems,
    N_ROWS, N_KEYS) float32, x of shape (n_problems, N_ROWS, N_FEATURES) float32.

    Each problem has 2 to 5 groups of rows; a group adds 5 to the logits of its own 2 of the
    first 12 keys. Row i is the query at position 2 i (an x token of an interleaved x, y sequence)
    and sees keys 0..2 i only, so row 0 is one-hot on key 0."""
    rng = np.random.default_rng(seed)
    P, N, D = n_problems, N_ROWS, N_KEYS
    n_groups = rng.integers(2, 6, size=P)
    group = rng.integers(0, 1 << 30, size=(P, N)) % n_groups[:, None]
    focus = rng.permuted(np.tile(np.arange(12), (P, 1)), axis=1).reshape(P, 6, 2)
    keys = np.take_along_axis(focus, group[:, :, None].repeat(2, 2), 1)  # (P, N, 2)
    boost = np.zeros((P, N, D))
    np.put_along_axis(boost, keys, 5.0, axis=2)
    logits = rng.normal(0.0, 0.5, size=(P, N, D)) + boost
    visible = np.arange(D)[None, :] <= 2 * np.arange(N)[:, None]  # (N, D)
    logits = np.where(visible, logits, -np.inf)
    rows = np.exp(logits - logits.max(2, keepdims=True))
    rows /= rows.sum(2, keepdims=True)
    x = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(P, N, N_FEATURES))
    return rows.astype(np.float32), x


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One thread for torch and for scikit-learn's OpenMP: these are many tiny operations, and
    two threads that wait on each other make them many times slower on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return attention_like(N_PROBLEMS)


@pytest.fixture(scope="module")
def reference(data):
    return fit_sklearn(*data, K_VALUES)


@pytest.fixture(scope="module")
def batched(data):
    return fit_torch(*data, K_VALUES)


def _tight_svc(x: np.ndarray, labels: np.ndarray) -> LinearSVC:
    """LinearSVC solved far past its default tolerance, to compare optima."""
    return LinearSVC(tol=1e-8, max_iter=100_000, random_state=0).fit(x, labels)


# ---- the pieces, on given labels -------------------------------------------------------------


def silhouette_scores(rows: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The torch backend's mean silhouette of each problem, as
    ``sklearn.metrics.silhouette_score``: rows of shape (n_problems, n_rows, n_keys), labels of
    shape (n_problems, n_rows) in 0..k-1; NaN for a problem whose labels have fewer than two
    distinct values. Float64, shape (n_problems,)."""
    dist = pairwise_sq_distances(rows).sqrt_()
    return _silhouette_from_distances(dist, labels, int(labels.max()) + 1)


def test_silhouette_matches_sklearn(data):
    rows = data[0][:50]
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, size=(50, N_ROWS))
    labels[:, 0] = 6  # a singleton cluster, and labels 4 and 5 absent
    got = silhouette_scores(torch.as_tensor(rows), torch.as_tensor(labels)).numpy()
    want = [silhouette_score(rows[p], labels[p]) for p in range(50)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_silhouette_of_one_cluster_is_nan(data):
    rows = torch.as_tensor(data[0][:2])
    assert torch.isnan(silhouette_scores(rows, torch.zeros(2, N_ROWS, dtype=torch.long))).all()


@pytest.mark.parametrize("classes", [(0, 1), (1, 3), (0, 1, 2), (0, 2, 5, 6)])
def test_linear_svc_matches_sklearn(data, classes):
    x = data[1][:30]
    rng = np.random.default_rng(len(classes))
    labels = np.asarray(classes)[rng.integers(0, len(classes), size=(30, N_ROWS))]
    coef, intercept, n_rows, converged = linear_svc_ovr(torch.as_tensor(x), torch.as_tensor(labels))
    assert converged.all()
    for p in range(30):
        svm = _tight_svc(x[p], labels[p])
        c = svm.coef_.shape[0]
        assert n_rows[p] == c == (1 if len(classes) == 2 else len(classes))
        scale = np.linalg.norm(svm.coef_, axis=1, keepdims=True)
        np.testing.assert_array_less(np.abs(coef[p, :c].numpy() - svm.coef_) / scale, 1e-3)
        np.testing.assert_array_less(
            np.abs(intercept[p, :c].numpy() - svm.intercept_), 1e-3 * scale[:, 0]
        )


def test_linear_svc_of_one_class_is_nan(data):
    x = torch.as_tensor(data[1][:3])
    coef, intercept, n_rows, _ = linear_svc_ovr(x, torch.full((3, N_ROWS), 2))
    assert (n_rows == 0).all()
    assert torch.isnan(coef).all() and torch.isnan(intercept).all()


@pytest.mark.parametrize("centres", [[0, 0, 5], [3, 3, 3, 20], [10, 11, 10, 12, 10]])
def test_lloyd_refills_empty_clusters_as_sklearn(data, centres):
    """Repeated initial centres leave clusters empty: scikit-learn's Lloyd gives each the row
    farthest from its centre, and so does the batched one. (scikit-learn's float32 distances
    could settle a near-tie otherwise on another CPU: one problem of 20 may differ.)"""
    rows = data[0][:20]
    d2 = pairwise_sq_distances(torch.as_tensor(rows))
    own_dist, labels = d2[:, :, centres].min(2)  # (P, N)
    band = TIE_RTOL * d2.flatten(1).amax(1)
    got = _lloyd(d2, labels.unsqueeze(2), own_dist.unsqueeze(2), len(centres), 300, band)[:, :, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate initial centres
        want = [
            KMeans(len(centres), init=rows[p][centres], n_init=1, tol=0).fit(rows[p]).labels_
            for p in range(20)
        ]
    assert (got.numpy() == np.stack(want)).all(1).sum() >= 19


# ---- the whole analysis against the reference ------------------------------------------------


def test_inertia_no_worse_than_reference(reference, batched):
    ratio = batched.inertia_ / reference.inertia_
    no_worse = (ratio <= 1.001) | (np.isnan(ratio) & np.isnan(batched.inertia_))
    assert (no_worse.mean(0) >= 0.99).all()


def test_best_k_matches_where_the_reference_is_clear(reference, batched):
    top_two = np.sort(np.nan_to_num(reference.silhouette_, nan=-np.inf), axis=1)[:, -2:]
    clear = top_two[:, 1] - top_two[:, 0] > 0.05
    assert clear.sum() > 10
    np.testing.assert_array_equal(batched.best_k_[clear], reference.best_k_[clear])


def test_first_initialisation_is_sklearn_s(reference, batched):
    """With n_init=1 the k-means++ draws are KMeans(random_state=0)'s: the same clusterings, but
    where float32 rounding decides a near-tie between two candidate centres differently."""
    same_sil = np.isclose(batched.silhouette_, reference.silhouette_, rtol=0, atol=1e-5)
    assert (same_sil | np.isnan(reference.silhouette_)).mean() >= 0.99
    assert (batched.labels_ == reference.labels_).all(1).mean() >= 0.99
    assert (batched.best_k_ == reference.best_k_).mean() >= 0.99


def test_svm_matches_reference(reference, batched):
    same = (batched.labels_ == reference.labels_).all(1)
    np.testing.assert_array_equal(batched.n_coef_rows_[same], reference.n_coef_rows_[same])
    scale = np.linalg.norm(reference.coef_, axis=2)  # (P, C)
    err = np.abs(batched.coef_ - reference.coef_).max(2) / scale
    assert np.nanmax(err[same]) < 1e-3
    err_b = np.abs(batched.intercept_ - reference.intercept_) / scale
    assert np.nanmax(err_b[same]) < 1e-3
    # Two optima 1e-3 apart may put a row that lies on the boundary on either side: the
    # accuracies agree on nearly every problem, and within one row on all.
    diff = np.abs(batched.svm_accuracy_[same] - reference.svm_accuracy_[same])
    assert (diff == 0).mean() >= 0.98 and diff.max() <= 1 / N_ROWS + 1e-12


def test_notes_match_reference(reference, batched):
    assert batched.notes_.tolist() == reference.notes_.tolist()


def test_more_initialisations_never_raise_inertia(data):
    rows, x = data[0][:40], data[1][:40]
    one = fit_torch(rows, x, K_VALUES)
    four = fit_torch(rows, x, K_VALUES, n_init=4)
    assert (four.inertia_ <= one.inertia_ * (1 + 1e-12)).all()
    assert (four.inertia_ < one.inertia_ * (1 - 1e-6)).any()


# ---- the sklearn backend is the seed's calls ---------------------------------------------------


@pytest.mark.parametrize("random_state", [0, 1])
def test_sklearn_backend_is_the_direct_calls(random_state):
    """KMeans(random_state), silhouette_score, the first best k, LinearSVC(random_state): the
    backend returns what the calls return, here (the same calls in the same process)."""
    rng = np.random.default_rng(1)
    rows = rng.dirichlet(np.ones(10), size=(4, 20)).astype(np.float32)
    x = rng.choice([-1.0, 1.0], size=(4, 20, 5)).astype(np.float32)
    ks = clip_k_values(2, 9, 20)
    r = fit_sklearn(rows, x, ks, random_state=random_state)
    for p in range(4):
        scores = []
        for j, k in enumerate(ks):
            km = KMeans(n_clusters=int(k), random_state=random_state, n_init="auto").fit(rows[p])
            scores.append(silhouette_score(rows[p], km.labels_))
            assert r.silhouette_[p, j] == pytest.approx(scores[-1], abs=1e-12)
            assert r.inertia_[p, j] == pytest.approx(km.inertia_, rel=1e-9)
        k_best = ks[int(np.argmax(scores))]
        assert r.best_k_[p] == k_best
        km = KMeans(n_clusters=int(k_best), random_state=random_state, n_init="auto").fit(rows[p])
        np.testing.assert_array_equal(r.labels_[p], km.labels_)
        svm = LinearSVC(multi_class="ovr", random_state=random_state).fit(x[p], km.labels_)
        n = svm.coef_.shape[0]
        assert r.n_coef_rows_[p] == n == (1 if k_best == 2 else k_best)
        np.testing.assert_allclose(r.coef_[p, :n], svm.coef_)
        np.testing.assert_allclose(r.intercept_[p, :n], svm.intercept_)
        assert r.svm_accuracy_[p] == pytest.approx(svm.score(x[p], km.labels_))


def test_random_state_changes_the_sklearn_clusterings(data):
    rows, x = data[0][:20], data[1][:20]
    zero, one = fit_sklearn(rows, x, K_VALUES), fit_sklearn(rows, x, K_VALUES, random_state=1)
    assert not (zero.labels_ == one.labels_).all()
    again = get_backend("sklearn", random_state=1)(rows, x, K_VALUES)
    np.testing.assert_array_equal(again.labels_, one.labels_)


@pytest.mark.parametrize("random_state", [0, 1, 7])
def test_torch_kmeans_plusplus_draws_as_sklearn(data, random_state):
    """The first initialisation's centres are those of scikit-learn's k-means++ with the same
    random_state (from float64 rows; a near-tie between two candidates may go either way)."""
    rows = data[0][:30]
    d2 = pairwise_sq_distances(torch.as_tensor(rows))
    band = TIE_RTOL * d2.flatten(1).amax(1)
    same = []
    for k in (2, 5, 9):
        gen = torch.Generator().manual_seed(0)
        centres, _ = _kmeans_plusplus(d2, k, 1, gen, random_state, band)
        for p in range(len(rows)):
            _, want = kmeans_plusplus(rows[p].astype(np.float64), k, random_state=random_state)
            same.append(centres[p, 0].tolist() == want.tolist())
    assert np.mean(same) >= 0.95


def test_torch_random_state_is_honoured(data):
    rows, x = data[0][:50], data[1][:50]
    zero, one = fit_torch(rows, x, K_VALUES), fit_torch(rows, x, K_VALUES, random_state=1)
    assert not (zero.labels_ == one.labels_).all()
    reference = fit_sklearn(rows, x, K_VALUES, random_state=1)
    assert (one.labels_ == reference.labels_).all(1).mean() >= 0.96
    again = get_backend("torch", random_state=1)(rows, x, K_VALUES)
    np.testing.assert_array_equal(again.labels_, one.labels_)


def test_unknown_backend_and_device():
    with pytest.raises(ConfigError, match="unknown backend 'scipy'; known: sklearn, torch"):
        get_backend("scipy")
    with pytest.raises(ConfigError, match="cpu only.*'cuda'"):
        get_backend("sklearn", device="cuda")


# ---- degenerate problems ---------------------------------------------------------------------


def test_degenerate_rows_as_reference(data):
    rows, x = data[0][:3].copy(), data[1][:3]
    rows[0] = rows[0, 9]  # constant rows
    rows[1] = rows[1, [5, 12, 30]][np.arange(N_ROWS) % 3]  # 3 distinct rows
    got = fit_torch(rows, x, K_VALUES)
    want = fit_sklearn(rows, x, K_VALUES)
    assert got.best_k_[0] == 1
    assert got.notes_[0] == f"{NOTE_K_ABOVE_DISTINCT},{NOTE_CONSTANT_ROWS}"
    assert np.isnan(got.coef_[0]).all() and np.isnan(got.svm_accuracy_[0])
    assert np.isnan(got.silhouette_[1, K_VALUES > 3]).all()
    assert not np.isnan(got.silhouette_[1, K_VALUES <= 3]).any()
    assert got.notes_.tolist() == want.notes_.tolist()
    np.testing.assert_array_equal(got.best_k_, want.best_k_)
    np.testing.assert_allclose(got.silhouette_, want.silhouette_, atol=1e-5)
    np.testing.assert_array_equal(got.labels_, want.labels_)


def test_constant_rows():
    rows = np.full((1, 10, 8), 1 / 8, dtype=np.float32)
    x = np.ones((1, 10, 4), dtype=np.float32)
    for fit in (fit_sklearn, fit_torch):
        r = fit(rows, x, clip_k_values(2, 9, 10))
        assert r.best_k_[0] == 1 and NOTE_CONSTANT_ROWS in r.notes_[0]
        assert np.isnan(r.silhouette_).all() and r.n_coef_rows_[0] == 0


def test_k_above_distinct_rows_is_skipped_and_noted():
    base = np.eye(3, 8, dtype=np.float32)
    rows = base[np.arange(12) % 3][None]  # 3 distinct rows
    x = np.random.default_rng(0).choice([-1.0, 1.0], size=(1, 12, 4)).astype(np.float32)
    ks = clip_k_values(2, 9, 12)
    for fit in (fit_sklearn, fit_torch):
        r = fit(rows, x, ks)
        assert NOTE_K_ABOVE_DISTINCT in r.notes_[0]
        assert np.isnan(r.silhouette_[0, ks > 3]).all()
        assert not np.isnan(r.silhouette_[0, ks <= 3]).any()
        assert r.best_k_[0] == 3


def test_one_class_for_the_svm():
    """Rows all equal: no clustering (constant rows) rather than a crash; a labelling with one
    class would be noted one_class."""
    r = fit_sklearn(
        np.full((1, 4, 3), 1 / 3, dtype=np.float32),
        np.ones((1, 4, 2), np.float32),
        clip_k_values(2, 9, 4),
    )
    assert r.best_k_[0] == 1
    assert NOTE_CONSTANT_ROWS in r.notes_[0] or NOTE_ONE_CLASS in r.notes_[0]


def test_no_k_to_try(data):
    rows, x = data[0][:2, :2], data[1][:2, :2]
    got = fit_torch(rows, x, clip_k_values(2, 9, 2))
    assert got.silhouette_.shape == (2, 0)
    assert (got.best_k_ == 1).all() and np.isnan(got.coef_).all()


# ---- the API ---------------------------------------------------------------------------------


def test_reproducible_and_chunk_free_with_one_initialisation(data):
    rows, x = data[0][:30], data[1][:30]
    a = fit_torch(rows, x, K_VALUES, n_init=3, chunk_size=8)
    b = fit_torch(rows, x, K_VALUES, n_init=3, chunk_size=8)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.inertia_, b.inertia_, rtol=1e-12)
    c = fit_torch(rows, x, K_VALUES, chunk_size=7)
    d = fit_torch(torch.as_tensor(rows), torch.as_tensor(x), K_VALUES)
    np.testing.assert_array_equal(c.labels_, d.labels_)
    np.testing.assert_array_equal(c.best_k_, d.best_k_)


def test_rejects_mismatched_shapes(data):
    with pytest.raises(ConfigError, match="do not match"):
        fit_torch(data[0][:3], data[1][:2], K_VALUES)
    with pytest.raises(ConfigError, match="n_init=0"):
        fit_torch(data[0][:3], data[1][:3], K_VALUES, n_init=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(data, batched):
    """The same analysis on the GPU: other kernels, other rounding, which the tie band absorbs;
    the thresholds leave room for a near-tie that the GPU's sums settle otherwise."""
    got = fit_torch(*data, K_VALUES, device="cuda")
    same = (got.labels_ == batched.labels_).all(1)
    assert same.mean() >= 0.99
    assert (got.best_k_ == batched.best_k_).mean() >= 0.99
    close = np.isclose(got.silhouette_, batched.silhouette_, rtol=0, atol=1e-6)
    assert (close | np.isnan(batched.silhouette_)).mean() >= 0.99
    np.testing.assert_allclose(got.coef_[same], batched.coef_[same], rtol=0, atol=1e-6)
    assert got.notes_.tolist() == batched.notes_.tolist()
    again = fit_torch(*data, K_VALUES, device="cuda", n_init=3)
    repeat = fit_torch(*data, K_VALUES, device="cuda", n_init=3)
    np.testing.assert_array_equal(again.labels_, repeat.labels_)
    np.testing.assert_allclose(again.inertia_, repeat.inertia_, rtol=1e-12)
