"""Tests for attnstore.tasks: labels against a plain-loop reference, input tricks, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attnstore import tasks
from attnstore.errors import ConfigError

SMALL = {"n_samples": 40, "n_points": 24, "n_dims": 8}


# ---- an independent reference, written with plain loops --------------------------------


def _all_hold(weights, point) -> bool:
    return all(b == w for w, b in zip(weights, point, strict=True) if w != 0)


def _any_holds(weights, point) -> bool:
    return any(b == w for w, b in zip(weights, point, strict=True) if w != 0)


def reference_label(task: str, terms, threshold: float, point) -> float:
    """The label of one point under one hidden function: terms is a list of weight rows."""
    if task in ("conjunction", "teach_conjunction"):
        truth = _all_hold(terms[0], point)
    elif task in ("disjunction", "sparse_disjunction"):
        truth = _any_holds(terms[0], point)
    elif task == "dnf":
        truth = any(_all_hold(term, point) for term in terms)
    elif task == "cnf":
        truth = all(_any_holds(clause, point) for clause in terms)
    elif task in ("majority", "int_halfspace", "sparse_thres"):
        total = 0
        for w, b in zip(terms[0], point, strict=True):
            total += w * b
        truth = total > threshold
    elif task in ("parity", "sparse_parity"):
        ones = 0
        for w, b in zip(terms[0], point, strict=True):
            if w == 1 and b == 1:
                ones += 1
        truth = ones % 2 == 1
    else:
        raise AssertionError(task)
    return 1.0 if truth else -1.0


def reference_nearest_neighbour_ok(x, y, n_random: int) -> bool:
    """Check one sequence's labels against the nearest-earlier-neighbour rule."""
    for pos in range(1, len(x)):
        best, best_sim = None, None
        for prev in range(pos):
            sim = sum(float(a) * float(b) for a, b in zip(x[pos], x[prev], strict=True))
            if best_sim is None or sim > best_sim:
                best, best_sim = prev, sim
        copies = pos >= n_random or best_sim == len(x[pos])
        if copies and y[pos] != y[best]:
            return False
    return True


LOGIC_TASKS = [t for t in tasks.TASK_NAMES if t != "nearest_neighbours"]


# ---- shape, dtype and label checks for every task ---------------------------------------


@pytest.mark.parametrize("task", tasks.TASK_NAMES)
def test_batch_shapes_and_values(task):
    batch = tasks.sample_task(task, seed=1, **SMALL)
    s, p, d = SMALL["n_samples"], SMALL["n_points"], SMALL["n_dims"]
    assert batch.task == task
    assert batch.x.shape == (s, p, d) and batch.x.dtype == np.float32
    assert batch.y.shape == (s, p) and batch.y.dtype == np.float32
    assert batch.weights.dtype == np.int8 and batch.weights.shape[::2] == (s, d)
    assert batch.thresholds.shape == (s,) and batch.thresholds.dtype == np.float32
    assert set(np.unique(batch.x)) <= {-1.0, 1.0}
    assert set(np.unique(batch.y)) <= {-1.0, 1.0}
    assert json.loads(json.dumps(batch.params)) == tasks.task_params(task)


@pytest.mark.parametrize("task", LOGIC_TASKS)
def test_labels_match_plain_loop_reference(task):
    batch = tasks.sample_task(task, seed=2, **SMALL)
    for s in range(batch.x.shape[0]):
        terms = batch.weights[s].tolist()
        for p in range(batch.x.shape[1]):
            want = reference_label(task, terms, float(batch.thresholds[s]), batch.x[s, p].tolist())
            assert batch.y[s, p] == want, (s, p)


@pytest.mark.parametrize("task", LOGIC_TASKS)
def test_evaluate_agrees_on_fresh_inputs(task):
    batch = tasks.sample_task(task, seed=3, **SMALL)
    assert np.array_equal(tasks.evaluate(task, batch.weights, batch.thresholds, batch.x), batch.y)
    fresh = np.random.default_rng(0).choice([-1.0, 1.0], size=batch.x.shape)
    labels = tasks.evaluate(task, batch.weights, batch.thresholds, fresh)
    for s in range(fresh.shape[0]):
        for p in range(fresh.shape[1]):
            want = reference_label(
                task, batch.weights[s].tolist(), float(batch.thresholds[s]), fresh[s, p].tolist()
            )
            assert labels[s, p] == want


def test_nearest_neighbours_labels_follow_earlier_points():
    batch = tasks.sample_task("nearest_neighbours", 30, 30, 5, seed=4, n_random_labels=8)
    assert batch.weights.shape == (30, 0, 5)
    assert np.isnan(batch.thresholds).all()
    for s in range(30):
        assert reference_nearest_neighbour_ok(batch.x[s].tolist(), batch.y[s].tolist(), 8)


def test_nearest_neighbours_first_labels_are_random():
    batch = tasks.sample_task("nearest_neighbours", 2000, 40, 28, seed=5)
    first = batch.y[:, :20]
    assert 0.45 < (first == 1).mean() < 0.55


def test_thresholds_are_the_linear_form_of_every_single_term_task():
    for task in (
        "conjunction",
        "disjunction",
        "sparse_disjunction",
        "teach_conjunction",
        "majority",
        "int_halfspace",
        "sparse_thres",
    ):
        batch = tasks.sample_task(task, seed=6, **SMALL)
        dots = np.einsum("spd,sd->sp", batch.x, batch.weights[:, 0].astype(np.float32))
        assert np.array_equal(np.where(dots > batch.thresholds[:, None], 1.0, -1.0), batch.y)
    for task in ("dnf", "cnf", "parity", "sparse_parity", "nearest_neighbours"):
        assert np.isnan(tasks.sample_task(task, seed=6, **SMALL).thresholds).all()


# ---- hidden functions and input tricks, statistically -----------------------------------


def _positive_rate(task, n_dims=10, **params):
    return (tasks.sample_task(task, 1000, 40, n_dims, seed=7, **params).y == 1).mean()


def test_literal_weights_follow_p_literal():
    w = tasks.sample_task("conjunction", 4000, 1, 10, seed=8).weights
    assert 0.27 < (w != 0).mean() < 0.33
    assert abs((w == 1).mean() - (w == -1).mean()) < 0.01
    w = tasks.sample_task("dnf", 4000, 1, 10, seed=8).weights
    assert w.shape[1] == 3 and 0.18 < (w != 0).mean() < 0.22


def test_conjunction_plants_positives():
    # Uniform inputs satisfy a conjunction here with probability 0.85**10, about 0.20.
    assert _positive_rate("conjunction", p_plant=0.0) < 0.25
    assert _positive_rate("conjunction") > 0.38  # 0.3 + 0.7 * 0.20 expected


def test_disjunction_plants_negatives():
    assert 1 - _positive_rate("disjunction", p_plant=0.0) < 0.25
    assert 1 - _positive_rate("disjunction") > 0.38


def test_sparse_disjunction_has_k_positive_literals_and_planted_negatives():
    batch = tasks.sample_task("sparse_disjunction", 1000, 40, 10, seed=9)
    assert (batch.weights.sum(axis=(1, 2)) == 4).all() and batch.weights.min() == 0
    assert (batch.y == -1).mean() > 0.3  # uniform inputs alone: 1/16
    assert (tasks.sample_task("sparse_disjunction", 50, 4, 10, 0, k=7).weights == 1).sum() == 350


def test_dnf_and_cnf_plant_one_term():
    # At 28 dims a random term is rarely true by chance (about 0.15 of DNF points are).
    assert _positive_rate("dnf", 28) - _positive_rate("dnf", 28, p_plant=0.0) > 0.2
    assert _positive_rate("cnf", 28, p_plant=0.0) - _positive_rate("cnf", 28) > 0.15


def test_threshold_task_weights():
    batch = tasks.sample_task("majority", 2000, 4, 10, seed=10)
    assert set(np.unique(batch.weights)) == {0, 1} and (batch.thresholds == 0.5).all()
    batch = tasks.sample_task("int_halfspace", 2000, 4, 10, seed=10)
    assert set(np.unique(batch.weights)) == set(range(-3, 4))
    batch = tasks.sample_task("sparse_thres", 2000, 4, 10, seed=10)
    assert set(np.unique(batch.weights)) == {-1, 0, 1}
    assert set(np.unique(batch.thresholds)) == {-2.5, -1.5, -0.5, 0.5, 1.5, 2.5}


def test_parity_weights():
    w = tasks.sample_task("parity", 4000, 2, 10, seed=11).weights
    assert set(np.unique(w)) == {0, 1} and 0.47 < w.mean() < 0.53
    w = tasks.sample_task("sparse_parity", 500, 2, 10, seed=11).weights
    assert (w.sum(axis=(1, 2)) == 2).all()
    w = tasks.sample_task("sparse_parity", 20, 2, 6, 0, k=3).weights
    assert (w.sum(axis=(1, 2)) == 3).all()


def test_teach_conjunction_prefix_structure():
    batch = tasks.sample_task("teach_conjunction", 300, 40, 12, seed=12)
    assert set(np.unique(batch.weights)) <= {0, 1}
    for s in range(300):
        w = batch.weights[s, 0]
        relevant = [j for j in range(12) if w[j] == 1]
        first = [1.0 if w[j] == 1 else -1.0 for j in range(12)]
        assert batch.x[s, 0].tolist() == first and batch.y[s, 0] == 1
        for r, j in enumerate(relevant, start=1):
            row = list(first)
            row[j] = -1.0
            assert batch.x[s, r].tolist() == row and batch.y[s, r] == -1
    after = batch.y[:, 13:]  # past any teaching prefix: planting at 0.4 shows
    assert (after == 1).mean() > 0.4


def test_teach_conjunction_prefix_is_cut_to_n_points():
    batch = tasks.sample_task("teach_conjunction", 20, 3, 10, seed=13, p_literal=1.0)
    assert batch.x[:, 0].min() == 1 and (batch.y == [1, -1, -1]).all()


# ---- determinism and parameters ---------------------------------------------------------


@pytest.mark.parametrize("task", tasks.TASK_NAMES)
def test_same_seed_same_batch_other_seed_differs(task):
    a = tasks.sample_task(task, seed=21, **SMALL)
    b = tasks.sample_task(task, seed=21, **SMALL)
    c = tasks.sample_task(task, seed=22, **SMALL)
    for name in ("x", "y", "weights", "thresholds"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True)
    assert not np.array_equal(a.x, c.x)


def test_task_names_and_literal_tasks():
    assert list(tasks.TASK_NAMES) == sorted(tasks.TASK_NAMES) and len(tasks.TASK_NAMES) == 12
    literal = {t for t in tasks.TASK_NAMES if tasks.has_literals(t)}
    assert literal == {
        "conjunction",
        "disjunction",
        "sparse_disjunction",
        "teach_conjunction",
        "dnf",
        "cnf",
        "sparse_thres",
    }


def test_task_params_defaults_and_overrides():
    assert tasks.task_params("conjunction") == {"p_literal": 0.3, "p_plant": 0.3}
    assert tasks.task_params("dnf", n_terms=2)["n_terms"] == 2
    assert tasks.task_params("sparse_parity", k=np.int64(3)) == {"k": 3}
    assert tasks.sample_task("cnf", 5, 3, 6, 0, n_terms=5).weights.shape == (5, 5, 6)


# ---- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: tasks.sample_task("conjuction", 2, 2, 2, 0), "'conjuction'"),
        (lambda: tasks.task_params("conjuction"), "conjunction, disjunction"),
        (lambda: tasks.has_literals("parityy"), "'parityy'"),
        (lambda: tasks.evaluate("nope", np.zeros((1, 1, 2)), [0.0], np.ones((1, 1, 2))), "nope"),
        (lambda: tasks.sample_task("conjunction", 2, 2, 0, 0), "n_dims=0"),
        (lambda: tasks.sample_task("conjunction", 2, 0, 2, 0), "n_points=0"),
        (lambda: tasks.sample_task("conjunction", 0, 2, 2, 0), "n_samples=0"),
        (lambda: tasks.sample_task("conjunction", -3, 2, 2, 0), "n_samples=-3"),
        (lambda: tasks.sample_task("conjunction", 2, 2.5, 2, 0), "n_points=2.5"),
        (lambda: tasks.sample_task("conjunction", 2, 2, 2, -1), "seed=-1"),
        (lambda: tasks.sample_task("sparse_disjunction", 2, 2, 3, 0), "k=4"),
        (lambda: tasks.sample_task("sparse_parity", 2, 2, 4, 0, k=5), "k=5"),
        (lambda: tasks.sample_task("parity", 2, 2, 21, 0), "n_dims=21"),
        (lambda: tasks.task_params("conjunction", p_plnt=0.3), "'p_plnt'"),
        (lambda: tasks.sample_task("parity", 2, 2, 4, 0, k=2), "'k'"),
        (lambda: tasks.sample_task("conjunction", 2, 2, 2, 0, p_plant=1.5), "1.5"),
        (lambda: tasks.sample_task("dnf", 2, 2, 2, 0, p_literal=-0.1), "-0.1"),
        (lambda: tasks.task_params("majority", threshold=float("nan")), "nan"),
        (lambda: tasks.task_params("dnf", n_terms=0), "n_terms=0"),
        (lambda: tasks.task_params("sparse_parity", k=True), "k=True"),
        (lambda: tasks.task_params("nearest_neighbours", n_random_labels=0), "n_random_labels=0"),
    ],
)
def test_bad_input_raises_config_error_naming_the_value(call, needle):
    with pytest.raises(ConfigError) as info:
        call()
    assert needle in str(info.value)


def test_unknown_parameter_lists_accepted_ones():
    with pytest.raises(ConfigError, match="accepted: p_literal, p_plant"):
        tasks.task_params("conjunction", q=1)


def test_evaluate_refuses_nearest_neighbours_and_bad_shapes():
    batch = tasks.sample_task("nearest_neighbours", seed=0, **SMALL)
    with pytest.raises(ConfigError, match="nearest_neighbours"):
        tasks.evaluate("nearest_neighbours", batch.weights, batch.thresholds, batch.x)
    batch = tasks.sample_task("conjunction", seed=0, **SMALL)
    with pytest.raises(ConfigError, match="do not match"):
        tasks.evaluate("conjunction", batch.weights[:, :, :4], batch.thresholds, batch.x)
    with pytest.raises(ConfigError, match="entries"):
        tasks.evaluate("conjunction", batch.weights, batch.thresholds, (batch.x + 1) / 2)
    with pytest.raises(ConfigError, match="finite thresholds"):
        tasks.evaluate("majority", batch.weights, np.full(40, np.nan), batch.x)
