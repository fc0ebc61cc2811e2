"""Corruptions: each clean prompt paired with a corrupted one that differs in a stated way.

Declared once in :data:`attnstore.vocab.CORRUPTIONS`; every one changes labels only, so a
clean and a corrupted prompt differ at y tokens and nowhere else:

- ``flip_label``: the label of the k-th positive example (from 0, in point order) set to -1.
  A prompt with at most k positive examples is left as it is.
- ``swap_function``: every label recomputed with the hidden function of the next prompt of
  the run (sample s takes sample s + 1's function, the last takes the first's): another
  function of the same task, with the prompt's own inputs. Needs a task whose labels come
  from a stored function (not nearest_neighbours) and at least 2 prompts.
- ``drop_literal``: every label recomputed with the k-th literal (from 0, in index order) of
  the hidden conjunction removed. Conjunctions only (conjunction, teach_conjunction); a
  conjunction with at most k literals is left as it is.

A prompt the corruption leaves as it is stays in the pairing (``changed`` all false); its
clean and corrupted runs are the same computation and add nothing to an effect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnstore.errors import ConfigError, known
from attnstore.tasks import evaluate
from attnstore.vocab import CORRUPTIONS

CONJUNCTION_TASKS = ("conjunction", "teach_conjunction")  # one AND term: a literal to drop


@dataclass(frozen=True)
class Corrupted:
    """Corrupted prompts: x of shape (n_samples, n_points, n_dims) and y of shape (n_samples,
    n_points), float32 ±1; ``changed`` of shape (n_samples, n_points) bool, where the point
    differs from the clean prompt's."""

    x: np.ndarray
    y: np.ndarray
    changed: np.ndarray


def check_corruption(name: str, task: str, k: int, n_samples: int) -> None:
    """ConfigError unless corruption ``name`` with ``k`` can be made for prompts of ``task``."""
    if name not in CORRUPTIONS:
        raise ConfigError(f"unknown corruption '{name}'; known: {known(CORRUPTIONS)}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ConfigError(f"corruption k={k!r}; accepted: an integer k >= 0")
    if name == "swap_function":
        if task == "nearest_neighbours":
            raise ConfigError(
                "task 'nearest_neighbours' cannot make corruption 'swap_function': its labels "
                "come from earlier labels, not a stored function; flip_label can be made"
            )
        if n_samples < 2:
            raise ConfigError(
                f"corruption 'swap_function' needs at least 2 prompts (it takes the next "
                f"prompt's function); the run has {n_samples}"
            )
    if name == "drop_literal" and task not in CONJUNCTION_TASKS:
        raise ConfigError(
            f"task '{task}' cannot make corruption 'drop_literal' (it drops a literal of a "
            f"conjunction); tasks that can: {known(CONJUNCTION_TASKS)}"
        )


def corrupt(
    name: str,
    task: str,
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
    thresholds: np.ndarray | None = None,
    k: int = 0,
) -> Corrupted:
    """The corrupted prompts of clean prompts x (n_samples, n_points, n_dims) and y (n_samples,
    n_points), ±1; ``weights`` (n_samples, n_terms, n_dims) and ``thresholds`` (n_samples,) are
    the hidden functions (:mod:`attnstore.tasks`), needed by swap_function and drop_literal."""
    check_corruption(name, task, k, len(y))
    y = np.asarray(y, dtype=np.float32)
    x = np.asarray(x, dtype=np.float32)
    if name == "flip_label":
        rank = np.cumsum(y > 0, axis=1) - 1  # (S, N): the rank of each positive example
        flip = (y > 0) & (rank == k)
        new_y = np.where(flip, -1.0, y).astype(np.float32)
    elif name == "swap_function":
        order = (np.arange(len(y)) + 1) % len(y)
        new_y = evaluate(task, weights[order], thresholds[order], x)
    else:  # drop_literal
        w = np.array(weights, copy=True)
        present = w[:, 0] != 0  # (S, D)
        rank = np.cumsum(present, axis=1) - 1
        w[:, 0][present & (rank == k)] = 0
        new_y = evaluate(task, w, thresholds, x)
    return Corrupted(x=x, y=new_y, changed=new_y != y)


def functions_of(rows: dict[str, np.ndarray], n_samples: int, n_dims: int):
    """Hidden functions from ``functions`` table columns (sample, term, literal, weight,
    threshold as arrays): weights of shape (n_samples, n_terms, n_dims) int8 and thresholds
    of shape (n_samples,) float32."""
    n_terms = int(rows["term"].max()) + 1 if len(rows["term"]) else 0
    weights = np.zeros((n_samples, n_terms, n_dims), dtype=np.int8)
    weights[rows["sample"], rows["term"], rows["literal"]] = rows["weight"]
    thresholds = np.full(n_samples, np.nan, dtype=np.float32)
    thresholds[rows["sample"]] = rows["threshold"]
    return weights, thresholds
