"""What SQL can read, and what each column means: declared once, shown everywhere.

Every table column carries its meaning (with its unit) in :mod:`attnstore.schema`; every
shared view's column its line of the view file's ``-- Columns:`` header. ``connect()`` turns
both into DuckDB comments, ``attnstore sql "describe NAME"`` shows them, ``attnstore sql
--help`` lists every table and view, and the raw file lists behind the tables have no name.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from attnstore import connect
from attnstore.cli import cli
from attnstore.connection import SHARED_VIEWS, catalog, header_column_docs
from attnstore.errors import QueryError
from attnstore.queries import sql
from attnstore.schema import TABLES


def test_every_table_column_has_a_meaning():
    for name, t in TABLES.items():
        assert set(t.column_docs) == set(t.columns), name
        empty = [c for c, doc in t.column_docs.items() if len(doc.strip()) < 5]
        assert not empty, (name, empty)


def test_every_column_of_every_table_and_view_carries_its_comment(tiny_store):
    con = connect(tiny_store[0])
    rows = con.execute(
        "select table_name, column_name, comment from duckdb_columns() where not internal"
    ).fetchall()
    names = {t for t, _, _ in rows}
    assert names == set(TABLES) | set(SHARED_VIEWS)
    missing = [(t, c) for t, c, comment in rows if not comment]
    assert not missing
    views = dict(
        con.execute("select view_name, comment from duckdb_views() where not internal").fetchall()
    )
    assert all(views[v] for v in SHARED_VIEWS), views
    assert "nats" in dict((c, m) for t, c, m in rows if t == "attention")["entropy"]


def test_the_raw_file_lists_have_no_name(tiny_store):
    """`show tables` lists the tables and shared views, nothing internal; no SQL reaches the
    files of an uncommitted or replaced version by name."""
    listed = set(sql(tiny_store[0], "show tables")["name"])
    assert listed == set(TABLES) | set(SHARED_VIEWS)
    for name in ("__attention_files", "__runs_files"):
        with pytest.raises(QueryError, match=name):
            sql(tiny_store[0], f"select count(*) from {name}")


def test_describe_says_what_a_column_is(tiny_store):
    res = CliRunner().invoke(
        cli, ["sql", "--store", str(tiny_store[0]), "--format", "csv", "describe attention"]
    )
    assert res.exit_code == 0, res.output
    header, *lines = res.output.splitlines()
    assert header.split(",")[:2] == ["column_name", "column_type"]
    assert header.split(",")[-1] == "comment"
    entropy = next(line for line in lines if line.startswith("entropy,"))
    assert "nats" in entropy
    view = sql(tiny_store[0], "DESCRIBE head_summary;")
    assert view.set_index("column_name")["comment"]["quality"].startswith("mean over samples")
    # any other statement is answered as DuckDB answers it
    assert "comment" not in sql(tiny_store[0], "select 1 as column_name").columns


def test_sql_help_lists_every_table_and_view():
    res = CliRunner().invoke(cli, ["sql", "--help"])
    assert res.exit_code == 0, res.output
    listed = {
        line.split()[0]
        for line in res.output.split("Tables and views:")[1].splitlines()
        if line.startswith("  ") and not line.startswith("    ")
    }
    assert listed == set(TABLES) | set(SHARED_VIEWS)
    assert [n for n, _, _ in catalog()] == [*TABLES, *SHARED_VIEWS]


def test_header_columns_are_read_as_written():
    header = """-- v: a view.
--
-- Columns:
--   analysis_id, layer, head,
--   n_rows               rows kept, a meaning that goes on
--                        on the next line
--   metric, source       the metric and where it comes from
--   worst_delta the most negative
-- The literal columns are null for some tasks.
select 1
"""
    assert header_column_docs(header) == {
        "n_rows": "rows kept, a meaning that goes on on the next line",
        "metric": "the metric and where it comes from",
        "source": "the metric and where it comes from",
        "worst_delta": "the most negative",
    }
