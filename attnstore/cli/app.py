"""The ``attnstore`` group: every verb, each a thin call into the library.

Only the command line catches :class:`~attnstore.errors.AttnStoreError` (:class:`ErrorGroup`):
it prints one line on stderr and exits 2, as click's usage errors do. Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import click

from attnstore.cli.attribute import attribute
from attnstore.cli.extract import analyze, extract, run_
from attnstore.cli.intervene import intervene
from attnstore.cli.match import match
from attnstore.cli.migrate import migrate, recover, verify
from attnstore.cli.options import ErrorGroup
from attnstore.cli.patch import patch
from attnstore.cli.plot import plot
from attnstore.cli.query import query_group, sql_
from attnstore.cli.report import report
from attnstore.cli.sweep import sweep
from attnstore.cli.train import eval_, train
from attnstore.cli.untrained import untrained


@click.group(cls=ErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="attnstore")
def cli() -> None:
    """Attention interpretability of small in-context learners, stored as data you can query.

    Train or load a model, extract every attention row into a Parquet store, and analyse it.
    """


for command in (
    train,
    untrained,
    eval_,
    extract,
    analyze,
    intervene,
    attribute,
    patch,
    match,
    plot,
    query_group,
    sql_,
    report,
    run_,
    migrate,
    verify,
    recover,
    sweep,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="attnstore")
