"""The SQL engine cannot touch files: "read-only" statements that write, reads outside the
store, and store paths that look like glob patterns or Hive partitions."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from attnstore.cli import cli
from attnstore.connection import connect
from attnstore.errors import QueryError
from attnstore.queries import query, sql
from tests.conftest import TINY, TINY_SAMPLES, store_bytes


@pytest.fixture
def store(tiny_store, tmp_path):
    src, run_id = tiny_store
    path = tmp_path / "store"
    shutil.copytree(src, path)
    return path, run_id


def attacks(path, run_id):
    part = path / "attention" / f"run_id={run_id}" / "layer=0" / "part-0.parquet"
    return [
        "EXPLAIN ANALYZE COPY (select 'deadbeefdeadbeef' as run_id, * exclude (run_id) from runs)"
        f" TO '{path}/runs' (FORMAT parquet, PARTITION_BY (run_id), OVERWRITE_OR_IGNORE)",
        f"explain analyze copy (select * from attention limit 1) to '{part}' (format parquet)",
        "select * from read_csv('/etc/passwd')",
        "select * from glob('/root/**')",
        f"select * from read_parquet('{part}')",
        "select * from read_text('/etc/hostname')",
    ]


@pytest.mark.parametrize("i", range(6))
def test_statements_that_touch_files_fail_in_one_line(store, i):
    path, run_id = store
    before = store_bytes(path)
    with pytest.raises(QueryError) as err:
        sql(path, attacks(path, run_id)[i])
    assert "\n" not in str(err.value)
    assert store_bytes(path) == before


def test_the_cli_refuses_them_with_one_line_and_leaves_the_store(store):
    path, run_id = store
    before = store_bytes(path)
    for text in attacks(path, run_id):
        out = CliRunner().invoke(cli, ["sql", "--store", str(path), text])
        assert out.exit_code != 0 and "Traceback" not in out.output, out.output
        assert len([line for line in out.output.splitlines() if line.strip()]) == 1, out.output
    assert store_bytes(path) == before
    assert len(sql(path, "select * from runs")) == 1


def test_the_engine_cannot_be_unlocked(store):
    path, _ = store
    con = connect(path)
    for text in (
        "set enable_external_access = true",
        "reset enable_external_access",
        "set lock_configuration = false",
        "attach '/tmp/other.db'",
        "install httpfs",
        "load httpfs",
    ):
        with pytest.raises(Exception, match="lock|disabled|Permission|Cannot"):
            con.execute(text)


def test_a_users_query_folder_cannot_write_but_can_read(store, tmp_path):
    path, run_id = store
    folder = tmp_path / "my_queries"
    folder.mkdir()
    (folder / "plant.sql").write_text(
        "-- plant: an attack in a query file\n"
        "explain analyze copy (select 'deadbeefdeadbeef' as run_id, * exclude (run_id) "
        f"from runs) to '{path}/runs' (format parquet, partition_by (run_id), "
        "overwrite_or_ignore)\n"
    )
    (folder / "mine.sql").write_text(
        "-- mine: heads by mean entropy\n"
        "select layer, head, avg(entropy) as entropy from attention group by all order by all\n"
    )
    before = store_bytes(path)
    with pytest.raises(QueryError):
        query(path, "plant", extra_dirs=[folder])
    assert store_bytes(path) == before
    df = query(path, "mine", extra_dirs=[folder])
    assert len(df) == TINY["n_layers"] * TINY["n_heads"]


def test_a_store_path_is_not_a_glob_pattern(tiny_store, tmp_path):
    """A store in 'x[ab]' must not read the sibling store 'xa' (which '[ab]' would match)."""
    src, _ = tiny_store
    shutil.copytree(src, tmp_path / "x[ab]")
    shutil.copytree(src, tmp_path / "xa")
    for layer in (tmp_path / "xa" / "attention").glob("run_id=*/layer=1"):
        shutil.rmtree(layer)  # the sibling differs: a glob reading it would count fewer rows
    for odd in ("x[ab]", "x?"):
        if odd != "x[ab]":
            shutil.copytree(src, tmp_path / odd)
        n = sql(tmp_path / odd, "select count(*) as n from attention").n[0]
        assert n == TINY["n_layers"] * TINY["n_heads"] * TINY_SAMPLES * 2 * TINY["n_points"]
        assert len(sql(tmp_path / odd, "select * from runs")) == 1


@pytest.mark.parametrize("parent", ["layer=7", "run_id=x", "analysis_id=y"])
def test_partition_keys_come_from_below_the_store(tiny_analysed_store, tmp_path, parent):
    src, run_id, _ = tiny_analysed_store
    path = tmp_path / parent / "store"
    shutil.copytree(src, path)
    layers = sql(path, "select distinct layer from attention order by layer").layer.tolist()
    assert layers == list(range(TINY["n_layers"]))
    assert sql(path, "select distinct run_id from attention").run_id.tolist() == [run_id]
    assert len(sql(path, "select distinct analysis_id from fits")) == 2


def test_a_reader_racing_an_overwrite_reads_again(store, monkeypatch):
    """A file listed by the connection and replaced by a commit before DuckDB reads it: the
    query runs again on a fresh listing instead of failing (simulated deterministically)."""
    import attnstore.queries as queries

    path, run_id = store
    from attnstore.store import Store

    # not a table's first file: connect() reads that one already (the view's columns)
    victim = Store(path).files("attention")[-1]
    real_connect, calls = queries.connect, []

    def racing_connect(s, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            con = real_connect(s, **kwargs)
            victim.rename(victim.with_suffix(".away"))  # the commit's discard ...
            return con
        victim.with_suffix(".away").rename(victim)  # ... and its new file in place
        return real_connect(s, **kwargs)

    monkeypatch.setattr(queries, "connect", racing_connect)
    n = sql(path, "select count(*) as n from attention").n[0]
    assert len(calls) == 2
    assert n == TINY["n_layers"] * TINY["n_heads"] * TINY_SAMPLES * 2 * TINY["n_points"]


def test_the_engine_reads_the_committed_files_only_and_never_writes_them(store):
    """Below the statement check: on the connection itself, a write to a committed file (by its
    real path or by the name SQL reads it under, with or without DuckDB's temporary file), an
    ATTACH of one, and a read of a file in the store that no commit names, all fail, and the
    store keeps every byte. DuckDB lets a statement write a path it may read
    (``allowed_paths``): the store's files are reached only through StoreFiles, read-only."""
    path, run_id = store
    data = next((path / "attention").glob("**/part-*.parquet"))
    rel = data.relative_to(path).as_posix()
    stray = data.with_name("part-0123456789abcdef.parquet")  # in the layout, committed by none
    shutil.copy(data, stray)
    before = store_bytes(path)
    con = connect(path)
    assert con.execute("select count(*) from attention").fetchone()[0] > 0
    for text in (
        f"copy (select 1 as a) to '{data}' (format parquet, use_tmp_file false)",
        f"copy (select 1 as a) to 'attnstore://{rel}' (format parquet, use_tmp_file false)",
        f"copy (select 1 as a) to 'attnstore://{rel}' (format parquet)",
        f"select * from read_parquet('{data}')",
        f"select * from read_parquet('attnstore://{stray.relative_to(path).as_posix()}')",
        "select * from read_parquet('attnstore://attention/**/*.parquet')",
        "select * from glob('attnstore://*')",
    ):
        with pytest.raises(Exception, match="Permission|read-only|disabled|not a committed"):
            con.execute(text).fetchall()
    # DuckDB 2.0.1 attaches a registered filesystem's name as an in-memory database (its
    # path stays empty): it may run, and must not reach the file.
    con.execute(f"attach 'attnstore://{rel}' as other")
    con.execute("create table other.t as select 1 as a")
    con.execute("checkpoint other")
    con.close()
    assert store_bytes(path) == before


def test_the_tables_keep_their_declared_types(store):
    """Each table's columns, partition keys included, have the types the schema declares."""
    import duckdb

    from attnstore.schema import TABLES

    path, _ = store
    con = connect(path)
    for name, t in TABLES.items():
        got = con.sql(f"select * from {name} limit 0").to_arrow_table().schema
        want = (
            duckdb.connect()
            .from_arrow(t.full_schema.empty_table())
            .select(*(duckdb.ColumnExpression(c) for c in t.columns))
            .to_arrow_table()
            .schema
        )
        assert got.names == want.names, name
        assert [str(x) for x in got.types] == [str(x) for x in want.types], name


def test_store_files_open_from_many_threads(store, monkeypatch):
    """DuckDB opens files from several threads: StoreFiles' cache of open files stays whole
    (it raised 'OrderedDict mutated during iteration' under load) and counts the bytes it holds."""
    import threading

    import attnstore.connection as connection
    from attnstore.store import Store

    path, _ = store
    s = Store(path)
    monkeypatch.setattr(connection, "_OPEN_FILES", 2)
    files = connection.StoreFiles(s, s.sizes())
    urls = files.urls()
    errors = []

    def opener():
        try:
            for _ in range(30):
                for url in urls:
                    assert files.open(url).read(4) == b"PAR1"
        except Exception as e:  # noqa: BLE001 - any error fails the test below
            errors.append(e)

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(files._open) <= 2
    assert files._held == sum(
        h.size() for h in files._open.values() if isinstance(h, connection._InMemory)
    )
