"""``attnstore query`` (list, show, run a named query) and ``attnstore sql`` (ad hoc SQL)."""

from __future__ import annotations

from typing import Any

import click

from attnstore.cli.options import (
    ErrorGroup,
    parse_query_params,
    query_param_option,
    store_option,
)
from attnstore.errors import AttnStoreError, ConfigError
from attnstore.limits import SQL_MEMORY_LIMIT, SQL_TIMEOUT_S

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
        help="Write to this file instead of stdout (needed for parquet); its folder is made "
        "if need be, as for figures. Never inside a store.",
    )(f)
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="Output format.",
    )(f)


def _bounds_options(f):
    """--timeout and --memory-limit, shared by 'query run' and 'sql': SQL runs bounded."""
    f = click.option(
        "--memory-limit",
        default=SQL_MEMORY_LIMIT,
        show_default=True,
        metavar="SIZE",
        help="The most memory DuckDB may use, and the answer may hold (512MB, 4GB, 1.5GiB); "
        "beyond it the query stops with a one-line error.",
    )(f)
    return click.option(
        "--timeout",
        "timeout_s",
        type=float,
        default=SQL_TIMEOUT_S,
        show_default=True,
        metavar="SECONDS",
        help="Stop the query after this many seconds, with a one-line error.",
    )(f)


def _empty_note(store: str, name: str, values: dict[str, str], query_dirs, bounds) -> str | None:
    """Why a query with thresholds (its header's ``Thresholds:``) answered nothing: the query
    run again with every threshold at its loosest, then with each alone as given, so that the
    rows each one drops are counted by the query itself."""
    from attnstore.queries import get_query, run_query

    q = get_query(name, query_dirs)
    applied = q.bind(values)
    thresholds = [(p, loose) for p, loose in q.thresholds if applied[p.name] is not None]
    if not thresholds:
        return None
    relaxed = {**values, **{p.name: loose for p, loose in thresholds}}

    def rows(params: dict[str, Any]) -> int:
        return run_query(store, name, params, query_dirs, **bounds, as_frame=False).num_rows

    given = " and ".join(f"{p.name}={applied[p.name]:g}" for p, _ in thresholds)
    loosest = ", ".join(f"{p.name}={loose:g}" for p, loose in thresholds)
    total = rows(relaxed)
    if total == 0:
        return f"note: no rows even at the loosest thresholds ({loosest}), so none was dropped"
    drops = ", ".join(
        f"{p.name}={applied[p.name]:g} drops {total - rows({**relaxed, p.name: applied[p.name]})}"
        for p, _ in thresholds
    )
    return (
        f"note: no rows pass {given}; at the loosest thresholds ({loosest}) the query has "
        f"{total} rows, of which {drops}"
    )


def frame_text(df, fmt: str) -> str:
    """A query result (a DataFrame) as a table, CSV or JSON records, as pandas writes them."""
    from attnstore.cli.answers import FLOAT_FORMAT

    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return df.to_json(orient="records", date_format="iso", indent=2) + "\n"
    return df.to_string(index=False, float_format=FLOAT_FORMAT.format) + "\n"


def _write_answer(answer, fmt: str, out: str | None, store: str) -> None:
    """Print (or write to ``out``, outside any store) a query result (its Arrow table) as a
    table, CSV, JSON records or Parquet: a table or CSV of plain columns straight from Arrow
    (:mod:`attnstore.cli.answers`), anything else through pandas, as the library returns it."""
    from attnstore.cli import answers

    if fmt == "parquet" and out is None:
        raise ConfigError("--format parquet writes a file: give --out FILE")
    if fmt == "table" and answer.num_rows == 0:
        text = "  ".join(answer.column_names) + "\n(no rows)\n"
    elif fmt in ("table", "csv") and answers.plain(answer):
        text = answers.table_text(answer) if fmt == "table" else answers.csv_text(answer)
    else:
        from attnstore.queries import frame

        df = frame(answer)
        if fmt == "parquet":
            from attnstore.outputs import write_output

            write_output(out, lambda f: df.to_parquet(f, index=False), store)
            return
        text = frame_text(df, fmt)
    if out is None:
        click.echo(text, nl=False)
    else:
        from attnstore.outputs import write_output

        write_output(out, lambda f: f.write(text.encode()), store)


class _QueryGroup(ErrorGroup):
    """'attnstore query NAME ...' is 'attnstore query run NAME ...': a first word that is not
    a subcommand is taken as a query name."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "run", self.commands["run"], args
        return super().resolve_command(ctx, args)


@click.group("query", cls=_QueryGroup)
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
@store_option
@query_param_option
@_output_options
@_bounds_options
@query_dir_option
def query_run(
    name: str,
    store: str,
    params: tuple[str, ...],
    fmt: str,
    out: str | None,
    timeout_s: float,
    memory_limit: str,
    query_dirs: tuple[str, ...],
) -> None:
    """Run the query NAME on a store; 'attnstore query NAME ...' is the same.

    A query with thresholds (clean_but_inert's min_quality and max_effect) that answers
    nothing says on stderr how many rows each threshold dropped.
    """
    from attnstore.outputs import check_output
    from attnstore.queries import run_query

    if out is not None:
        check_output(out, store)  # before the query runs
    values = parse_query_params(params)
    bounds = {"timeout_s": timeout_s, "memory_limit": memory_limit}
    answer = run_query(store, name, values, query_dirs, **bounds, as_frame=False)
    _write_answer(answer, fmt, out, store)
    if answer.num_rows == 0:
        try:
            note = _empty_note(store, name, values, query_dirs, bounds)
        except AttnStoreError as e:  # the answer stands; only the note is missing
            note = f"note: the rows each threshold dropped could not be counted: {e}"
        if note is not None:
            click.echo(note, err=True)


class _SqlCommand(click.Command):
    """'attnstore sql --help' ends with what SQL can read, listed from the one declaration of
    the tables and the shared views (read only when help is asked for)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from attnstore.connection import catalog

        with formatter.section("Tables and views"):
            formatter.write_dl([(name, f"{kind}: {doc}") for name, kind, doc in catalog()])
        super().format_epilog(ctx, formatter)


@click.command("sql", cls=_SqlCommand)
@click.argument("text", metavar="SQL")
@store_option
@_output_options
@_bounds_options
def sql_(
    text: str, store: str, fmt: str, out: str | None, timeout_s: float, memory_limit: str
) -> None:
    """Ad hoc SQL over the store: one statement that reads (select, with, describe, ...).

    Every table and view below shows committed runs, analyses and interventions only.
    'describe NAME' gives each column's type and meaning (with its unit). A statement runs
    for at most --timeout seconds and within --memory-limit.
    """
    from attnstore.outputs import check_output
    from attnstore.queries import sql

    if out is not None:
        check_output(out, store)  # before the query runs
    answer = sql(store, text, timeout_s=timeout_s, memory_limit=memory_limit, as_frame=False)
    _write_answer(answer, fmt, out, store)
