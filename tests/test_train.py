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
    "field,value",
    [
        ("n_dims", 0),
        ("steps", 0),
        ("lr", -1.0),
        ("lr", float("inf")),  # trained an all-NaN model
        ("lr", float("nan")),
        ("seed", -1),  # a traceback from numpy's SeedSequence
        ("batch_size", 0),
        ("n_dims", 200_000),  # 102,400,000 input values a batch: each step takes seconds
        ("task", "conjuction"),
    ],
)
def test_bad_training_config(tmp_path, field, value):
    with pytest.raises(ConfigError, match=str(value)) as err:
        train(TrainConfig(**(dict(TINY) | {field: value})), tmp_path, progress=False)
    assert "eval_samples" not in str(err.value)  # batch_size=0 named alone
    assert list(tmp_path.iterdir()) == []


def test_train_writes_plain_progress_lines_where_stderr_is_no_terminal(tmp_path, monkeypatch):
    """A log gets lines of step, rate, time left and loss (no carriage returns), at most every
    ATTNSTORE_PROGRESS_SECONDS (here 0: one a step)."""
    import re

    from click.testing import CliRunner

    from attnstore.cli import cli

    monkeypatch.setenv("ATTNSTORE_PROGRESS_SECONDS", "0")
    shape = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    args = ["train", *shape, "--steps", "3", "--eval-samples", "10", "--out", str(tmp_path / "m")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "\r" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("train: ")]
    assert [ln.split(" (")[0] for ln in lines] == ["train: 1/3", "train: 2/3", "train: 3/3"]
    rate = r"[0-9.e+]+ step/s"
    assert re.fullmatch(rf"train: 3/3 \(100%\), {rate}, ETA 0s, loss=0\.\d{{4}}", lines[-1])


def test_eval_points_above_positions(tiny_checkpoint):
    with pytest.raises(ConfigError, match="n_points=99"):
        evaluate(load_checkpoint(str(tiny_checkpoint)), "conjunction", 5, 0, n_points=99)


def test_save_every_keeps_the_steps_and_the_same_final_model(tiny_checkpoint, tmp_path):
    """--save-every keeps steps N, 2N, ... and the last, each a checkpoint with its step and
    running loss; the final model is the same bytes as without it (the tiny fixture)."""
    from click.testing import CliRunner

    from attnstore.checkpoint import train_step, training_steps
    from attnstore.cli import cli

    out = tmp_path / "trained"
    args = ["train", "--out", str(out), "--save-every", "12", "--eval-samples", "50"]
    args += ["--lr", "0.003", "--steps", "30"]
    args += [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    final = (out / "model.safetensors").read_bytes()
    assert final == (tiny_checkpoint / "model.safetensors").read_bytes()
    steps = training_steps(out)
    assert [s for s, _ in steps] == [12, 24, 30]
    assert (steps[-1][1] / "model.safetensors").read_bytes() == final
    cards = [json.loads((p / "card.json").read_text()) for _, p in steps]
    assert [c["step"] for c in cards] == [12, 24, 30]
    assert (
        all(c["running_loss"] > 0 for c in cards)
        and cards[0]["running_loss"] != cards[2]["running_loss"]
    )
    assert [train_step(load_checkpoint(p)) for _, p in steps] == [12, 24, 30]
    assert train_step(load_checkpoint(out)) == 30 and training_steps(tiny_checkpoint) == []


@pytest.mark.parametrize("every", ["0", "31", "x"])
def test_save_every_out_of_range_is_one_line(tmp_path, every):
    from click.testing import CliRunner

    from attnstore.cli import cli

    args = ["train", "--out", str(tmp_path / "t"), "--steps", "30", "--save-every", every]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "save" in result.output.lower(), result.output
    assert len(result.output.strip().splitlines()) <= 3 and not (tmp_path / "t").exists()
