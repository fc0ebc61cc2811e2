"""Commit records name their files (issue 20): what a manifest holds, that readers list no data
folder and read no data footer to find the committed files, and a manifest that names a file
that is missing, of other bytes, of another id, or outside the store ('..', an absolute path,
another bucket): one line naming the record or the file, the store unchanged, nothing outside
it read. (A writer killed between its files and its record: tests/test_store_recovery.py.)

Stores here are written by test_store_recovery's small writer of fake rows (no model)."""

from __future__ import annotations

import hashlib
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from attnstore.cli import cli
from attnstore.errors import StoreError
from attnstore.fs import LocalFS
from attnstore.schema import PRIMARY, TABLES
from attnstore.store import Store
from attnstore.transaction import FILES_KEY
from tests.test_store_hardening import fingerprint, one_line_error, rewrite_record
from tests.test_store_recovery import KEY, write

ROWS = 3
RUN = KEY["run"]
OTHER = "00112233445566aa"  # a second run, written with the same writer


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A store holding every level's id (fake rows): read-only, copy it to change it."""
    path = tmp_path_factory.mktemp("manifests") / "store"
    for level in ("run", "analysis", "intervention"):
        assert write(path, level, ROWS).returncode == 0
    return path


@pytest.fixture
def store(built, tmp_path):
    path = tmp_path / "store"
    shutil.copytree(built, path)
    return path


def _record(path, level="run", key=RUN):
    t = TABLES[PRIMARY[level]]
    return path / t.name / f"{t.partition[0][0]}={key}" / "commit.parquet"


def _manifest(path, level="run", key=RUN) -> list[dict]:
    return json.loads(pq.read_schema(_record(path, level, key)).metadata[FILES_KEY.encode()])


def test_a_record_names_its_files_with_their_bytes_and_rows(built):
    """Every data file of each id is named once, with its own bytes and rows; nothing else."""
    s = Store(built)
    for level in ("run", "analysis", "intervention"):
        (key,) = s.keys(level)
        entries = _manifest(built, level, key)
        tables = [n for n, t in TABLES.items() if t.level == level and n != PRIMARY[level]]
        on_disk = sorted(
            str(f.relative_to(built)) for n in tables for f in (built / n).rglob("part-*.parquet")
        )
        assert sorted(e["path"] for e in entries) == on_disk
        for e in entries:
            f = built / e["path"]
            assert e["bytes"] == f.stat().st_size and e["rows"] == pq.read_metadata(f).num_rows
        assert s.record(level, key).rows == {
            n: (1 if n == PRIMARY[level] else ROWS) for n in [*tables, PRIMARY[level]]
        }
    # every committed file's bytes, records included, known with no request per file
    assert s.sizes() == {f: f.stat().st_size for f in s.files()}
    assert len(s.sizes()) == len(list(built.rglob("*.parquet")))


def test_reading_lists_no_data_folder_and_reads_no_footer(built, monkeypatch):
    """Opening, listing every table's files, reading a run's table and connecting list only
    the primary tables' folders, and attnstore reads no data file's footer to find or check
    the committed files (the manifests say it all; what DuckDB and a query read is theirs)."""
    from attnstore.connection import connect

    listed, footers = [], []
    real_find, real_stamps = LocalFS.find, LocalFS.stamps

    def find(self, root, pattern):
        listed.append(root.relative_to(built).parts[0])
        return real_find(self, root, pattern)

    def stamps(self, root, pattern):
        listed.append(root.relative_to(built).parts[0])
        return real_stamps(self, root, pattern)

    real_metadata = pq.read_metadata

    def read_metadata(where, *args, **kwargs):
        footers.append(where)
        return real_metadata(where, *args, **kwargs)

    monkeypatch.setattr(LocalFS, "find", find)
    monkeypatch.setattr(LocalFS, "stamps", stamps)
    monkeypatch.setattr(pq, "read_metadata", read_metadata)
    s = Store(built)
    files = s.files()
    assert len(files) == len(list(built.rglob("*.parquet")))
    assert s.read("inputs", run_id=RUN).num_rows == ROWS
    connect(built).close()
    assert set(listed) <= set(PRIMARY.values()), listed
    assert not [f for f in footers if not isinstance(f, pa.BufferReader)], footers  # records: bytes


def test_reading_one_id_reads_its_record_alone(built, monkeypatch):
    """A read of one run reads that run's record only: what a writer and the analysis of one
    run pay does not grow with the store."""
    read = []
    real = LocalFS.read_many

    def read_many(self, paths):
        paths = list(paths)
        read.extend(paths)
        return real(self, paths)

    monkeypatch.setattr(LocalFS, "read_many", read_many)
    s = Store(built)
    assert s.has("run", RUN) and not s.has("run", OTHER)
    assert s.read("inputs", run_id=RUN).num_rows == ROWS
    assert s.read("runs", run_id=RUN).num_rows == 1
    assert {p.parent.name for p in read} == {f"run_id={RUN}", f"run_id={OTHER}"}


# --- a manifest that names the wrong thing -------------------------------------------------------


def _point(path, entry_path: str) -> None:
    """The run's first manifest entry rewritten to name ``entry_path``."""
    entries = _manifest(path)
    entries[0]["path"] = entry_path
    rewrite_record(_record(path), **{FILES_KEY: json.dumps(entries)})


OUTSIDE = {
    "'..'": "inputs/run_id={run}/../../../outside/part-{token}.parquet",
    "an absolute path": "{outside}/part-{token}.parquet",
    "another bucket": "s3://other-bucket/inputs/run_id={run}/part-{token}.parquet",
    "another id": "inputs/run_id={other}/part-{token}.parquet",
    "another version": "inputs/run_id={run}/part-0123456789abcdef.parquet",
    "another level's table": "fits/analysis_id={run}/part-{token}.parquet",
    "a temporary file": "inputs/run_id={run}/.part-{token}.parquet.{z}.tmp",
}


@pytest.mark.parametrize("how", list(OUTSIDE))
def test_a_manifest_naming_a_file_not_its_own_is_a_damaged_record(store, tmp_path, how):
    """Refused in one line naming the record, before anything is read; a Parquet file placed
    where the path points (outside the store) is never opened, the store is unchanged."""
    outside = tmp_path / "outside"
    outside.mkdir()
    token = Store(store).record("run", RUN).token
    bait = outside / f"part-{token}.parquet"
    shutil.copy(next((store / "inputs").rglob("part-*.parquet")), bait)
    bait_hash = hashlib.sha256(bait.read_bytes()).hexdigest()
    target = OUTSIDE[how].format(run=RUN, other=OTHER, token=token, outside=outside, z="0" * 32)
    _point(store, target)
    before = fingerprint(store)
    result = CliRunner().invoke(cli, ["sql", "--store", str(store), "select count(*) from inputs"])
    line = one_line_error(result, str(_record(store)), "is damaged", "file manifest names")
    assert "not" in line
    with pytest.raises(StoreError, match="is damaged"):
        Store(store).read("inputs")
    with pytest.raises(StoreError, match="is damaged"):
        Store(store).transaction("run", RUN, overwrite=True).__enter__()
    one_line_error(CliRunner().invoke(cli, ["recover", "--store", str(store)]), "is damaged")
    assert fingerprint(store) == before
    assert hashlib.sha256(bait.read_bytes()).hexdigest() == bait_hash


def test_a_manifest_whose_rows_do_not_add_up_is_a_damaged_record(store):
    entries = _manifest(store)
    entries[0]["rows"] += 1
    rewrite_record(_record(store), **{FILES_KEY: json.dumps(entries)})
    with pytest.raises(StoreError, match="is damaged: its file manifest gives table"):
        Store(store).files()


def test_a_committed_file_that_is_missing_is_named(store):
    """Deleted by hand: every read names the file and its record in one line (a run never
    reads as fewer rows), verify too; nothing is changed."""
    entry = _manifest(store)[0]
    (store / entry["path"]).unlink()
    before = fingerprint(store)
    table = entry["path"].split("/")[0]
    result = CliRunner().invoke(cli, ["sql", "--store", str(store), f"select * from {table}"])
    one_line_error(result, entry["path"], "which is missing", str(_record(store)))
    with pytest.raises(StoreError, match="which is missing"):
        Store(store).read(table)
    one_line_error(CliRunner().invoke(cli, ["verify", "--store", str(store)]), "which is missing")
    assert fingerprint(store) == before


@pytest.mark.parametrize("how", ["short", "longer"])
def test_a_committed_file_of_other_bytes_is_named(store, how):
    """Cut short (a torn copy) or grown: its bytes are not its record's. Reads name it, verify
    names it; nothing is changed."""
    entry = _manifest(store)[0]
    f = store / entry["path"]
    data = f.read_bytes()
    f.write_bytes(data[:-10] if how == "short" else data + b"\0" * 10)
    before = fingerprint(store)
    table = entry["path"].split("/")[0]
    result = CliRunner().invoke(cli, ["sql", "--store", str(store), f"select * from {table}"])
    one_line_error(result, str(f), f"holds {f.stat().st_size} bytes", f"says {entry['bytes']}")
    with pytest.raises(StoreError, match="bytes"):
        Store(store).read(table, run_id=RUN)
    one_line_error(CliRunner().invoke(cli, ["verify", "--store", str(store)]), str(f))
    assert fingerprint(store) == before


def test_a_killed_writers_files_are_in_no_manifest(store):
    """Killed with every file written and no record: its files are on disk, named by no
    manifest, so no reader reads them; the next writer of that id removes them."""
    files = Store(store).files()
    result = write(store, "run", ROWS + 2, overwrite=True, crash_at="written")
    assert result.returncode == 137, result.stderr
    assert Store(store).files() == files
    assert Store(store).read("inputs").num_rows == ROWS
    assert write(store, "run", ROWS + 1, overwrite=True).returncode == 0
    s = Store(store)
    assert s.read("inputs").num_rows == ROWS + 1
    named = {str(store / e["path"]) for e in _manifest(store)}
    run_files = {str(f) for f in store.rglob(f"run_id={RUN}/**/part-*.parquet")}
    assert run_files == named  # the killed writer's and the replaced version's files are gone
