"""``attnstore extract``, ``attnstore analyze`` and ``attnstore run``: fill a store (and, for
``run``, rank its heads and draw the top ones)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click

from attnstore.cli.options import (
    STORE_HELP,
    backend_option,
    checkpoint_option,
    device_option,
    model_config_option,
    parse_params,
    points_option,
    prompt_seed_option,
    prompt_task_option,
    say_already_stored,
    show_progress,
    store_option,
    task_param_option,
    view_option,
)
from attnstore.vocab import PRECISIONS


@click.command()
@click.option(
    "--store",
    required=True,
    help=STORE_HELP + " Made if it does not exist (a folder never inside another store).",
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
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="float32",
    show_default=True,
    help="Stored attention weights: float32 exactly as the model gives them, or rounded to "
    "float16 (half the bytes; the run's max_abs_error says how far; another run id).",
)
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
    store: str,
    task_params: tuple[str, ...],
    overwrite: bool,
    no_analysis: bool,
    backend: str,
    view: str,
    **kwargs: Any,
) -> None:
    """Run a model on task prompts; store every attention row, input, function and
    prediction, then analyse every head (unless --no-analysis).

    Progress goes to stderr; the last line on stdout is the run id.
    """
    from attnstore.analysis.run import AnalysisConfig
    from attnstore.extraction import ExtractConfig
    from attnstore.outputs import check_new_store
    from attnstore.pipeline import extract_and_analyze
    from attnstore.provenance import command_line

    check_new_store(store)
    config = ExtractConfig(**kwargs, task_params=parse_params(task_params))
    analysis = (
        None if no_analysis else AnalysisConfig(backend=backend, view=view, device=config.device)
    )
    result, a = extract_and_analyze(
        store,
        config,
        analysis,
        overwrite=overwrite,
        progress=show_progress(),
        command=command_line(),
    )
    if result.existed:
        say_already_stored(f"run {result.run_id}")
    if a is not None:
        click.echo(f"analysis {a.analysis_id} (backend {backend}, view {view})", err=True)
    click.echo(result.run_id)


@click.command()
@store_option
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
def analyze(store: str, run_id: str | None, overwrite: bool, **kwargs: Any) -> None:
    """Cluster every head's attention rows, fit SVMs, find dominant literals and pathways.

    Reads attention rows from the store only (no model). The last line on stdout is the
    analysis id.
    """
    from attnstore.analysis.run import AnalysisConfig
    from attnstore.analysis.run import analyze as run_analyze
    from attnstore.provenance import command_line

    config = AnalysisConfig(**kwargs)
    progress, command = show_progress(), command_line()
    result = run_analyze(
        store, run_id, config, overwrite=overwrite, progress=progress, command=command
    )
    if result.existed:
        say_already_stored(f"analysis {result.analysis_id}")
    click.echo(result.analysis_id)


@click.command("run")
@click.option(
    "--store",
    default="attnstore-store",
    show_default=True,
    help=STORE_HELP + " Made if it does not exist (a folder never inside another store).",
)
@click.option(
    "--out",
    default="attnstore-figures",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the figures and the report (made if need be; never inside a store).",
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
def run_(
    task_params: tuple[str, ...],
    store: str,
    out: str,
    backend: str,
    view: str,
    top: int,
    fmt: str,
    **kwargs: Any,
) -> None:
    """The whole job: extract, analyse, rank heads by cluster quality, draw the top heads,
    write the HTML report.

    With no options: 300 prompts of the bundled model into ./attnstore-store, figures and the
    report (report/index.html) into ./attnstore-figures. Prints the report's path first, then
    the top heads, what each column means, the figures written and the commands that test
    whether a head is used.
    """
    from attnstore.analysis.run import AnalysisConfig
    from attnstore.extraction import ExtractConfig
    from attnstore.outputs import check_new_store, check_output_folder
    from attnstore.pipeline import RANKING, run_pipeline
    from attnstore.provenance import command_line

    params = parse_params(task_params)
    check_new_store(store)
    check_output_folder(out, store)  # before the work: a folder that cannot be is one line
    config = ExtractConfig(**kwargs, task_params=params)
    analysis = AnalysisConfig(backend=backend, view=view, device=config.device)
    result = run_pipeline(
        store,
        out,
        config,
        analysis,
        top=top,
        fmt=fmt,
        progress=show_progress(),
        command=command_line(),
    )
    kept = " (kept: the store holds what it held when it was written)"
    click.echo(f"report: {result.report}{kept if result.report_kept else ''}")
    click.echo(f"run {result.run_id}, analysis {result.analysis_id} in {result.store}")
    click.echo(f"top heads by cluster quality (query {RANKING}):")
    click.echo(result.top.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    click.echo("columns:")
    docs = _ranking_docs(RANKING)
    width = max(map(len, result.top.columns))
    for column in result.top.columns:
        click.echo(f"  {column:<{width}}  {docs.get(column, '')}".rstrip())
    click.echo("figures:")
    for f in result.figures:
        click.echo(f"  {f}")
    click.echo(
        "Clean clusters are not evidence that a head is used: changing the head and measuring "
        "the accuracy is. Next:"
    )
    q = shlex.quote(result.store)
    report_dir = shlex.quote(str(Path(result.report).parent)) if result.report else "REPORT"
    for line in (
        f"attnstore intervene --store {q}   # set each head's z to 0, store the change",
        f"attnstore query clean_but_inert --store {q}   # clean heads whose change costs nothing",
        f"attnstore report --store {q} --out {report_dir} --open   # with the effect maps",
    ):
        click.echo(f"  {line}")


def _ranking_docs(ranking: str) -> dict[str, str]:
    """What each column of ``run``'s ranking means: the ranking query's header (its
    ``Columns:``) and the tables' meaning of the key columns; ``sample`` is the pipeline's."""
    from attnstore.connection import output_column_docs
    from attnstore.queries import get_query

    docs = output_column_docs(get_query(ranking).sql)
    return docs | {
        "sample": "the sample drawn: the head's typical one, its silhouette nearest the head's "
        "median (query head_samples)"
    }
