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
    """--save-every keeps step 0 (the untrained weights), N, 2N, ... and the last, each a
    checkpoint with its step and running loss (none at step 0); the final model is the same
    bytes as without it (the tiny fixture)."""
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
    assert [s for s, _ in steps] == [0, 12, 24, 30]
    assert (steps[-1][1] / "model.safetensors").read_bytes() == final
    cards = [json.loads((p / "card.json").read_text()) for _, p in steps]
    assert [c["step"] for c in cards] == [0, 12, 24, 30]
    assert cards[0]["running_loss"] is None
    assert (
        all(c["running_loss"] > 0 for c in cards[1:])
        and cards[1]["running_loss"] != cards[3]["running_loss"]
    )
    assert [train_step(load_checkpoint(p)) for _, p in steps] == [0, 12, 24, 30]
    # step 0 is the initialisation of the training seed: a fresh model of that seed
    torch.manual_seed(TrainConfig(**TINY).seed)
    from attnstore.model import InContextModel, ModelConfig

    fresh = InContextModel(ModelConfig(TINY["n_dims"], 2 * TINY["n_points"], TINY["n_layers"],
                                       TINY["n_heads"], TINY["d_model"])).state_dict()  # fmt: skip
    untrained = load_checkpoint(steps[0][1]).model.state_dict()
    assert all(torch.equal(fresh[k], untrained[k]) for k in fresh)
    assert train_step(load_checkpoint(out)) == 30 and training_steps(tiny_checkpoint) == []


@pytest.mark.parametrize("every", ["0", "31", "x"])
def test_save_every_out_of_range_is_one_line(tmp_path, every):
    from click.testing import CliRunner

    from attnstore.cli import cli

    args = ["train", "--out", str(tmp_path / "t"), "--steps", "30", "--save-every", every]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "save" in result.output.lower(), result.output
    assert len(result.output.strip().splitlines()) <= 3 and not (tmp_path / "t").exists()


# --- a grid of training seeds -------------------------------------------------------------


def _grid_args(out, *extra: str) -> list[str]:
    shape = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    return ["train", *shape, "--steps", "4", "--eval-samples", "10", "--save-every", "2",
            "--out", str(out), *extra]  # fmt: skip


def _files(folder) -> dict[str, tuple[int, int]]:
    """Every file below ``folder`` with its inode and mtime: a rewritten file changes."""
    return {
        str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """train --seeds 1,2: two models of the tiny shape, steps 0, 2 and 4 each."""
    from click.testing import CliRunner

    from attnstore.cli import cli

    out = tmp_path_factory.mktemp("grid") / "grid"
    result = CliRunner().invoke(cli, _grid_args(out, "--seeds", "1,2"))
    assert result.exit_code == 0, result.output
    return out, result


def test_train_seeds_trains_each_seed_into_its_folder(grid):
    from attnstore.checkpoint import train_seed, training_steps

    out, result = grid
    assert result.stdout.count('"seed"') == 2 and "skipped" not in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["seed-1", "seed-2"]
    weights = set()
    for seed in (1, 2):
        folder = out / f"seed-{seed}"
        assert [s for s, _ in training_steps(folder)] == [0, 2, 4]
        assert train_seed(load_checkpoint(folder)) == seed
        assert train_seed(load_checkpoint(folder / "steps" / "step-00000000")) == seed
        weights.add((folder / "model.safetensors").read_bytes())
    assert len(weights) == 2  # another training seed, another model
    # the same config as one training with --seed: the same bytes
    single = out.parent / "single"
    train(TrainConfig(**TINY, steps=4, eval_samples=10, save_every=2, seed=2), single,
          progress=False)  # fmt: skip
    assert (single / "model.safetensors").read_bytes() == (
        out / "seed-2" / "model.safetensors"
    ).read_bytes()


def test_train_seeds_resumes_a_grid_killed_midway(grid, tmp_path):
    """A rerun skips the finished seeds (nothing rewritten) and trains again the one whose
    final card is missing (killed before it was written): the same bytes as before."""
    import shutil

    from click.testing import CliRunner

    from attnstore.cli import cli

    out = tmp_path / "grid"
    shutil.copytree(grid[0], out)
    before = (out / "seed-2" / "model.safetensors").read_bytes()
    (out / "seed-2" / "card.json").unlink()  # killed after its weights, before its card
    (out / "seed-2" / "model.safetensors").write_bytes(b"half-written")
    kept = _files(out / "seed-1")
    result = CliRunner().invoke(cli, _grid_args(out, "--seeds", "1,2"))
    assert result.exit_code == 0, result.output
    assert '"skipped": "finished before"' in result.stdout.split('"seed": 2')[0]
    assert _files(out / "seed-1") == kept
    assert (out / "seed-2" / "model.safetensors").read_bytes() == before
    assert json.loads((out / "seed-2" / "card.json").read_text())["train"]["seed"] == 2


@pytest.mark.parametrize(
    "seeds,named",
    [
        ("1,-1", "seed=-1"),
        (f"1,{2**63}", f"seed={2**63}"),
        ("1,x", "'1,x'"),
        ("3,3", "seed 3 is given twice"),
    ],
)
def test_bad_training_seeds_are_one_line_and_write_nothing(tmp_path, seeds, named):
    from click.testing import CliRunner

    from attnstore.cli import cli

    out = tmp_path / "grid"
    result = CliRunner().invoke(cli, _grid_args(out, "--seeds", seeds))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and named in lines[0], lines
    assert "Traceback" not in result.output and not out.exists()


def test_rerun_of_a_grid_with_another_config_is_refused_naming_it(grid):
    """A finished seed folder of another config is named, and nothing trains or changes."""
    from click.testing import CliRunner

    from attnstore.cli import cli

    out, _ = grid
    before = _files(out)
    args = _grid_args(out, "--seeds", "3,1")
    args[args.index("--steps") + 1] = "6"
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "seed-1" in lines[0] and "steps=4" in lines[0], lines
    assert _files(out) == before and not (out / "seed-3").exists()


def test_seed_and_seeds_together_are_refused(tmp_path):
    from click.testing import CliRunner

    from attnstore.cli import cli

    result = CliRunner().invoke(cli, _grid_args(tmp_path / "g", "--seed", "1", "--seeds", "2"))
    assert result.exit_code == 2 and "--seeds" in result.stderr, result.output
    assert not (tmp_path / "g").exists()


# --- runs.train_seed --------------------------------------------------------------------------


def test_runs_record_the_training_seed_beside_the_prompt_seed(grid, tmp_path):
    """runs.train_seed is the checkpoint's training seed, runs.seed the prompt seed; a run of
    a checkpoint whose card has none (incontext-bool) has null."""
    from attnstore.connection import connect
    from attnstore.extraction import extract

    out, _ = grid
    store = tmp_path / "store"
    run = extract(store, checkpoint=str(out / "seed-2"), samples=3, seed=7).run_id
    row = (
        connect(store)
        .execute("select seed, train_seed, train_step from runs where run_id = $r", {"r": run})
        .fetchone()
    )
    assert row == (7, 2, 4)


def test_a_run_written_before_train_seed_reads_it_as_null(grid, tmp_path):
    """A store written before runs had train_seed (its run records lack the column) needs no
    migration: Store.read and SQL read null there, and the runs written since their seed."""
    import pyarrow.parquet as pq

    from attnstore.connection import connect
    from attnstore.extraction import extract
    from attnstore.schema import TABLES
    from attnstore.store import Store

    out, _ = grid
    store = tmp_path / "store"
    old = extract(store, checkpoint=str(out / "seed-1"), samples=3, seed=0).run_id
    record = next((store / "runs").glob(f"run_id={old}/*.parquet"))
    data = pq.read_table(record)
    pq.write_table(data.drop_columns(["train_seed"]), record)  # keeps the key-value metadata
    assert "train_seed" not in pq.read_schema(record).names
    assert Store(store).read("runs").column("train_seed").to_pylist() == [None]
    assert connect(store).execute("select train_seed from runs").fetchall() == [(None,)]
    new = extract(store, checkpoint=str(out / "seed-2"), samples=3, seed=0).run_id
    runs = Store(store).read("runs", columns=["run_id", "train_seed"]).to_pylist()
    got = {r["run_id"]: r["train_seed"] for r in runs}
    assert got == {old: None, new: 2}
    sql = dict(connect(store).execute("select run_id, train_seed from runs").fetchall())
    assert sql == got
    Store(store).verify(deep=True)
    assert TABLES["runs"].schema.names.index("train_seed") > 0


def test_sweep_takes_the_training_folders_of_several_seeds(grid, tmp_path):
    """sweep --checkpoints OUT/seed-1 --checkpoints OUT/seed-2: every saved step of each
    seed, the runs telling the training seed (train_seed) from the prompt seed (seed)."""
    from click.testing import CliRunner

    from attnstore.cli import cli
    from attnstore.connection import connect

    out, _ = grid
    store = tmp_path / "store"
    args = ["sweep", "--store", str(store), "--samples", "3", "--seed", "5", "--backend", "torch"]
    args += ["--checkpoints", str(out / "seed-1"), "--checkpoints", str(out / "seed-2")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = (
        connect(store)
        .execute("select train_seed, train_step, seed from runs order by train_seed, train_step")
        .fetchall()
    )
    assert rows == [(s, step, 5) for s in (1, 2) for step in (0, 2, 4)]


# --- attnstore untrained: the fresh initialisation of a training --------------------------------


def _untrained(checkpoint, out):
    from click.testing import CliRunner

    from attnstore.cli import cli

    args = ["untrained", "--checkpoint", str(checkpoint), "--out", str(out)]
    return CliRunner().invoke(cli, args)


@pytest.mark.parametrize("made_from", [".", "steps/step-00000002"])
def test_untrained_is_step_zero_of_the_training_bit_for_bit(grid, tmp_path, made_from):
    """The untrained model of a training's final (or any) checkpoint is its saved step 0: every
    tensor and the file's bytes; its card is a step-0 card with the checkpoint's "train" entry
    (the same JSON text), saying it is a fresh initialisation made for that checkpoint."""
    from attnstore.checkpoint import train_seed

    out, _ = grid
    made_for = out / "seed-2" / made_from
    result = _untrained(made_for, tmp_path / "fresh")
    assert result.exit_code == 0, result.output
    saved = out / "seed-2" / "steps" / "step-00000000"
    fresh, step0 = load_checkpoint(tmp_path / "fresh"), load_checkpoint(saved)
    a, b = fresh.model.state_dict(), step0.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert fresh.sha256 == step0.sha256
    card = json.loads((tmp_path / "fresh" / "card.json").read_text())
    final = json.loads((out / "seed-2" / "card.json").read_text())
    assert json.dumps(card["train"], sort_keys=True) == json.dumps(final["train"], sort_keys=True)
    assert card["init"] == "fresh" and card["step"] == 0 and card["running_loss"] is None
    assert card["init_for_sha256"] == load_checkpoint(made_for).sha256
    assert train_seed(fresh) == 2 and card["task_params"] == final["task_params"]
    assert json.loads(result.stdout)["written"] is True


def test_untrained_again_into_the_same_folder_changes_nothing(grid, tmp_path):
    out, _ = grid
    assert _untrained(out / "seed-1", tmp_path / "fresh").exit_code == 0
    before = _files(tmp_path / "fresh")
    result = _untrained(out / "seed-1", tmp_path / "fresh")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["written"] is False and _files(tmp_path / "fresh") == before


def test_untrained_of_the_bundled_model_is_its_seeds_initialisation(tmp_path):
    """The bundled model's card records its training seed (0): its untrained model is
    init_model of its shape and seed, in its lineage."""
    from attnstore.checkpoint import DEFAULT, default_checkpoint_dir
    from attnstore.training import init_model

    result = _untrained(DEFAULT, tmp_path / "fresh")
    assert result.exit_code == 0, result.output
    fresh = load_checkpoint(tmp_path / "fresh")
    bundled = json.loads((default_checkpoint_dir() / "card.json").read_text())
    assert fresh.card["train"] == bundled["train"] and bundled["train"]["seed"] == 0
    expected = init_model(load_checkpoint(DEFAULT).config, 0).state_dict()
    got = fresh.model.state_dict()
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def _no_seed(card):
    del card["train"]["seed"]
    return card


@pytest.mark.parametrize(
    "case,named",
    [
        ("no training seed in the card", "no training seed"),
        ("no card", "no training seed"),
        ("an incontext-bool .pt", "no training seed"),
        ("out inside a store", "inside the store"),
        ("out holds another model", "already holds another model"),
        ("out holds another training's untrained model", "already holds another model"),
    ],
)
def test_untrained_refusals_are_one_line_and_write_nothing(grid, tmp_path, case, named):
    import shutil

    out, _ = grid
    checkpoint, target = tmp_path / "checkpoint", tmp_path / "fresh"
    shutil.copytree(out / "seed-1", checkpoint, ignore=shutil.ignore_patterns("steps"))
    card = json.loads((checkpoint / "card.json").read_text())
    if case == "no training seed in the card":
        (checkpoint / "card.json").write_text(json.dumps(_no_seed(card)))
    elif case == "no card":
        (checkpoint / "card.json").unlink()
    elif case == "an incontext-bool .pt":
        checkpoint = checkpoint / "model_0.pt"
        torch.save({"_read_in.weight": torch.zeros(1)}, checkpoint)
    elif case == "out inside a store":
        from attnstore.extraction import extract

        extract(tmp_path / "store", checkpoint=str(checkpoint), samples=1, seed=0)
        target = tmp_path / "store" / "fresh"
    elif case == "out holds another model":
        target = checkpoint  # the trained model itself
    else:
        assert _untrained(out / "seed-2", target).exit_code == 0
    before = _files(tmp_path)
    result = _untrained(checkpoint, target)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and named in lines[0], lines
    assert str(target if "out" in case else checkpoint) in lines[0], lines
    assert "Traceback" not in result.output and _files(tmp_path) == before
