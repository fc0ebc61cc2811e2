"""``attnstore train`` and ``attnstore eval``: make a model, measure it."""

from __future__ import annotations

from typing import Any

import click

from attnstore.cli.options import (
    checkpoint_option,
    dumps,
    model_config_option,
    parse_params,
    prompt_seed_option,
    show_progress,
    task_param_option,
)


@click.command()
@click.option("--task", default="conjunction", show_default=True, help="Task to learn.")
@task_param_option
@click.option("--n-dims", default=10, show_default=True, help="Input dimension.")
@click.option("--n-points", default=40, show_default=True, help="In-context examples per prompt.")
@click.option("--n-layers", default=3, show_default=True, help="Transformer blocks.")
@click.option("--n-heads", default=4, show_default=True, help="Attention heads per block.")
@click.option("--d-model", default=64, show_default=True, help="Residual stream width.")
@click.option("--steps", default=5000, show_default=True, help="Optimiser steps.")
@click.option("--lr", default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--batch-size", default=64, show_default=True, help="Prompts per step.")
@click.option(
    "--seed",
    default=0,
    show_default=True,
    help="The training seed: seeds the weights and every batch (runs.train_seed of the runs "
    "extracted from the model; not the prompt seed of extract/sweep --seed).",
)
@click.option(
    "--seeds",
    default=None,
    metavar="N,N,...",
    help="Train a grid of training seeds instead of one, e.g. 1,2,3: each into OUT/seed-<N>/, "
    "the same config otherwise. Resumable: a seed already finished there is skipped, one "
    "killed mid-way trained again.",
)
@click.option("--eval-samples", default=1000, show_default=True, help="Prompts for evaluation.")
@click.option(
    "--save-every",
    type=click.IntRange(min=1),
    default=None,
    help="Also keep the model at step 0 (the untrained weights), every N steps and at the "
    "last, in OUT/steps/step-<step>/ (a training folder to sweep over); --checkpoint OUT still "
    "means the final model.",
)
@click.option("--device", default="cpu", show_default=True, help="torch device.")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder (made if need be; never inside a store).",
)
def train(
    task_params: tuple[str, ...], out: str, device: str, seeds: str | None, **kwargs: Any
) -> None:
    """Train a model on a task; write model.safetensors and card.json to --out.

    Prints the card's evaluation summary (accuracy over the last 10 positions for the model
    and the baselines); with --seeds, one line per training seed (skipped: finished before).
    """
    from attnstore.outputs import check_output_folder
    from attnstore.provenance import command_line
    from attnstore.training import TrainConfig, train_seeds
    from attnstore.training import train as run_train

    ctx = click.get_current_context()
    if seeds is not None and ctx.get_parameter_source("seed") != click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--seed and --seeds exclusive: give one training seed or a grid")
    cfg = TrainConfig(**kwargs, task_params=parse_params(task_params))
    cfg.validate()  # a bad value is named before any folder is made
    check_output_folder(out)  # and a folder that cannot be written before training
    if seeds is None:
        card = run_train(cfg, out, command=command_line(), progress=show_progress(), device=device)
        click.echo(dumps({"out": out, "steps_per_s": card["steps_per_s"], **_tail(card)}))
        return
    grid = train_seeds(
        cfg, _seed_list(seeds), out, command_line(), progress=show_progress(), device=device
    )
    for seed, folder, card in grid:
        done = {"skipped": "finished before"} if card is None else _tail(card)
        click.echo(dumps({"seed": seed, "out": str(folder), **done}))


def _tail(card: dict[str, Any]) -> dict[str, Any]:
    """accuracy_last_10 of a card's evaluation (over fewer positions for shorter prompts)."""
    tail = next(k for k in card["eval"] if k.startswith("accuracy_last_"))
    return {tail: card["eval"][tail]}


def _seed_list(text: str) -> list[int]:
    """--seeds' value as training seeds: comma-separated integers."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a list of training seeds; accepted: integers separated by "
            "commas, e.g. 1,2,3",
            param_hint="--seeds",
        ) from None


@click.command("eval")
@checkpoint_option
@model_config_option
@click.option("--task", default=None, help="Task to evaluate on [default: the checkpoint's].")
@task_param_option
@click.option("--samples", default=1000, show_default=True, help="Fresh prompts to evaluate.")
@click.option("--points", default=None, type=int, help="Points per prompt [default: all].")
@prompt_seed_option
@click.option("--device", default="cpu", show_default=True, help="torch device.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
def eval_(
    checkpoint: str,
    model_config: str | None,
    task: str | None,
    task_params: tuple[str, ...],
    samples: int,
    points: int | None,
    seed: int,
    device: str,
    as_json: bool,
) -> None:
    """Accuracy per position of a model (and baselines) on fresh prompts."""
    from attnstore.checkpoint import load_checkpoint
    from attnstore.training import evaluate

    loaded = load_checkpoint(checkpoint, model_config, device=device)
    task = task or loaded.card.get("task", "conjunction")
    params = (
        {**loaded.card.get("task_params", {}), **parse_params(task_params)}
        if task == loaded.card.get("task")
        else parse_params(task_params)
    )
    report = evaluate(loaded, task, samples, seed, points, device=device, **params)
    report["checkpoint"] = {"spec": checkpoint, "sha256": loaded.sha256}
    if as_json:
        click.echo(dumps(report))
        return
    tail = next(k for k in report if k.startswith("accuracy_last_"))
    click.echo(f"{task}, {samples} prompts of {report['n_points']} points, seed {seed}")
    for name, acc in report[tail].items():
        click.echo(f"  {name:<12} {tail.replace('_', ' ')}: {acc:.4f}")
