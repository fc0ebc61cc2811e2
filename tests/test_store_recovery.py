"""Recovery after kills and races, and stores that try to reach outside themselves.

Transactions here are written by a small subprocess that imports only the store (no model), so
every kill point of a commit can be tried in a few seconds: with every file written but no
commit record, and right after the record, with and without ``--overwrite``: for every level
on a local folder, for a run on an S3 API (moto's server on 127.0.0.1; see ``CASES``).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from attnstore import transaction
from attnstore.errors import StoreError
from attnstore.schema import PRIMARY, TABLES
from attnstore.store import Store
from attnstore.transaction import CRASH_ENV, LOCKS

KEY = {
    "run": "0123456789abcdef",
    "analysis": "fedcba9876543210",
    "intervention": "a1b2c3d4e5f60718",
    "match": "0f1e2d3c4b5a6978",
}
# A writer of fake rows for every table of a level: n rows each, distinct grain values.
WRITER = """
import sys
import numpy as np, pyarrow as pa
from attnstore.schema import PRIMARY, TABLES
from attnstore.store import Store

def fake(table, n):
    cols = {}
    for f in table.schema:
        t = f.type
        if pa.types.is_integer(t):
            cols[f.name] = pa.array(np.arange(n), type=t)
        elif pa.types.is_floating(t):
            cols[f.name] = pa.array(np.zeros(n), type=t)
        elif pa.types.is_string(t):
            cols[f.name] = pa.array([f"v{i}" for i in range(n)], type=t)
        elif pa.types.is_boolean(t):
            cols[f.name] = pa.array([False] * n, type=t)
        elif pa.types.is_timestamp(t):
            cols[f.name] = pa.array([0] * n, type=pa.int64()).cast(t)
        elif f.name == "weights":  # the causal keys of each query: query_pos + 1 values
            cols[f.name] = pa.array([[0.0] * (q + 1) for q in range(n)], type=t)
        else:
            cols[f.name] = pa.array([[]] * n, type=t)
    return pa.table(cols)

path, level, key, n, overwrite = sys.argv[1:6]
n = int(n)
with Store(path, create=True).transaction(level, key, overwrite=overwrite == "1") as txn:
    for name, t in TABLES.items():
        if t.level == level:
            rows = 1 if name in PRIMARY.values() else n
            if "layer" in dict(t.partition):
                txn.write(name, fake(t, rows), layer=0)
            else:
                txn.write(name, fake(t, rows))
"""


def write(path, level, n, overwrite=False, crash_at=None):
    env = dict(os.environ)
    env.pop(CRASH_ENV, None)
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    args = [str(path), level, KEY[level], str(n), "1" if overwrite else "0"]
    return subprocess.run(
        [sys.executable, "-c", WRITER, *args], env=env, capture_output=True, text=True
    )


def counts(path, level):
    s = Store(path)
    return {n: s.read(n).num_rows for n, t in TABLES.items() if t.level == level}


def files_on_disk(path, level):
    """Rows in every Parquet file of the level's tables, committed or not (orphans count)."""
    s = Store(path)
    arrow = s.fs.arrow()
    out = {}
    for n, t in TABLES.items():
        if t.level == level:
            total = 0
            for f in s.fs.find(s.root / n, "**/*.parquet"):
                with arrow.open_input_file(str(f)) as fh:
                    total += pq.read_metadata(fh).num_rows
            out[n] = total
    return out


def expected(level, n):
    return {
        name: 1 if name in PRIMARY.values() else n for name, t in TABLES.items() if t.level == level
    }


NOTHING = dict.fromkeys(expected("run", 0), 0)


@pytest.fixture(params=["local", "s3"])
def where(request, tmp_path):
    """A store location: a local folder, or a prefix of a new bucket on the S3 test server."""
    if request.param == "local":
        return tmp_path / "store"
    return f"s3://{request.getfixturevalue('s3_bucket')}/store"


# Every level on a local folder; on S3 the run level only: what an object store does otherwise
# (a create-only commit, a replacing one with --overwrite, recovery by age rather than by lock)
# is the same code for every level, and levels differ only in their tables, as they do locally.
CASES = [
    (where, level, overwrite, step)
    for where in ("local", "s3")
    for level in ("run", "analysis", "intervention", "match")
    for overwrite in (False, True)
    for step in ("written", "committed")
    if where == "local" or level == "run"
]


@pytest.mark.parametrize(("where", "level", "overwrite", "step"), CASES, indirect=["where"])
def test_kill_at_each_step(where, monkeypatch, level, overwrite, step):
    """A writer killed with every file written but no commit record leaves the old version
    (or nothing); one killed right after its record leaves the new version; either way no
    reader sees anything else, readers delete nothing, and recovery (Store.recover) removes the
    dead writer's files (on an object store once they are older than STALE_AFTER: moved to 0
    here)."""
    if overwrite:
        assert write(where, level, 3).returncode == 0
    proc = write(where, level, 5, overwrite=overwrite, crash_at=step)
    assert proc.returncode == 137, proc.stderr
    now = 5 if step == "committed" else (3 if overwrite else None)
    want = expected(level, now) if now else dict.fromkeys(expected(level, 0), 0)
    assert counts(where, level) == want
    monkeypatch.setattr(transaction, "STALE_AFTER", transaction.timedelta(0))
    left = files_on_disk(where, level)
    Store(where, create=True)  # opening, even a writer's, deletes nothing
    assert files_on_disk(where, level) == left
    Store(where).recover()
    assert files_on_disk(where, level) == want
    assert counts(where, level) == want
    # A rerun completes the run, whatever was left.
    assert write(where, level, 5, overwrite=True).returncode == 0
    assert counts(where, level) == files_on_disk(where, level) == expected(level, 5)


def test_s3_orphans_younger_than_stale_after_are_kept(s3_bucket):
    """On an object store nothing proves a writer dead, so a recent orphan stays (hidden)."""
    where = f"s3://{s3_bucket}/store"
    assert write(where, "run", 4, crash_at="written").returncode == 137
    Store(where, create=True)
    assert counts(where, "run") == NOTHING
    assert files_on_disk(where, "run") == expected("run", 4) | {"runs": 0}


def test_reader_during_a_write_leaves_the_writer_alone(tmp_path, monkeypatch):
    """A reader, and a recovery, that run while a writer has written some files (the window is
    made deterministic: they run inside the writer's first mkdir) must not take them for
    abandoned: a reader deletes nothing, and recovery skips an id whose lock a writer holds.
    The writer commits every row."""
    store = Store(tmp_path, create=True)
    real_mkdir = store.fs.mkdir
    opened = []

    def mkdir_then_read(path):
        real_mkdir(path)
        if path.parent.name == "inputs" and not opened:
            (path / "part-0123456789abcdef.parquet").write_bytes(b"")
            opened.append(Store(tmp_path).ids("run"))  # a reader: deletes nothing
            Store(tmp_path).recover()  # skips the id this writer holds
            assert (path / "part-0123456789abcdef.parquet").exists()
            (path / "part-0123456789abcdef.parquet").unlink()

    monkeypatch.setattr(store.fs, "mkdir", mkdir_then_read)
    with store.transaction("run", KEY["run"]) as txn:
        _write_all(txn, "run", 4)
        monkeypatch.undo()
    assert opened == [[]]
    assert counts(tmp_path, "run") == expected("run", 4)


def _write_all(txn, level, n):
    ns = {}
    exec(WRITER.split("path, level")[0], ns)
    for name, t in TABLES.items():
        if t.level == level:
            rows = ns["fake"](t, 1 if name in PRIMARY.values() else n)
            txn.write(name, rows, **({"layer": 0} if "layer" in dict(t.partition) else {}))


def test_commit_refuses_short_tables(where):
    store = Store(where, create=True)
    with (
        pytest.raises(StoreError, match="attention holds 4 rows on disk, 9 expected"),
        store.transaction("run", KEY["run"]) as txn,
    ):
        txn.expect_rows(attention=9)
        _write_all(txn, "run", 4)
    assert store.ids("run") == [] and files_on_disk(where, "run") == NOTHING


def test_commit_refuses_when_written_files_vanished(where):
    """If anything removed the written files, the commit fails rather than recording an
    empty run."""
    store = Store(where, create=True)
    with (
        pytest.raises(StoreError, match="is gone"),
        store.transaction("run", KEY["run"]) as txn,
    ):
        _write_all(txn, "run", 4)
        for path, w in txn._writers.items():
            w.close()
            if "attention" in str(path):
                store.fs.remove(txn._staged[path])  # where it is until the commit
    assert store.ids("run") == []


def test_two_writers_of_one_id_on_s3_one_commits(s3_bucket):
    """Object stores have no locks: both writers write, the first commit record wins, the
    loser says so and removes its files; the run is whole, the winner's."""
    where = f"s3://{s3_bucket}/store"
    store = Store(where, create=True)
    a = store.transaction("run", KEY["run"])
    b = store.transaction("run", KEY["run"])
    txn_a, txn_b = a.__enter__(), b.__enter__()
    _write_all(txn_a, "run", 4)
    _write_all(txn_b, "run", 6)
    a.__exit__(None, None, None)
    with pytest.raises(StoreError, match="committed by another writer"):
        b.__exit__(None, None, None)
    assert counts(where, "run") == files_on_disk(where, "run") == expected("run", 4)


def test_two_writers_of_one_id_locally_the_second_is_refused(tmp_path):
    store = Store(tmp_path, create=True)
    with store.transaction("run", KEY["run"]) as txn:
        with pytest.raises(StoreError, match="being written by another process"):
            store.transaction("run", KEY["run"]).__enter__()
        _write_all(txn, "run", 4)
    assert counts(tmp_path, "run") == expected("run", 4)


# --- hostile stores ----------------------------------------------------------------------------


def _tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_locks_folder_that_is_a_link_is_refused(tmp_path):
    store, victim = tmp_path / "store", tmp_path / "victim"
    Store(store, create=True)
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    (store / LOCKS).rmdir() if (store / LOCKS).exists() else None
    (store / LOCKS).symlink_to(victim)
    before = _tree(victim)
    with (
        pytest.raises(StoreError, match=r"\.locks' is a symbolic link"),
        Store(store).transaction("run", KEY["run"]),
    ):
        pass
    assert _tree(victim) == before


def test_table_folder_that_is_a_link_is_refused(tmp_path):
    store, victim = tmp_path / "store", tmp_path / "victim"
    assert write(store, "run", 3).returncode == 0
    assert write(store, "run", 5, overwrite=True, crash_at="written").returncode == 137
    victim.mkdir()
    (victim / "run_id=0123456789abcdef").mkdir()
    (victim / "run_id=0123456789abcdef" / "part-0123456789abcdef.parquet").write_text("keep me")
    import shutil

    shutil.rmtree(store / "inputs")
    (store / "inputs").symlink_to(victim)
    for act in (Store(store).recover, lambda: Store(store).read("inputs")):
        with pytest.raises(StoreError, match="symbolic link"):
            act()
    kept = victim / "run_id=0123456789abcdef" / "part-0123456789abcdef.parquet"
    assert kept.read_text() == "keep me"


@pytest.mark.parametrize("content", ['"1"', "null", "[]", "1", '{"schema_version": "1"}'])
def test_store_file_that_is_not_an_object(tmp_path, content):
    assert write(tmp_path, "run", 3).returncode == 0
    (tmp_path / "attnstore.json").write_text(content)
    with pytest.raises(StoreError, match='expected an object with an integer "schema_version"'):
        Store(tmp_path)


def test_bad_ids_are_refused(tmp_path):
    store = Store(tmp_path, create=True)
    for key in ("../x", "a/b", "", "x" * 65):
        with pytest.raises(StoreError, match="ids are 1 to 64"), store.transaction("run", key):
            pass


def test_parquet_file_with_another_schema_is_named(tmp_path):
    assert write(tmp_path, "run", 3).returncode == 0
    token = Store(tmp_path).commits("run")[KEY["run"]]
    victim = tmp_path / "inputs" / f"run_id={KEY['run']}" / f"part-{token}.parquet"
    pq.write_table(pa.table({"a": [1]}), victim)
    with pytest.raises(StoreError, match=rf"part-{token}\.parquet' has the columns \['a'\]"):
        Store(tmp_path).verify()


@pytest.mark.parametrize(
    "place",
    [
        "inputs/junk/part-0123456789abcdef.parquet",
        "inputs/part-0123456789abcdef.parquet",
        "attention/run_id=x/part-0123456789abcdef.parquet",
        "inputs/run_id=x/part-0.parquet",
        "runs/run_id=x/part-0123456789abcdef.parquet",
    ],
)
def test_parquet_file_outside_the_layout_is_named(tmp_path, place):
    """A file out of place in a data table is never read (readers take the files a commit
    record names, and list no data folder): reads answer the committed rows, and `attnstore
    verify` names it. One among the commit records is named by every read."""
    assert write(tmp_path, "run", 3).returncode == 0
    table = place.split("/")[0]
    before = Store(tmp_path).read(table)
    (tmp_path / place).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"a": [1]}), tmp_path / place)
    if table == "runs":
        with pytest.raises(StoreError, match="is not where attnstore keeps"):
            Store(tmp_path).read(table)
    else:
        assert Store(tmp_path).read(table).equals(before)
    with pytest.raises(StoreError, match="is not where attnstore keeps"):
        Store(tmp_path).verify()


def test_full_disk_removes_the_files_and_says_so(tmp_path, monkeypatch):
    import errno

    store = Store(tmp_path, create=True)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StoreError, match="no space left in"):  # noqa: SIM117
        with store.transaction("run", KEY["run"]) as txn:
            _write_all(txn, "run", 4)
            monkeypatch.setattr(txn, "write", full)
            txn.write("inputs", None)
    assert files_on_disk(tmp_path, "run") == NOTHING and store.ids("run") == []


def test_read_only_store_refuses_writes_in_one_line(tmp_path, monkeypatch):
    """(Root ignores file modes, so the read-only store is simulated at the filesystem seam.)"""
    assert write(tmp_path, "run", 3).returncode == 0
    store = Store(tmp_path)

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(store.fs, "mkdir", denied)
    with pytest.raises(StoreError, match="is not writable"):
        store.transaction("analysis", KEY["analysis"]).__enter__()


def test_empty_store_path_is_refused():
    for path in ("", "  "):
        with pytest.raises(StoreError, match="store path is empty"):
            Store(path, create=True)
