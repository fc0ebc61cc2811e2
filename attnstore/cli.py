"""The ``attnstore`` command: one verb per job, each a thin call into the library.

Only this module catches :class:`~attnstore.errors.AttnStoreError`: it prints one line and
exits 1. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from attnstore.errors import AttnStoreError, ConfigError

# Names only: the modules behind them load when a command runs.
BACKENDS = ("sklearn", "torch")
VIEWS = ("per_example", "raw", "shared_keys")
DEFAULT_BACKEND = "sklearn"
DEFAULT_VIEW = "raw"


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AttnStoreError as e:
            raise click.ClickException(str(e)) from None


def _parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``name=value`` pairs; values read as YAML scalars (``0.3`` → float, ``4`` → int)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"parameter '{pair}' is not of the form name=value")
        out[name] = yaml.safe_load(value)
    return out


def _show_progress() -> bool:
    return sys.stderr.isatty()


checkpoint_option = click.option(
    "--checkpoint",
    default="default",
    show_default=True,
    help="'default' (the bundled model), a folder written by 'attnstore train', a "
    ".safetensors file, or an incontext-bool state.pt / model_N.pt.",
)
model_config_option = click.option(
    "--model-config",
    type=click.Path(dir_okay=False),
    help="The config.yaml of an incontext-bool run (needed with its .pt checkpoints).",
)
task_param_option = click.option(
    "--task-param",
    "task_params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override a task parameter (repeatable), e.g. --task-param p_plant=0.5.",
)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="attnstore")
def cli() -> None:
    """Attention interpretability of small in-context learners, stored as data you can query.

    Train or load a model, extract every attention row into a Parquet store, and analyse it.
    """


@cli.command()
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
@click.option("--device", default="cpu", show_default=True, help="torch device.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
def train(task_params: tuple[str, ...], out: str, device: str, **kwargs: Any) -> None:
    """Train a model on a task; write model.safetensors and card.json to --out.

    Prints the card's evaluation summary (accuracy over the last 10 positions for the model
    and the baselines).
    """
    from attnstore.train import TrainConfig, command_line, dumps
    from attnstore.train import train as run_train

    cfg = TrainConfig(**kwargs, task_params=_parse_params(task_params))
    card = run_train(cfg, out, command=command_line(), progress=_show_progress(), device=device)
    click.echo(
        dumps(
            {
                "out": out,
                "steps_per_s": card["steps_per_s"],
                "accuracy_last_10": card["eval"]["accuracy_last_10"],
            }
        )
    )


@cli.command("eval")
@checkpoint_option
@model_config_option
@click.option("--task", default=None, help="Task to evaluate on [default: the checkpoint's].")
@task_param_option
@click.option("--samples", default=1000, show_default=True, help="Fresh prompts to evaluate.")
@click.option("--points", default=None, type=int, help="Points per prompt [default: all].")
@click.option("--seed", default=0, show_default=True, help="Seed of the prompts.")
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
    from attnstore.train import dumps, evaluate

    loaded = load_checkpoint(checkpoint, model_config, device=device)
    task = task or loaded.card.get("task", "conjunction")
    params = (
        {**loaded.card.get("task_params", {}), **_parse_params(task_params)}
        if task == loaded.card.get("task")
        else _parse_params(task_params)
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


@cli.command()
@click.option(
    "--store",
    required=True,
    type=click.Path(file_okay=False),
    help="Store folder (made if it does not exist).",
)
@checkpoint_option
@model_config_option
@click.option("--task", default=None, help="Task of the prompts [default: the checkpoint's].")
@task_param_option
@click.option("--samples", default=1000, show_default=True, help="Prompts to run.")
@click.option(
    "--points",
    default=None,
    type=int,
    help="Points per prompt [default: the checkpoint's training length].",
)
@click.option(
    "--n-dims",
    default=None,
    type=int,
    help="Expected input dimension; an error if the checkpoint's differs.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the prompts.")
@click.option("--batch-size", default=128, show_default=True, help="Prompts per forward pass.")
@click.option("--device", default="cpu", show_default=True, help="torch device (cpu, cuda).")
@click.option("--overwrite", is_flag=True, help="Replace the run if it is already stored.")
@click.option(
    "--no-analysis",
    is_flag=True,
    help="Only extract; skip the default analysis ('attnstore analyze' runs one later).",
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default=DEFAULT_BACKEND,
    show_default=True,
    help="Backend of the default analysis.",
)
@click.option(
    "--view",
    type=click.Choice(VIEWS),
    default=DEFAULT_VIEW,
    show_default=True,
    help="Row view of the default analysis.",
)
def extract(
    task_params: tuple[str, ...], no_analysis: bool, backend: str, view: str, **kwargs: Any
) -> None:
    """Run a model on task prompts; store every attention row, input, function and
    prediction, then analyse every head (unless --no-analysis).

    Progress goes to stderr; the last line on stdout is the run id.
    """
    from attnstore.analysis.analyze import analyze as run_analyze
    from attnstore.extract import extract as run_extract
    from attnstore.train import command_line

    result = run_extract(
        **kwargs,
        task_params=_parse_params(task_params),
        progress=_show_progress(),
        command=command_line(),
    )
    if result.existed:
        click.echo(
            f"run {result.run_id} is already in the store; nothing written "
            "(--overwrite replaces it)",
            err=True,
        )
    if not no_analysis:
        a = run_analyze(
            kwargs["store"],
            result.run_id,
            backend=backend,
            view=view,
            device=kwargs["device"],
            progress=_show_progress(),
            command=command_line(),
        )
        click.echo(f"analysis {a.analysis_id} (backend {backend}, view {view})", err=True)
    click.echo(result.run_id)


@cli.command()
@click.option("--store", required=True, type=click.Path(file_okay=False), help="Store folder.")
@click.option("--run", "run_id", default=None, help="Run id [default: the latest run].")
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default=DEFAULT_BACKEND,
    show_default=True,
    help="sklearn: the seed's calls, one problem at a time; torch: batched.",
)
@click.option(
    "--view",
    default=DEFAULT_VIEW,
    show_default=True,
    help=f"Row view: {', '.join(VIEWS)} (see docs/analysis.md).",
)
@click.option(
    "--m",
    default=None,
    type=int,
    help="First point kept by shared_keys / per_example [default: n_points // 2].",
)
@click.option("--k-min", default=2, show_default=True, help="Smallest k tried.")
@click.option("--k-max", default=9, show_default=True, help="Largest k tried.")
@click.option(
    "--dominance",
    default=0.5,
    show_default=True,
    help="A literal is dominant if its SVM score reaches this share of its cluster's top.",
)
@click.option("--top-paths", default=3, show_default=True, help="Pathways kept per cluster.")
@click.option("--device", default="cpu", show_default=True, help="torch device (torch backend).")
@click.option("--overwrite", is_flag=True, help="Replace the analysis if it is already stored.")
def analyze(store: str, run_id: str | None, **kwargs: Any) -> None:
    """Cluster every head's attention rows, fit SVMs, find dominant literals and pathways.

    Reads attention rows from the store only (no model). The last line on stdout is the
    analysis id.
    """
    from attnstore.analysis.analyze import analyze as run_analyze
    from attnstore.train import command_line

    result = run_analyze(store, run_id, **kwargs, progress=_show_progress(), command=command_line())
    if result.existed:
        click.echo(
            f"analysis {result.analysis_id} is already in the store; nothing written "
            "(--overwrite replaces it)",
            err=True,
        )
    click.echo(result.analysis_id)


def main() -> None:
    cli(prog_name="attnstore")


if __name__ == "__main__":
    main()
