"""``attnstore migrate``: a schema version 1 store (tests/fixtures/store_v1, written by the
attnstore of commit 4c60924: a 2 x 2 model, 4 samples, one analysis, one intervention) is
refused by every other command, and migrated in place with every id and value kept, also when
the migration is killed and run again."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from click.testing import CliRunner

from attnstore.cli import cli
from attnstore.connection import connect
from attnstore.errors import SchemaVersionError, StoreError
from attnstore.migration import CRASH_ENV, migrate
from attnstore.schema import PRIMARY, SCHEMA_VERSION, TABLES, full_rows
from attnstore.store import Store

FIXTURE = Path(__file__).parent / "fixtures" / "store_v1"
IDS = {
    "run": "8c27062161cc4c79",
    "analysis": "745363c61c3fcab2",
    "intervention": "b6f5ef13dc6d1cc9",
}


@pytest.fixture
def v1(tmp_path):
    path = tmp_path / "store"
    shutil.copytree(FIXTURE, path)
    return path


def snapshot(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def v1_table(name: str) -> pa.Table:
    """A table of the fixture as version 1 wrote it, read with pyarrow alone."""
    t = TABLES[name]
    return ds.dataset(
        FIXTURE / name,
        format="parquet",
        partitioning=ds.partitioning(pa.schema(list(t.partition)), flavor="hive"),
    ).to_table()


def sort(data: pa.Table, name: str) -> pa.Table:
    return data.sort_by([(c, "ascending") for c in TABLES[name].grain])


@pytest.mark.parametrize(
    "args",
    [
        ["query", "run", "head_summary", "--store", "{s}"],
        ["sql", "--store", "{s}", "select 1"],
        ["analyze", "--store", "{s}"],
        ["extract", "--store", "{s}", "--samples", "2", "--no-analysis"],
        ["intervene", "--store", "{s}"],
        ["report", "--store", "{s}", "--out", "{out}"],
        ["plot", "heads", "--store", "{s}", "--out", "{out}/h.png"],
    ],
)
def test_every_command_refuses_a_version_1_store_in_one_line(v1, tmp_path, args):
    before = snapshot(v1)
    argv = [a.format(s=v1, out=tmp_path / "out") for a in args]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"run 'attnstore migrate {v1}'" in lines[0], result.output
    assert snapshot(v1) == before and not (tmp_path / "out").exists()


def test_the_library_refuses_it_too(v1):
    for open_ in (Store, connect):
        with pytest.raises(SchemaVersionError, match="schema version 1; .*'attnstore migrate"):
            open_(v1)


def test_migrate_keeps_every_id_and_value(v1):
    result = CliRunner().invoke(cli, ["migrate", str(v1)])
    assert result.exit_code == 0, result.output
    assert "from schema version 1 to 2: 1 run, 1 analysis, 1 intervention" in result.output
    s = Store(v1)
    for level, key in IDS.items():
        assert s.keys(level) == [key]
    run = s.run()
    n_keys = 2 * run["n_points"]
    for level in IDS:  # each record names its files (the manifest), as a commit does
        assert all(r.files for r in s.records(level).values())
    for name in TABLES:
        if not (FIXTURE / name).is_dir():  # a table added after version 1
            assert s.read(name).num_rows == 0, name
            continue
        old, new = sort(v1_table(name), name), sort(s.read(name), name)
        assert new.num_rows == old.num_rows > 0, name
        for col in old.column_names:
            if col == "schema_version":
                assert set(new.column(col).to_pylist()) == {SCHEMA_VERSION}
            elif col == "weights":
                lengths = pa.compute.list_value_length(new.column(col)).to_numpy()
                assert (lengths == new.column("query_pos").to_numpy() + 1).all()
                full = full_rows(new.column(col), n_keys)
                want = np.stack(old.column(col).to_numpy(zero_copy_only=False))
                assert full.tobytes() == want.astype(np.float32).tobytes()  # bit for bit
            else:
                assert new.column(col).equals(old.column(col).cast(new.schema.field(col).type)), (
                    name,
                    col,
                )
    assert run["precision"] == "float32" and run["max_abs_error"] == 0.0
    assert not (v1 / ".staging").exists() and not list(v1.rglob("part-0.parquet"))
    # Every named query runs on the migrated store.
    con = connect(v1)
    assert con.execute("select count(*) from head_summary").fetchone()[0] > 0
    # Migrating again changes nothing.
    before = snapshot(v1)
    result = CliRunner().invoke(cli, ["migrate", str(v1)])
    assert result.exit_code == 0 and "nothing to do" in result.output
    assert snapshot(v1) == before


def _migrate_cmd(path):
    return [sys.executable, "-m", "attnstore", "migrate", str(path)]


@pytest.mark.parametrize("step", ["converted", "cleaned", "random"])
def test_a_killed_migration_is_finished_by_the_next(v1, tmp_path, step):
    reference = tmp_path / "reference"
    shutil.copytree(FIXTURE, reference)
    migrate(reference)
    if step == "random":
        proc = subprocess.Popen(_migrate_cmd(v1), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(np.random.default_rng(0).uniform(0.5, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    else:
        env = {**os.environ, CRASH_ENV: step}
        assert subprocess.run(_migrate_cmd(v1), env=env, capture_output=True).returncode == 137
        with pytest.raises(SchemaVersionError, match="attnstore migrate"):
            Store(v1)  # still version 1, refused, until the migration is finished
    assert subprocess.run(_migrate_cmd(v1), capture_output=True).returncode == 0
    a, b = Store(v1), Store(reference)
    for name in TABLES:
        assert sort(a.read(name), name).equals(sort(b.read(name), name)), name


def test_a_store_with_an_unfinished_version_1_commit_is_refused(v1):
    (v1 / ".staging" / "run-0123456789abcdef-0badf00d").mkdir(parents=True)
    (v1 / ".staging" / "run-0123456789abcdef-0badf00d" / "COMMIT").write_text("[]")
    before = snapshot(v1)
    with pytest.raises(StoreError, match="unfinished version 1 commit"):
        migrate(v1)
    assert snapshot(v1) == before


def test_what_cannot_be_migrated_is_one_line(tmp_path, s3_bucket):
    runner = CliRunner()
    for target, message in [
        (tmp_path / "nowhere", "is not an attnstore store"),
        (f"s3://{s3_bucket}/store", "is not an attnstore store"),
        ("gs://bucket/store", "URL scheme 'gs' is not supported"),
    ]:
        result = runner.invoke(cli, ["migrate", str(target)])
        assert result.exit_code == 2 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "nowhere").exists()
    future = tmp_path / "future"
    future.mkdir()
    (future / "attnstore.json").write_text('{"schema_version": 99}')
    result = runner.invoke(cli, ["migrate", str(future)])
    assert result.exit_code == 2 and "schema version 99" in result.output


@pytest.mark.parametrize("what", ["run folder", "file"])
def test_links_inside_a_version_1_store_are_refused(v1, tmp_path, what):
    """A `run_id=` folder (or a file) of a version 1 store that is a link to a place outside
    the store: migrate wrote two new files through it, outside the store. Now it is refused in
    one line, before anything is written, as format 2 refuses links."""
    folder = v1 / "attention" / f"run_id={IDS['run']}"
    outside = tmp_path / "outside"
    outside.mkdir()
    if what == "run folder":
        link = folder
        shutil.move(folder, outside / folder.name)
        link.symlink_to(outside / folder.name, target_is_directory=True)
    else:
        link = folder / "layer=0" / "part-0.parquet"
        shutil.move(link, outside / "part-0.parquet")
        link.symlink_to(outside / "part-0.parquet")
    before, there = snapshot(v1), snapshot(outside)
    result = CliRunner().invoke(cli, ["migrate", str(v1)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"'{link}' is a symbolic link" in lines[0], result.output
    assert snapshot(v1) == before and snapshot(outside) == there


# --- a format 2 store written before file manifests ----------------------------------------------

# Written by the attnstore of commit ddb9d01 (format 2, commit records without file manifests):
# the tiny 2 x 2 model, 4 samples, one analysis (raw view, sklearn), one intervention (zero).
FIXTURE_V2 = Path(__file__).parent / "fixtures" / "store_v2"


def test_a_store_written_before_manifests_is_read_and_given_them(tmp_path):
    """Its records name no files: every table is read by listing its ids' folders, as
    before; `attnstore migrate` gives each record its manifest (a version 2 store stays
    version 2), after which every table reads the same files and rows with no listing."""
    path = tmp_path / "store"
    shutil.copytree(FIXTURE_V2, path)
    s = Store(path)
    records = {level: s.records(level) for level in PRIMARY}
    assert sum(len(r) for r in records.values()) == 3
    assert all(r.files is None for level in records.values() for r in level.values())
    files = {name: s.files(name) for name in TABLES}
    rows = {name: sort(s.read(name), name) for name in TABLES}
    assert rows["attention"].num_rows > 0 and rows["fits"].num_rows > 0
    result = CliRunner().invoke(cli, ["migrate", str(path)])
    assert result.exit_code == 0, result.output
    assert "3 commit records given the manifest of their files" in result.output
    s = Store(path)
    for level, before in records.items():
        after = s.records(level)
        assert after.keys() == before.keys()
        for key, record in after.items():
            assert record.files and (record.token, record.rows) == (
                before[key].token,
                before[key].rows,
            )
    for name in TABLES:
        assert s.files(name) == files[name], name
        assert sort(s.read(name), name).equals(rows[name]), name
    s.verify(deep=True)
    assert connect(path).execute("select count(*) from attention").fetchone()[0] == len(
        rows["attention"]
    )
    before = snapshot(path)
    result = CliRunner().invoke(cli, ["migrate", str(path)])
    assert result.exit_code == 0 and "nothing to do" in result.output
    assert snapshot(path) == before
