"""The ``attnstore`` command: one verb per job, each a thin call into the library.

Only this module catches :class:`~attnstore.errors.AttnStoreError`: it prints one line and
exits 1. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from attnstore.errors import AttnStoreError, ConfigError

# Names only: the modules behind them load when a command runs.
BACKENDS = ("sklearn", "torch")
VIEWS = ("per_example", "raw", "shared_keys")
DEFAULT_BACKEND = "torch"  # at parity with the sklearn reference (docs/measurements.md)
DEFAULT_VIEW = "shared_keys"  # removes the causal-position artefact (docs/analysis.md)


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


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)


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


prompt_task_option = click.option(
    "--task", default=None, help="Task of the prompts [default: the checkpoint's]."
)
points_option = click.option(
    "--points",
    default=None,
    type=int,
    help="Points per prompt [default: the checkpoint's training length].",
)
prompt_seed_option = click.option(
    "--seed", default=0, show_default=True, help="Seed of the prompts."
)
device_option = click.option(
    "--device", default="cpu", show_default=True, help="torch device (cpu, cuda)."
)
backend_option = click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default=DEFAULT_BACKEND,
    show_default=True,
    help="Analysis backend: torch (batched) or sklearn (the notebook's calls, one problem "
    "at a time; the reference).",
)
view_option = click.option(
    "--view",
    type=click.Choice(VIEWS),
    default=DEFAULT_VIEW,
    show_default=True,
    help="Row view of the analysis (docs/analysis.md).",
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
    from attnstore.provenance import command_line
    from attnstore.training import TrainConfig
    from attnstore.training import train as run_train

    cfg = TrainConfig(**kwargs, task_params=_parse_params(task_params))
    card = run_train(cfg, out, command=command_line(), progress=_show_progress(), device=device)
    click.echo(
        _dumps(
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
        {**loaded.card.get("task_params", {}), **_parse_params(task_params)}
        if task == loaded.card.get("task")
        else _parse_params(task_params)
    )
    report = evaluate(loaded, task, samples, seed, points, device=device, **params)
    report["checkpoint"] = {"spec": checkpoint, "sha256": loaded.sha256}
    if as_json:
        click.echo(_dumps(report))
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
@prompt_task_option
@task_param_option
@click.option("--samples", default=1000, show_default=True, help="Prompts to run.")
@points_option
@click.option(
    "--n-dims",
    default=None,
    type=int,
    help="Expected input dimension; an error if the checkpoint's differs.",
)
@prompt_seed_option
@click.option("--batch-size", default=128, show_default=True, help="Prompts per forward pass.")
@device_option
@click.option("--overwrite", is_flag=True, help="Replace the run if it is already stored.")
@click.option(
    "--no-analysis",
    is_flag=True,
    help="Only extract; skip the default analysis ('attnstore analyze' runs one later).",
)
@backend_option
@view_option
def extract(
    task_params: tuple[str, ...], no_analysis: bool, backend: str, view: str, **kwargs: Any
) -> None:
    """Run a model on task prompts; store every attention row, input, function and
    prediction, then analyse every head (unless --no-analysis).

    Progress goes to stderr; the last line on stdout is the run id.
    """
    from attnstore.pipeline import extract_and_analyze
    from attnstore.provenance import command_line

    result, a = extract_and_analyze(
        analysis=not no_analysis,
        backend=backend,
        view=view,
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
    if a is not None:
        click.echo(f"analysis {a.analysis_id} (backend {backend}, view {view})", err=True)
    click.echo(result.run_id)


@cli.command()
@click.option("--store", required=True, type=click.Path(file_okay=False), help="Store folder.")
@click.option("--run", "run_id", default=None, help="Run id [default: the latest run].")
@backend_option
@view_option
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
    from attnstore.analysis.run import analyze as run_analyze
    from attnstore.provenance import command_line

    result = run_analyze(store, run_id, **kwargs, progress=_show_progress(), command=command_line())
    if result.existed:
        click.echo(
            f"analysis {result.analysis_id} is already in the store; nothing written "
            "(--overwrite replaces it)",
            err=True,
        )
    click.echo(result.analysis_id)


# --- attnstore plot ----------------------------------------------------------------------------

# Names only (attnstore.plots loads matplotlib); a test checks they match attnstore.plots.
HEAD_METRICS = (
    "mean_silhouette",
    "median_silhouette",
    "modal_k",
    "modal_k_share",
    "mean_svm_accuracy",
    "mean_nmi_y",
    "mean_eta2_point",
    "literal_precision",
    "literal_recall",
    "chance_precision",
    "precision_lift",
)


def _figure_options(f):
    """--store, --run, --analysis and --out, shared by the plot subcommands."""
    f = click.option(
        "--out",
        required=True,
        type=click.Path(dir_okay=False),
        help="Figure file: .png, .svg or .pdf.",
    )(f)
    f = click.option(
        "--analysis",
        "analysis_id",
        default=None,
        help="Analysis id [default: the run's latest analysis].",
    )(f)
    f = click.option(
        "--run",
        "run_id",
        default=None,
        help="Run id [default: the latest run, or the run of --analysis].",
    )(f)
    return click.option(
        "--store", required=True, type=click.Path(file_okay=False), help="Store folder."
    )(f)


def _problem_options(f):
    """--layer, --head and --sample: one head of one prompt."""
    for name in ("sample", "head", "layer"):
        f = click.option(f"--{name}", required=True, type=int, help=f"The {name} (from 0).")(f)
    return f


@cli.group(invoke_without_command=True)
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False),
    help="Rebuild every figure this figures.toml lists (see attnstore.plots.read_manifest).",
)
@click.option(
    "--store",
    type=click.Path(file_okay=False),
    help="Store folder, with --manifest [default: the manifest's 'store'].",
)
@click.pass_context
def plot(ctx: click.Context, manifest: str | None, store: str | None) -> None:
    """Figures from stored rows only: no model, no recomputation.

    'attnstore plot --manifest figures.toml' rebuilds every figure the manifest lists; the
    subcommands draw one figure each. The same command writes the same bytes (.png, .svg,
    .pdf). Prints the files written.
    """
    if ctx.invoked_subcommand is not None:
        if manifest or store:
            raise click.UsageError(
                f"--manifest and --store before '{ctx.invoked_subcommand}' are for manifests; "
                f"give 'attnstore plot {ctx.invoked_subcommand} --store DIR ...'"
            )
        return
    if manifest is None:
        raise click.UsageError("give --manifest FILE or a subcommand (head, heads, silhouette)")
    from attnstore.plots import plot_manifest

    for path in plot_manifest(store, manifest, progress=_show_progress()):
        click.echo(path)


@plot.command("head")
@_figure_options
@_problem_options
def plot_head(
    store: str, run_id: str | None, analysis_id: str | None, out: str, **problem: int
) -> None:
    """The seed's head figure for one layer, head and sample: attention quadrants, cluster
    labels of the x and y query rows, the literals and the labels y."""
    from attnstore.plots import head_figure, head_figure_data, save_figure

    data = head_figure_data(store, run_id, analysis_id, **problem)
    click.echo(save_figure(head_figure(data), out))


@plot.command("silhouette")
@_figure_options
@_problem_options
def plot_silhouette(
    store: str, run_id: str | None, analysis_id: str | None, out: str, **problem: int
) -> None:
    """Silhouette score against k, x and y query rows, of one layer, head and sample."""
    from attnstore.plots import head_figure_data, save_figure, silhouette_figure

    data = head_figure_data(store, run_id, analysis_id, **problem)
    click.echo(save_figure(silhouette_figure(data), out))


@plot.command("heads")
@_figure_options
@click.option(
    "--metric",
    type=click.Choice(HEAD_METRICS),
    default="mean_silhouette",
    show_default=True,
    help="The head_summary column to map.",
)
@click.option(
    "--query-kind",
    type=click.Choice(("x", "y")),
    default="x",
    show_default=True,
    help="Which query rows.",
)
def plot_heads(
    store: str, run_id: str | None, analysis_id: str | None, out: str, metric: str, query_kind: str
) -> None:
    """A layer × head map of one head_summary metric, values written in."""
    from attnstore.plots import heads_figure, save_figure

    fig = heads_figure(store, run_id, analysis_id, metric, query_kind)
    click.echo(save_figure(fig, out))


@plot.command("query")
@click.argument("name")
@click.option("--store", required=True, type=click.Path(file_okay=False), help="Store folder.")
@click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A query parameter (repeatable); 'attnstore query show NAME' lists them.",
)
@click.option("--column", required=True, help="The numeric output column to map.")
@click.option(
    "--query-kind",
    type=click.Choice(("x", "y")),
    default=None,
    help="Keep the rows of one query kind (outputs with a query_kind column).",
)
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False), help="Figure file (.png/.svg/.pdf)."
)
def plot_query(
    name: str,
    store: str,
    params: tuple[str, ...],
    column: str,
    query_kind: str | None,
    out: str,
) -> None:
    """A layer × head map of one column of a named query's output, values written in.

    For queries whose output has one row per (layer, head[, query_kind]), e.g.
    'attnstore plot query heads_by_literals --store S -p view=shared_keys --column
    precision_lift --query-kind y --out lift.png'.
    """
    from attnstore.plots import query_figure, save_figure
    from attnstore.queries import run_query

    frame = run_query(store, name, _parse_query_params(params))
    kind = f", {query_kind} queries" if query_kind else ""
    fig = query_figure(frame, column, query_kind, title=f"{name}: {column}{kind}")
    click.echo(save_figure(fig, out))


# --- queries ---------------------------------------------------------------------------------

FORMATS = ("table", "csv", "json", "parquet")

query_dir_option = click.option(
    "--query-dir",
    "query_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="A folder of your own .sql queries (repeatable), searched after the bundled ones and "
    "$ATTNSTORE_QUERY_PATH; a query of yours shadows a bundled one of the same name.",
)


def _output_options(f):
    """--format and --out, shared by 'query run' and 'sql'."""
    f = click.option(
        "--out",
        type=click.Path(dir_okay=False),
        help="Write to this file instead of stdout (needed for parquet).",
    )(f)
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="Output format.",
    )(f)


def _parse_query_params(pairs: tuple[str, ...]) -> dict[str, str]:
    """``name=value`` pairs, values kept as text: the query's header declares their types."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip().lstrip("$")
        if not sep or not name:
            raise ConfigError(f"parameter '{pair}' is not of the form name=value")
        if name in out:
            raise ConfigError(f"parameter '{name}' is given twice")
        out[name] = value
    return out


def _write_frame(df, fmt: str, out: str | None) -> None:
    """Print (or write to ``out``) a query result as a table, CSV, JSON records or Parquet."""
    from pathlib import Path

    if fmt == "parquet":
        if out is None:
            raise ConfigError("--format parquet writes a file: give --out FILE")
        df.to_parquet(out, index=False)
        return
    if fmt == "csv":
        text = df.to_csv(index=False)
    elif fmt == "json":
        text = df.to_json(orient="records", date_format="iso", indent=2) + "\n"
    elif df.empty:
        text = "  ".join(df.columns) + "\n(no rows)\n"
    else:
        text = df.to_string(index=False, float_format=lambda v: f"{v:.4g}") + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        Path(out).write_text(text)


class _QueryGroup(_Group):
    """'attnstore query NAME ...' is 'attnstore query run NAME ...': a first word that is not
    a subcommand is taken as a query name."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "run", self.commands["run"], args
        return super().resolve_command(ctx, args)


@cli.group("query", cls=_QueryGroup)
def query_group() -> None:
    """Named DuckDB queries over a store: which heads cluster, follow literals, route labels.

    'attnstore query list' names them, 'attnstore query show NAME' prints one's parameters
    and SQL, and 'attnstore query NAME --store DIR [--param name=value ...]' runs it
    (the same as 'attnstore query run NAME ...'). A run parameter defaults to the latest run
    in the store.
    """


@query_group.command("list")
@query_dir_option
def query_list(query_dirs: tuple[str, ...]) -> None:
    """One line per query: its name, then what it finds."""
    from attnstore.queries import load_queries

    queries = load_queries(query_dirs)
    width = max(map(len, queries), default=0)
    for name, q in queries.items():
        click.echo(f"{name:<{width}}  {q.description}")


@query_group.command("show")
@click.argument("name")
@query_dir_option
def query_show(name: str, query_dirs: tuple[str, ...]) -> None:
    """A query's file, its parameters (--param name=value) and its SQL."""
    from attnstore.queries import get_query

    q = get_query(name, query_dirs)
    click.echo(f"{q.name}: {q.description}")
    click.echo(f"file: {q.path}")
    click.echo("parameters:" if q.params else "parameters: none")
    for p in q.params:
        click.echo(f"  {p.describe()}")
    click.echo()
    click.echo(q.sql.rstrip())


@query_group.command("run")
@click.argument("name")
@click.option("--store", required=True, type=click.Path(file_okay=False), help="Store folder.")
@click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A query parameter (repeatable); 'attnstore query show NAME' lists them.",
)
@_output_options
@query_dir_option
def query_run(
    name: str,
    store: str,
    params: tuple[str, ...],
    fmt: str,
    out: str | None,
    query_dirs: tuple[str, ...],
) -> None:
    """Run the query NAME on a store; 'attnstore query NAME ...' is the same."""
    from attnstore.queries import run_query

    _write_frame(run_query(store, name, _parse_query_params(params), query_dirs), fmt, out)


@cli.command("sql")
@click.argument("text", metavar="SQL")
@click.option("--store", required=True, type=click.Path(file_okay=False), help="Store folder.")
@_output_options
def sql_(text: str, store: str, fmt: str, out: str | None) -> None:
    """Ad hoc SQL over the store: one statement that reads (select, with, describe, ...).

    One view per table (runs, inputs, functions, predictions, attention, analyses, fits,
    silhouette, clusters, svm_coefs, dominant_literals, pathways) and head_summary; the
    views show committed runs and analyses only.
    """
    from attnstore.queries import sql

    _write_frame(sql(store, text), fmt, out)


@cli.command("run")
@click.option(
    "--store",
    default="attnstore-store",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Store folder (made if need be).",
)
@click.option(
    "--out",
    default="attnstore-figures",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the figures.",
)
@checkpoint_option
@model_config_option
@prompt_task_option
@task_param_option
@click.option("--samples", default=300, show_default=True, help="Prompts to extract.")
@points_option
@prompt_seed_option
@backend_option
@view_option
@click.option("--top", default=3, show_default=True, help="Heads to draw.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["png", "svg", "pdf"]),
    default="png",
    show_default=True,
    help="Figure format.",
)
@device_option
def run_(task_params: tuple[str, ...], **kwargs: Any) -> None:
    """The whole job: extract, analyse, rank heads by cluster quality, draw the top heads.

    With no options: 300 prompts of the bundled model into ./attnstore-store, figures into
    ./attnstore-figures. Prints the top heads and the figures written.
    """
    from attnstore.pipeline import run_pipeline
    from attnstore.provenance import command_line

    result = run_pipeline(
        **kwargs,
        task_params=_parse_params(task_params),
        progress=_show_progress(),
        command=command_line(),
    )
    click.echo(f"run {result.run_id}, analysis {result.analysis_id} in {result.store}")
    click.echo("top heads by cluster quality (query heads_by_cluster_quality):")
    click.echo(result.top.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    click.echo("figures:")
    for f in result.figures:
        click.echo(f"  {f}")


def main() -> None:
    cli(prog_name="attnstore")


if __name__ == "__main__":
    main()
