"""The command line: help everywhere, one-line errors for user mistakes, JSON where promised."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from attnstore.cli import cli


def _run(*args):
    return CliRunner().invoke(cli, list(args))


def _commands(group, prefix=()):
    """Every command path under ``group``, asking each group as click does (``plot``'s
    subcommands are built from the figure registry when asked for)."""
    import click

    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


@pytest.mark.parametrize("command", [(), *_commands(cli)], ids=lambda c: " ".join(c) or "top")
def test_every_command_has_help(command):
    result = _run(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and len(result.output.splitlines()) > 3


def test_python_dash_m():
    out = subprocess.run(
        [sys.executable, "-m", "attnstore", "--help"], capture_output=True, text=True, check=True
    )
    assert "extract" in out.stdout and "train" in out.stdout


@pytest.mark.parametrize("command", [(), ("plot",), ("plot", "heads")], ids=" ".join)
def test_help_loads_nothing_heavy(command):
    """--help reads names only: no matplotlib (the figure registry draws lazily), no torch."""
    code = (
        "import sys\n"
        "from attnstore.cli import main\n"
        f"sys.argv = ['attnstore', *{list(command)!r}, '--help']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = {'matplotlib', 'torch', 'pandas', 'duckdb', 'sklearn'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Usage:" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_eval_json(tiny_checkpoint):
    result = _run("eval", "--checkpoint", str(tiny_checkpoint), "--samples", "20", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["task"] == "conjunction" and report["n_samples"] == 20
    assert set(report["accuracy_per_position"]) == {"model", "majority", "elimination"}


def _one_line_error(result, *needles):
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_unknown_task_lists_known(tmp_path):
    result = _run("train", "--task", "conjuction", "--out", str(tmp_path))
    _one_line_error(result, "'conjuction'", "conjunction", "disjunction", "parity")


def test_bad_n_dims_and_sparse_k(tmp_path):
    _one_line_error(_run("train", "--n-dims", "0", "--out", str(tmp_path)), "n_dims=0")
    _one_line_error(
        _run("train", "--task", "sparse_disjunction", "--n-dims", "3", "--out", str(tmp_path)),
        "k=4",
    )


def test_parity_too_large(tmp_path):
    _one_line_error(
        _run("train", "--task", "parity", "--n-dims", "64", "--out", str(tmp_path)), "n_dims=64"
    )


def test_missing_checkpoint(tmp_path):
    _one_line_error(_run("eval", "--checkpoint", str(tmp_path / "nope.pt")), "nope.pt")


def test_file_that_is_not_a_checkpoint(tmp_path):
    bad = tmp_path / "notes.safetensors"
    bad.write_text("hello")
    _one_line_error(_run("eval", "--checkpoint", str(bad)), "notes.safetensors")


def test_points_above_positions(tiny_checkpoint):
    _one_line_error(_run("eval", "--checkpoint", str(tiny_checkpoint), "--points", "500"), "500")


def test_family_other_than_san(tmp_path):
    state = {"_read_in.weight": torch.zeros(4, 2)}
    torch.save(state, tmp_path / "model_1.pt")
    (tmp_path / "config.yaml").write_text(
        "family: gpt2\nn_dims: 2\nn_positions: 3\nn_embd: 4\nn_layer: 1\nn_head: 1\n"
    )
    result = _run(
        "eval",
        "--checkpoint",
        str(tmp_path / "model_1.pt"),
        "--model-config",
        str(tmp_path / "config.yaml"),
    )
    _one_line_error(result, "'gpt2'", "san")


def test_extract_prints_run_id_last(tiny_checkpoint, tmp_path):
    result = _run(
        "extract", "--store", str(tmp_path), "--checkpoint", str(tiny_checkpoint), "--samples", "2"
    )
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip().splitlines()[-1]
    assert (tmp_path / "runs" / f"run_id={run_id}").is_dir()
    again = _run(
        "extract", "--store", str(tmp_path), "--checkpoint", str(tiny_checkpoint), "--samples", "2"
    )
    assert again.stdout.strip().splitlines()[-1] == run_id
    assert "already in the store" in again.stderr


def test_cli_names_match_the_library():
    """The CLI keeps names only (so --help loads no heavy module); they must not drift."""
    from attnstore.analysis.backends import BACKENDS
    from attnstore.analysis.views import VIEWS
    from attnstore.cli import options

    assert options.BACKENDS == BACKENDS and options.VIEWS == VIEWS


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where there is no GPU")
def test_unusable_device_is_named(tmp_path):
    _one_line_error(_run("eval", "--device", "cuda"), "'cuda'", "usable: cpu")
    _one_line_error(_run("extract", "--store", str(tmp_path / "s"), "--device", "tpu"), "'tpu'")
    assert not (tmp_path / "s").exists()


def test_task_params_are_plain_values():
    from attnstore.cli.options import parse_params

    values = parse_params(("a=1e-3", "b=4", "c=true", "d=abc", "e='1'", "f=0.5"))
    assert values == {"a": 0.001, "b": 4, "c": True, "d": "abc", "e": "1", "f": 0.5}
    assert type(values["b"]) is int and type(values["a"]) is float


def test_train_on_short_prompts_prints_its_accuracy(tmp_path):
    """Prompts shorter than 10 points: the card's accuracy_last_N, not a KeyError."""
    result = _run(
        "train", "--n-dims", "3", "--n-points", "6", "--n-layers", "1", "--n-heads", "1",
        "--d-model", "8", "--steps", "2", "--eval-samples", "8", "--out", str(tmp_path / "m"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)["accuracy_last_6"]) == {"model", "majority", "elimination"}


@pytest.mark.parametrize("command", [(), ("query",), ("plot", "--help")], ids=" ".join)
def test_a_group_without_arguments_still_prints_its_help(command):
    result = _run(*command)
    assert "Usage:" in result.output and "Commands:" in result.output, result.output
    assert "Error" not in result.output
