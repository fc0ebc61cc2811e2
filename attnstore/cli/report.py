"""``attnstore report``: a static HTML report of a store, from stored rows only."""

from __future__ import annotations

import click

from attnstore.cli.options import show_progress, store_option


@click.command()
@store_option
@click.option("--run", "run_id", default=None, help="Run id [default: the latest run].")
@click.option(
    "--analysis", "analysis_id", default=None, help="Analysis id [default: the run's latest]."
)
@click.option(
    "--out",
    required=True,
    type=click.Path(),
    help="Folder for the report (made if need be; never inside a store).",
)
@click.option("--open", "open_", is_flag=True, help="Open the report in a web browser.")
def report(store: str, run_id: str | None, analysis_id: str | None, out: str, open_: bool) -> None:
    """Write an interactive HTML report of a run: its card and accuracy, layer × head maps of
    every head metric, the rankings, and one page per head with its figures, clusters and an
    attention viewer.

    The report opens from file:// with no server and no network; the same store gives the
    same bytes. Prints the path of its index.html.
    """
    from attnstore.report import build_report

    result = build_report(store, out, run_id, analysis_id, progress=show_progress())
    click.echo(result.index)
    if open_:
        import webbrowser

        webbrowser.open(result.index.resolve().as_uri())
