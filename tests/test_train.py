"""Training, evaluation and the baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attnstore.checkpoint import load_checkpoint
from attnstore.errors import ConfigError
from attnstore.training import (
    TrainConfig,
    elimination_baseline,
    evaluate,
    majority_baseline,
    train,
)
from tests.conftest import TINY


def test_round_trip_train_save_load_eval(tiny_checkpoint):
    card = json.loads((tiny_checkpoint / "card.json").read_text())
    for key in (
        "model",
        "task",
        "task_params",
        "train",
        "seed",
        "steps",
        "wall_time_s",
        "eval",
        "versions",
        "command",
    ):
        assert key in card
    assert card["model"]["n_layers"] == TINY["n_layers"]
    per_pos = card["eval"]["accuracy_per_position"]
    assert set(per_pos) == {"model", "majority", "elimination"}
    assert len(per_pos["model"]) == TINY["n_points"]
    loaded = load_checkpoint(str(tiny_checkpoint))
    again = evaluate(loaded, "conjunction", 50, card["eval"]["seed"], **card["task_params"])
    assert again["accuracy_per_position"] == per_pos  # same prompts, same weights, same numbers


def test_training_is_deterministic(tmp_path):
    cfg = dict(TINY, steps=5, eval_samples=10)
    train(TrainConfig(**cfg), tmp_path / "a", progress=False)
    train(TrainConfig(**cfg), tmp_path / "b", progress=False)
    a = load_checkpoint(tmp_path / "a").model.state_dict()
    b = load_checkpoint(tmp_path / "b").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (
        tmp_path / "b" / "model.safetensors"
    ).read_bytes()


def test_elimination_algorithm_by_hand():
    # Target x0 AND not-x2 over 3 dims.
    x = np.array([[[1, 1, 1], [1, -1, -1], [1, 1, -1], [-1, 1, -1], [1, -1, -1]]], np.float32)
    y = np.array([[-1, 1, 1, -1, 1]], np.float32)
    pred = elimination_baseline(x, y)
    # Nothing is learnt before the first positive (all 2n literals kept: always -1); after
    # [1,-1,-1] the hypothesis is x0 & ~x1 & ~x2; after [1,1,-1] it is x0 & ~x2.
    np.testing.assert_array_equal(pred, [[-1, -1, -1, -1, 1]])


def test_majority_baseline_by_hand():
    y = np.array([[1, 1, -1, -1, -1, 1]], np.float32)
    np.testing.assert_array_equal(majority_baseline(y), [[-1, 1, 1, 1, -1, -1]])


def test_elimination_is_near_perfect_on_conjunctions():
    from attnstore.tasks import sample_task

    b = sample_task("conjunction", 300, 40, 10, seed=0)
    acc = (elimination_baseline(b.x, b.y) == b.y).mean(0)
    assert acc[-10:].mean() > 0.97


@pytest.mark.parametrize(
    "field,value", [("n_dims", 0), ("steps", 0), ("lr", -1.0), ("task", "conjuction")]
)
def test_bad_training_config(tmp_path, field, value):
    with pytest.raises(ConfigError, match=str(value)):
        train(TrainConfig(**(dict(TINY) | {field: value})), tmp_path, progress=False)


def test_eval_points_above_positions(tiny_checkpoint):
    with pytest.raises(ConfigError, match="n_points=99"):
        evaluate(load_checkpoint(str(tiny_checkpoint)), "conjunction", 5, 0, n_points=99)
