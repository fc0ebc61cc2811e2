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
@click.option("--seed", default=0, show_default=True, help="Seeds weights and every batch.")
@click.option("--eval-samples", default=1000, show_default=True, help="Prompts for evaluation.")
@click.option(
    "--save-every",
    type=click.IntRange(min=1),
    default=None,
    help="Also keep the model every N steps and at the last, in OUT/steps/step-<step>/ "
    "(a training folder to sweep over); --checkpoint OUT still means the final model.",
)
@click.option("--device", default="cpu", show_default=True, help="torch device.")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder (made if need be; never inside a store).",
)
def train(task_params: tuple[str, ...], out: str, device: str, **kwargs: Any) -> None:
    """Train a model on a task; write model.safetensors and card.json to --out.

    Prints the card's evaluation summary (accuracy over the last 10 positions for the model
    and the baselines).
    """
    from attnstore.outputs import check_output_folder
    from attnstore.provenance import command_line
    from attnstore.training import TrainConfig
    from attnstore.training import train as run_train

    cfg = TrainConfig(**kwargs, task_params=parse_params(task_params))
    cfg.validate()  # a bad value is named before any folder is made
    check_output_folder(out)  # and a folder that cannot be written before training
    card = run_train(cfg, out, command=command_line(), progress=show_progress(), device=device)
    # accuracy_last_10, or over fewer positions for prompts shorter than 10 points
    tail = next(k for k in card["eval"] if k.startswith("accuracy_last_"))
    click.echo(dumps({"out": out, "steps_per_s": card["steps_per_s"], tail: card["eval"][tail]}))


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
