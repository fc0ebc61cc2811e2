"""``connect()``: a DuckDB connection over a store, the layer that SQL reads.

It holds one view per table of :mod:`attnstore.schema` (same names, committed rows only: a row
shows only once its run or analysis is in the primary table), then the *shared views*: SQL that
several named queries need (per-problem fits, literal hits, the latest analysis, ...), defined
once in ``queries/views/*.sql`` and created here in the order of :data:`SHARED_VIEWS`, as dbt
layers its models. Named queries (:mod:`attnstore.queries`) select from these views.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pyarrow as pa

from attnstore.schema import TABLES
from attnstore.store import PRIMARY, Store, open_store

# Shared views, each a file queries/views/<name>.sql holding one select; a view may read the
# ones before it.
SHARED_VIEWS: tuple[str, ...] = ("head_summary",)
_DUCKDB_TYPES = {pa.string(): "VARCHAR", pa.int16(): "SMALLINT"}


def sql_dir() -> Path:
    """The folder of the bundled SQL: inside the package (a wheel), else the source
    checkout's top-level ``queries/``."""
    packaged = Path(str(resources.files("attnstore") / "queries"))
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "queries"


def view_sql(name: str) -> str:
    """The select of a shared view, as written in its file."""
    return (sql_dir() / "views" / f"{name}.sql").read_text()


def connect(store: str | Path | Store, verify: bool = True):
    """A DuckDB connection with one view per table (same names), committed rows only, and the
    shared views of ``queries/views``.

    With ``verify``, every file's footer is read first, so a corrupted file is named in a
    StoreError rather than surfacing in the middle of a query.
    """
    import duckdb

    s = open_store(store)
    if verify:
        s.verify()
    con = duckdb.connect()
    for name, t in TABLES.items():
        key = t.partition[0][0]
        primary = PRIMARY[t.level]
        if s.files(name):
            glob = _sql_str(str(s.path / name) + "/**/*.parquet")
            types = ", ".join(f"'{k}': {_DUCKDB_TYPES[ty]}" for k, ty in t.partition)
            source = f"read_parquet({glob}, hive_partitioning = true, hive_types = {{{types}}})"
        else:
            empty = pa.schema([pa.field(k, ty) for k, ty in t.partition] + list(t.schema))
            con.register(f"__empty_{name}", empty.empty_table())
            source = f"__empty_{name}"
        cols = ", ".join(f'"{c}"' for c in t.columns)
        if name == primary:
            con.execute(f"create view {name} as select {cols} from {source}")
        else:
            con.execute(
                f"create view {name} as select {cols} from {source} "
                f"where {key} in (select {key} from {primary})"
            )
    for name in SHARED_VIEWS:
        con.execute(f"create view {name} as {view_sql(name)}")
    return con


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
