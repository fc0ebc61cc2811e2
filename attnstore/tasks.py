"""The Boolean in-context learning tasks: hidden functions, their inputs and labels.

Each task draws one hidden function per sample and a sequence of ``n_points`` inputs on
{-1, +1}^n_dims, then labels every input with that function. The tasks follow the public code
of Bhattamishra et al. (ICLR 2024, satwik77/incontext-bool, ``src/bool_tasks.py``), rewritten
with numpy and one seeded generator so that a batch is reproducible from its seed.

Conventions
-----------
Literal weights ``w`` in {0, +1, -1}: +1 means x_j, -1 means not x_j, 0 means absent; a literal
holds at x when ``x_j == w_j``. A hidden function is stored as ``weights`` of shape
(n_samples, n_terms, n_dims) and, for the tasks that are one linear threshold,
``thresholds`` of shape (n_samples,) with label ``+1 iff x.w > threshold``:

=====================  ==============================  ===============================
task                   weights                         label
=====================  ==============================  ===============================
conjunction            1 term, {0,+-1}, P(w_j!=0)=0.3  +1 iff every literal holds
disjunction            same                            -1 iff no literal holds
sparse_disjunction     exactly k=4 positive literals   as disjunction
dnf                    3 terms, P(w_j!=0)=0.2          OR of the terms (ANDs)
cnf                    3 clauses, P(w_j!=0)=0.2        AND of the clauses (ORs)
majority               {0,1}, P(w_j=1)=0.3             +1 iff x.w > 0.5
int_halfspace          integers in [-3, 3]             +1 iff x.w > 0.5
sparse_thres           {0,+-1}, P(w_j!=0)=0.3          +1 iff x.w > t, t in {-2.5..2.5}
parity                 {0,1}, uniform random subset    +1 iff an odd number of the
sparse_parity          {0,1}, exactly k=2 bits           chosen bits are +1
nearest_neighbours     none (n_terms = 0)              label of the most similar earlier x
teach_conjunction      {0,1}, P(w_j=1)=0.3             as conjunction
=====================  ==============================  ===============================

Conjunctions and disjunctions are threshold functions too, and their thresholds are stored:
``|w| - 1`` for a conjunction, ``1 - |w|`` for a disjunction. An empty conjunction (DNF term)
is always true and an empty disjunction (CNF clause) always false, as in the reference.

Input tricks (the reference's, with its probabilities as defaults): conjunction and
teach_conjunction make each point positive with probability ``p_plant`` by setting the
target's literals true; disjunction and sparse_disjunction make points negative by setting
every literal false; dnf picks one term per sample and makes it true at each point with
probability ``p_plant``; cnf likewise picks one clause and makes it false. teach_conjunction
then overwrites the first ``|w| + 1`` points with the teaching sequence: one point with every
relevant bit +1 and every other bit -1 (positive), then for each relevant bit in increasing
index order the same point with that bit flipped to -1 (negative).

Choices where the reference leaves a gap, or where this module differs from it:

- nearest_neighbours: the reference's default ``start_idx=0`` crashes (the first point has no
  earlier point); its training script's commented default is 20, used here as
  ``n_random_labels``. The first ``n_random_labels`` labels are uniform random, except that a
  point equal to an earlier one copies its label; every later point copies the label of the
  earlier point with the largest dot product (equal to the reference's rounded cosine
  similarity on {-1, +1} inputs), the earliest on ties, as torch.argmax does.
- teach_conjunction: when ``n_points`` is shorter than the teaching sequence (the reference
  fails there with a shape error), the sequence is cut to ``n_points``.
- parity: the reference draws an index into a list of all 2**n_dims subsets. Including each
  bit independently with probability 1/2 is the same distribution and needs no list, but
  ``n_dims`` is still capped at ``MAX_PARITY_DIMS`` = 20, where the reference's enumeration
  stops being practical, so that every parity batch is one the reference could produce.
- threshold ties (``x.w == threshold``, impossible with the half-integer defaults): the
  reference returns label 0; here they are labelled -1 so that labels are always +-1.

DOMAIN.md's task table and the reference code agree on every point listed there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from attnstore.errors import ConfigError, known
from attnstore.limits import check_allocation

TASK_NAMES: tuple[str, ...] = (
    "cnf",
    "conjunction",
    "disjunction",
    "dnf",
    "int_halfspace",
    "majority",
    "nearest_neighbours",
    "parity",
    "sparse_disjunction",
    "sparse_parity",
    "sparse_thres",
    "teach_conjunction",
)

MAX_PARITY_DIMS = 20
SEED_MAX = 2**63 - 1  # seeds are stored as int64

# Published defaults per task. p_literal is P(w_j != 0): split evenly between +1 and -1 for
# signed tasks, all +1 for monotone ones (majority, teach_conjunction).
_DEFAULTS: dict[str, dict[str, int | float]] = {
    "cnf": {"n_terms": 3, "p_literal": 0.2, "p_plant": 0.3},
    "conjunction": {"p_literal": 0.3, "p_plant": 0.3},
    "disjunction": {"p_literal": 0.3, "p_plant": 0.3},
    "dnf": {"n_terms": 3, "p_literal": 0.2, "p_plant": 0.35},
    "int_halfspace": {"weight_bound": 3, "threshold": 0.5},
    "majority": {"p_literal": 0.3, "threshold": 0.5},
    "nearest_neighbours": {"n_random_labels": 20},
    "parity": {},
    "sparse_disjunction": {"k": 4, "p_plant": 0.3},
    "sparse_parity": {"k": 2},
    "sparse_thres": {"p_literal": 0.3, "thres_bound": 3},
    "teach_conjunction": {"p_literal": 0.3, "p_plant": 0.4},
}

# What each parameter accepts: (kind, lowest, highest).
_KINDS: dict[str, tuple[str, float, float]] = {
    "p_literal": ("real", 0.0, 1.0),
    "p_plant": ("real", 0.0, 1.0),
    "threshold": ("real", -math.inf, math.inf),
    "k": ("int", 1, math.inf),
    "n_terms": ("int", 1, math.inf),
    "n_random_labels": ("int", 1, math.inf),
    "thres_bound": ("int", 1, 127),
    "weight_bound": ("int", 0, 127),  # weights are stored as int8
}

_AND_TASKS = frozenset({"conjunction", "teach_conjunction", "dnf"})
_OR_TASKS = frozenset({"disjunction", "sparse_disjunction", "cnf"})
_THRESHOLD_TASKS = frozenset({"majority", "int_halfspace", "sparse_thres"})
_PARITY_TASKS = frozenset({"parity", "sparse_parity"})
_LITERAL_TASKS = _AND_TASKS | _OR_TASKS | {"sparse_thres"}
_MULTI_TERM_TASKS = frozenset({"dnf", "cnf"})


@dataclass(frozen=True)
class TaskBatch:
    """A batch of in-context sequences and the hidden function behind each.

    x: inputs of shape (n_samples, n_points, n_dims), float32, entries +-1.
    y: labels of shape (n_samples, n_points), float32, entries +-1.
    weights: hidden functions of shape (n_samples, n_terms, n_dims), int8 (see module doc).
    thresholds: shape (n_samples,), float32; NaN where the task has no single threshold.
    task: the task name. params: the task parameters used, defaults filled in.
    """

    x: np.ndarray
    y: np.ndarray
    weights: np.ndarray
    thresholds: np.ndarray
    task: str
    params: dict


def task_params(name: str, **overrides) -> dict:
    """Return the task's default parameters merged with ``overrides``, checked."""
    _check_task(name)
    accepted = _DEFAULTS[name]
    for key in overrides:
        if key not in accepted:
            raise ConfigError(
                f"unknown parameter {key!r} for task {name!r}; accepted: {known(accepted)}"
            )
    params = {**accepted, **overrides}
    return {key: _check_param(name, key, value) for key, value in params.items()}


def sample_task(
    name: str, n_samples: int, n_points: int, n_dims: int, seed: int, **params
) -> TaskBatch:
    """Draw ``n_samples`` hidden functions and their labelled sequences, from ``seed``."""
    params = task_params(name, **params)
    n_samples = _check_int("n_samples", n_samples, 1)
    n_points = _check_int("n_points", n_points, 1)
    n_dims = _check_int("n_dims", n_dims, 1)
    seed = _check_int("seed", seed, 0, SEED_MAX)
    # The sampler holds a few float64 arrays of the prompts' shape at once.
    check_allocation(
        f"{n_samples:,} prompts of {n_points} points and {n_dims} dims",
        n_samples * n_points * n_dims * 8 * 4,
        "fewer samples (a run can be split over several seeds)",
    )
    if "k" in params and params["k"] > n_dims:
        raise ConfigError(
            f"k={params['k']} exceeds n_dims={n_dims} for task {name!r}; accepted: 1 <= k <= n_dims"
        )
    if name == "parity" and n_dims > MAX_PARITY_DIMS:
        raise ConfigError(
            f"n_dims={n_dims} is too large for task 'parity' (the reference enumerates all "
            f"2**n_dims subsets); accepted: 1 <= n_dims <= {MAX_PARITY_DIMS}"
        )
    rng = np.random.default_rng(seed)
    shape = (n_samples, n_points, n_dims)
    x, weights, thresholds, y = _SAMPLERS[name](rng, shape, params)
    if y is None:
        y = _label(name, weights, thresholds, x)
    return TaskBatch(
        x=x.astype(np.float32),
        y=y.astype(np.float32),
        weights=weights.astype(np.int8),
        thresholds=thresholds.astype(np.float32),
        task=name,
        params=params,
    )


def evaluate(task: str, weights, thresholds, x) -> np.ndarray:
    """Label inputs with stored hidden functions.

    weights of shape (n_samples, n_terms, n_dims), thresholds of shape (n_samples,) and
    inputs x of shape (n_samples, n_points, n_dims) with entries +-1; returns labels of shape
    (n_samples, n_points), float32, entries +-1. Logic tasks use the weights only; threshold
    tasks need finite thresholds. nearest_neighbours is not supported: its labels depend on
    the sequence's earlier labels, not on a stored function (use the batch's ``y``).
    """
    _check_task(task)
    if task == "nearest_neighbours":
        raise ConfigError(
            "evaluate() does not support task 'nearest_neighbours': its labels come from the "
            "sequence's earlier labels, not a stored function; use TaskBatch.y"
        )
    weights = np.asarray(weights)
    x = np.asarray(x)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if x.ndim != 3 or weights.ndim != 3:
        raise ConfigError(
            f"x of shape {x.shape} and weights of shape {weights.shape}; accepted: "
            f"(n_samples, n_points, n_dims) and (n_samples, n_terms, n_dims)"
        )
    n_samples, _, n_dims = x.shape
    n_terms = weights.shape[1]
    if weights.shape[0] != n_samples or weights.shape[2] != n_dims:
        raise ConfigError(f"weights of shape {weights.shape} do not match x of shape {x.shape}")
    if thresholds.shape != (n_samples,):
        raise ConfigError(f"thresholds of shape {thresholds.shape}; accepted: ({n_samples},)")
    if task not in _MULTI_TERM_TASKS and n_terms != 1:
        raise ConfigError(f"task {task!r} has one term per sample, got n_terms={n_terms}")
    if not np.all(np.abs(x) == 1):
        raise ConfigError("x has entries other than -1 and +1; accepted: entries +-1")
    if task in _LITERAL_TASKS and not np.all(np.abs(weights) <= 1):
        raise ConfigError(f"task {task!r} takes literal weights; accepted: 0, +1, -1")
    if task in _THRESHOLD_TASKS and not np.all(np.isfinite(thresholds)):
        raise ConfigError(f"task {task!r} needs finite thresholds; got NaN or inf")
    return _label(task, weights, thresholds, x).astype(np.float32)


def has_literals(task: str) -> bool:
    """True for tasks whose weights are literals in {0, +1, -1}."""
    _check_task(task)
    return task in _LITERAL_TASKS


# ---- checks -------------------------------------------------------------------------------


def _check_task(name: str) -> None:
    if name not in _DEFAULTS:
        raise ConfigError(f"unknown task {name!r}; known: {known(TASK_NAMES)}")


def _check_int(what: str, value, lowest: int, highest: float = math.inf) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ConfigError(f"{what}={value!r} is not an integer; accepted: an integer")
    if not lowest <= value <= highest:
        bound = f"{lowest} <= {what}" + (f" <= {highest}" if highest < math.inf else "")
        raise ConfigError(f"{what}={value!r} is out of range; accepted: {bound}")
    return int(value)


def _check_param(task: str, key: str, value) -> int | float:
    kind, lowest, highest = _KINDS[key]
    if kind == "int":
        return _check_int(key, value, int(lowest), highest)
    if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(value):
        raise ConfigError(f"{key}={value!r} for task {task!r} is not a number")
    if not lowest <= value <= highest or math.isinf(value):
        accepted = "a probability in [0, 1]" if highest == 1.0 else "a finite number"
        raise ConfigError(f"{key}={value!r} for task {task!r}; accepted: {accepted}")
    return float(value)


# ---- labels -------------------------------------------------------------------------------


def _label(task: str, weights: np.ndarray, thresholds: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Labels of shape (n_samples, n_points) from weights (S, T, D) and x (S, P, D)."""
    if task in _PARITY_TASKS:
        chosen = weights[:, 0, :] != 0  # (S, D)
        odd = ((x > 0) & chosen[:, None, :]).sum(axis=-1) % 2 == 1  # (S, P)
        return np.where(odd, 1.0, -1.0)
    dots = np.matmul(
        x.astype(np.float32), weights.astype(np.float32).transpose(0, 2, 1)
    )  # (S, P, T); exact, the values are small integers
    if task in _THRESHOLD_TASKS:
        return np.where(dots[:, :, 0] > thresholds[:, None], 1.0, -1.0)
    n_literals = np.abs(weights).sum(axis=-1)[:, None, :]  # (S, 1, T)
    if task in _AND_TASKS:
        truth = (dots == n_literals).any(axis=-1)  # every literal holds, in some term
    else:
        truth = (dots > -n_literals).all(axis=-1)  # some literal holds, in every clause
    return np.where(truth, 1.0, -1.0)


# ---- samplers: (rng, (S, P, D), params) -> (x, weights, thresholds, y or None) -----------


def _uniform_x(rng, shape) -> np.ndarray:
    return rng.integers(0, 2, size=shape, dtype=np.int8) * 2 - 1


def _signed(rng, shape, p_literal: float) -> np.ndarray:
    u = rng.random(shape)
    return np.where(u < p_literal / 2, 1, np.where(u < p_literal, -1, 0)).astype(np.int8)


def _monotone(rng, shape, p_literal: float) -> np.ndarray:
    return (rng.random(shape) < p_literal).astype(np.int8)


def _k_subset(rng, n_samples: int, n_dims: int, k: int) -> np.ndarray:
    """Exactly k ones per row, the set uniform over k-subsets; shape (S, 1, D)."""
    chosen = np.argsort(rng.random((n_samples, n_dims)), axis=1)[:, :k]
    w = np.zeros((n_samples, n_dims), dtype=np.int8)
    np.put_along_axis(w, chosen, 1, axis=1)
    return w[:, None, :]


def _plant(rng, x: np.ndarray, w: np.ndarray, p_plant: float, sign: int) -> np.ndarray:
    """Set each point's literals of w (S, D) to sign * w with probability p_plant."""
    chosen = rng.random(x.shape[:2]) < p_plant  # (S, P)
    mask = chosen[:, :, None] & (w != 0)[:, None, :]  # (S, P, D)
    return np.where(mask, (sign * w)[:, None, :], x).astype(np.int8)


def _nan(n_samples: int) -> np.ndarray:
    return np.full(n_samples, np.nan)


def _sample_conjunction(rng, shape, params):
    n_samples, _, n_dims = shape
    w = _signed(rng, (n_samples, 1, n_dims), params["p_literal"])
    x = _plant(rng, _uniform_x(rng, shape), w[:, 0], params["p_plant"], +1)
    return x, w, np.abs(w).sum(axis=(1, 2)) - 1.0, None


def _disjunction_from(rng, shape, w, p_plant):
    x = _plant(rng, _uniform_x(rng, shape), w[:, 0], p_plant, -1)
    return x, w, 1.0 - np.abs(w).sum(axis=(1, 2)), None


def _sample_disjunction(rng, shape, params):
    w = _signed(rng, (shape[0], 1, shape[2]), params["p_literal"])
    return _disjunction_from(rng, shape, w, params["p_plant"])


def _sample_sparse_disjunction(rng, shape, params):
    w = _k_subset(rng, shape[0], shape[2], params["k"])
    return _disjunction_from(rng, shape, w, params["p_plant"])


def _normal_form(rng, shape, params, sign: int):
    """dnf (sign +1: plant a true term) or cnf (sign -1: plant a false clause)."""
    n_samples, _, n_dims = shape
    w = _signed(rng, (n_samples, params["n_terms"], n_dims), params["p_literal"])
    term = rng.integers(params["n_terms"], size=n_samples)  # one per sample, as the reference
    planted = w[np.arange(n_samples), term]  # (S, D)
    x = _plant(rng, _uniform_x(rng, shape), planted, params["p_plant"], sign)
    return x, w, _nan(n_samples), None


def _sample_majority(rng, shape, params):
    w = _monotone(rng, (shape[0], 1, shape[2]), params["p_literal"])
    return _uniform_x(rng, shape), w, np.full(shape[0], params["threshold"]), None


def _sample_int_halfspace(rng, shape, params):
    bound = params["weight_bound"]
    w = rng.integers(-bound, bound + 1, size=(shape[0], 1, shape[2])).astype(np.int8)
    return _uniform_x(rng, shape), w, np.full(shape[0], params["threshold"]), None


def _sample_sparse_thres(rng, shape, params):
    w = _signed(rng, (shape[0], 1, shape[2]), params["p_literal"])
    bound = params["thres_bound"]
    thresholds = rng.integers(-bound, bound, size=shape[0]) + 0.5  # {-2.5, ..., 2.5} at 3
    return _uniform_x(rng, shape), w, thresholds, None


def _sample_parity(rng, shape, params):
    w = rng.integers(0, 2, size=(shape[0], 1, shape[2]), dtype=np.int8)
    return _uniform_x(rng, shape), w, _nan(shape[0]), None


def _sample_sparse_parity(rng, shape, params):
    w = _k_subset(rng, shape[0], shape[2], params["k"])
    return _uniform_x(rng, shape), w, _nan(shape[0]), None


def _sample_nearest_neighbours(rng, shape, params):
    n_samples, n_points, n_dims = shape
    x = _uniform_x(rng, shape)
    xf = x.astype(np.float32)
    sims = np.matmul(xf, xf.transpose(0, 2, 1))  # (S, P, P) dot products
    earlier = np.tril(np.ones((n_points, n_points), dtype=bool), k=-1)  # key < query
    sims = np.where(earlier[None], sims, -np.inf)
    nearest = sims.argmax(axis=2)  # (S, P); first maximum on ties
    duplicate = sims.max(axis=2) == n_dims  # an earlier point equals this one
    y = rng.integers(0, 2, size=(n_samples, n_points)).astype(np.float64) * 2 - 1
    rows = np.arange(n_samples)
    for pos in range(1, n_points):
        copied = y[rows, nearest[:, pos]]
        y[:, pos] = np.where(duplicate[:, pos], copied, y[:, pos])
        if pos >= params["n_random_labels"]:
            y[:, pos] = copied
    w = np.zeros((n_samples, 0, n_dims), dtype=np.int8)
    return x, w, _nan(n_samples), y


def _sample_teach_conjunction(rng, shape, params):
    n_samples, n_points, n_dims = shape
    w = _monotone(rng, (n_samples, 1, n_dims), params["p_literal"])
    x = _plant(rng, _uniform_x(rng, shape), w[:, 0], params["p_plant"], +1)
    # Teaching sequence: row 0 = 2w - 1; row r >= 1 flips the r-th relevant bit to -1.
    relevant = w[:, 0] == 1  # (S, D)
    rank = np.cumsum(relevant, axis=1) - 1  # (S, D): order of each relevant bit
    rows = np.arange(n_dims + 1)  # (R,)
    flip = relevant[:, None, :] & (rank[:, None, :] == rows[None, :, None] - 1)  # (S, R, D)
    base = (2 * w[:, 0] - 1)[:, None, :]  # (S, 1, D)
    teach = np.where(flip, -1, base)  # (S, R, D)
    in_prefix = rows[None, :] <= relevant.sum(axis=1)[:, None]  # (S, R)
    n_rows = min(n_dims + 1, n_points)
    x[:, :n_rows] = np.where(in_prefix[:, :n_rows, None], teach[:, :n_rows], x[:, :n_rows])
    return x, w, w.sum(axis=(1, 2)) - 1.0, None


_SAMPLERS = {
    "cnf": lambda rng, shape, params: _normal_form(rng, shape, params, -1),
    "conjunction": _sample_conjunction,
    "disjunction": _sample_disjunction,
    "dnf": lambda rng, shape, params: _normal_form(rng, shape, params, +1),
    "int_halfspace": _sample_int_halfspace,
    "majority": _sample_majority,
    "nearest_neighbours": _sample_nearest_neighbours,
    "parity": _sample_parity,
    "sparse_disjunction": _sample_sparse_disjunction,
    "sparse_parity": _sample_sparse_parity,
    "sparse_thres": _sample_sparse_thres,
    "teach_conjunction": _sample_teach_conjunction,
}
