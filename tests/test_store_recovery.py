"""Recovery after kills and races, and stores that try to reach outside themselves.

Transactions here are written by a small subprocess that imports only the store (no model), so
every kill point of a commit can be tried in a few seconds: after each move, with and without
``--overwrite``, for a run and for an analysis.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pytest

from attnstore.errors import StoreError
from attnstore.schema import PRIMARY, TABLES
from attnstore.store import Store
from attnstore.transaction import CRASH_ENV, STAGING

KEY = {
    "run": "0123456789abcdef",
    "analysis": "fedcba9876543210",
    "intervention": "a1b2c3d4e5f60718",
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
            cols[f.name] = pa.array(np.arange(n) % 100, type=t)
        elif pa.types.is_floating(t):
            cols[f.name] = pa.array(np.zeros(n), type=t)
        elif pa.types.is_string(t):
            cols[f.name] = pa.array([f"v{i}" for i in range(n)], type=t)
        elif pa.types.is_boolean(t):
            cols[f.name] = pa.array([False] * n, type=t)
        elif pa.types.is_timestamp(t):
            cols[f.name] = pa.array([0] * n, type=pa.int64()).cast(t)
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


def write(path, level, n, overwrite=False, crash_after=None):
    env = dict(os.environ)
    env.pop(CRASH_ENV, None)
    if crash_after is not None:
        env[CRASH_ENV] = str(crash_after)
    args = [str(path), level, KEY[level], str(n), "1" if overwrite else "0"]
    return subprocess.run(
        [sys.executable, "-c", WRITER, *args], env=env, capture_output=True, text=True
    )


def counts(path, level):
    s = Store(path)
    return {n: s.read(n).num_rows for n, t in TABLES.items() if t.level == level}


def files_on_disk(path, level):
    """Rows in every Parquet file of the level's tables, committed or not (orphans count)."""
    import pyarrow.parquet as pq

    out = {}
    for n, t in TABLES.items():
        if t.level == level:
            files = (path / n).glob("**/*.parquet")
            out[n] = sum(pq.read_metadata(f).num_rows for f in files)
    return out


def expected(level, n):
    return {
        name: 1 if name in PRIMARY.values() else n for name, t in TABLES.items() if t.level == level
    }


def n_moves(level, overwrite):
    return sum(t.level == level for t in TABLES.values()) + int(overwrite)


CASES = [
    (level, overwrite, after)
    for level in ("run", "analysis", "intervention")
    for overwrite in (False, True)
    for after in range(n_moves(level, overwrite) + 1)
]


@pytest.mark.parametrize(("level", "overwrite", "after"), CASES)
def test_kill_after_each_move_rolls_forward(tmp_path, level, overwrite, after):
    """A commit killed after any of its moves (the last one included) is finished by the next
    opener, even a reader: the new version whole, nothing orphaned, staging empty."""
    if overwrite:
        assert write(tmp_path, level, 3).returncode == 0
    proc = write(tmp_path, level, 5, overwrite=overwrite, crash_after=after)
    assert proc.returncode == 137, proc.stderr
    assert counts(tmp_path, level) == expected(level, 5)
    assert files_on_disk(tmp_path, level) == expected(level, 5)
    assert not list((tmp_path / STAGING).iterdir())
    # Opening again changes nothing: roll-forward is idempotent.
    assert counts(tmp_path, level) == expected(level, 5)


def test_reader_between_staging_and_first_write_leaves_the_writer_alone(tmp_path, monkeypatch):
    """A reader that opens the store right after a writer made its staging folder (the window
    is widened deterministically: the reader runs inside the writer's mkdir) must not take the
    transaction for abandoned; the writer commits every row."""
    store = Store(tmp_path, create=True)
    real_mkdir = store.fs.mkdir
    opened = []

    def mkdir_then_read(path):
        real_mkdir(path)
        if path.parent.name == STAGING:
            opened.append(Store(tmp_path).ids("run"))  # a reader's open runs recovery

    monkeypatch.setattr(store.fs, "mkdir", mkdir_then_read)
    with store.transaction("run", KEY["run"]) as txn:
        assert txn.dir.exists()
        monkeypatch.undo()
        _write_all(txn, "run", 4)
    assert opened == [[]]
    assert counts(tmp_path, "run") == expected("run", 4)


def _write_all(txn, level, n):
    ns = {}
    exec(WRITER.split("path, level")[0], ns)
    for name, t in TABLES.items():
        if t.level == level:
            rows = ns["fake"](t, 1 if name in PRIMARY.values() else n)
            txn.write(name, rows, **({"layer": 0} if "layer" in dict(t.partition) else {}))


def test_commit_refuses_short_tables(tmp_path):
    store = Store(tmp_path, create=True)
    with (
        pytest.raises(StoreError, match="attention holds 4 rows in staging, 9 expected"),
        store.transaction("run", KEY["run"]) as txn,
    ):
        txn.expect_rows(attention=9)
        _write_all(txn, "run", 4)
    assert store.ids("run") == [] and not list((tmp_path / STAGING).iterdir())


def test_commit_refuses_when_staging_vanished(tmp_path):
    """If anything removed the staged files, the commit fails rather than recording an empty run."""
    import shutil

    store = Store(tmp_path, create=True)
    with (
        pytest.raises(StoreError, match="gone or unreadable"),
        store.transaction("run", KEY["run"]) as txn,
    ):
        _write_all(txn, "run", 4)
        for w in txn._writers.values():
            w.close()
        shutil.rmtree(txn.dir / "attention")
    assert store.ids("run") == []


# --- hostile stores ----------------------------------------------------------------------------


def _tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_staging_that_is_a_link_is_refused(tmp_path):
    store, victim = tmp_path / "store", tmp_path / "victim"
    Store(store, create=True)
    (victim / "run-0123456789abcdef-0badf00d").mkdir(parents=True)
    (victim / "run-0123456789abcdef-0badf00d" / "precious.txt").write_text("keep me")
    (store / STAGING).symlink_to(victim)
    before = _tree(victim)
    with pytest.raises(StoreError, match=r"\.staging' is a symbolic link"):
        Store(store)
    assert _tree(victim) == before


def test_commit_moving_outside_the_store_is_refused(tmp_path):
    store, victim = tmp_path / "store", tmp_path / "victim"
    Store(store, create=True)
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    txn = store / STAGING / "run-0123456789abcdef-0badf00d"
    txn.mkdir(parents=True)
    (txn / "COMMIT").write_text(json.dumps([{"src": None, "dst": "../victim"}]))
    with pytest.raises(StoreError, match="outside run 0123456789abcdef's folders"):
        Store(store)
    assert (victim / "precious.txt").read_text() == "keep me"
    (txn / "COMMIT").write_text(
        json.dumps([{"src": "../victim", "dst": "runs/run_id=0123456789abcdef"}])
    )
    with pytest.raises(StoreError, match="not a commit attnstore wrote"):
        Store(store)
    assert (victim / "precious.txt").read_text() == "keep me"
    (txn / "COMMIT").write_text('"not a list"')
    with pytest.raises(StoreError, match="not a commit attnstore wrote"):
        Store(store)
    assert (victim / "precious.txt").read_text() == "keep me"


def test_table_folder_that_is_a_link_is_refused(tmp_path):
    store, victim = tmp_path / "store", tmp_path / "victim"
    assert write(store, "run", 3).returncode == 0
    assert write(store, "run", 5, overwrite=True, crash_after=0).returncode == 137
    victim.mkdir()
    (victim / "run_id=0123456789abcdef").mkdir()
    (victim / "run_id=0123456789abcdef" / "precious.txt").write_text("keep me")
    import shutil

    shutil.rmtree(store / "runs")
    (store / "runs").symlink_to(victim)
    with pytest.raises(StoreError, match="symbolic link"):
        Store(store)
    assert (victim / "run_id=0123456789abcdef" / "precious.txt").read_text() == "keep me"


def test_stray_files_in_staging_are_ignored(tmp_path):
    assert write(tmp_path, "run", 3).returncode == 0
    (tmp_path / STAGING).mkdir(exist_ok=True)
    (tmp_path / STAGING / ".DS_Store").write_bytes(b"\0\1")
    (tmp_path / STAGING / "notes").mkdir()
    assert counts(tmp_path, "run") == expected("run", 3)
    assert (tmp_path / STAGING / ".DS_Store").exists() and (tmp_path / STAGING / "notes").exists()


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
    import pyarrow.parquet as pq

    assert write(tmp_path, "run", 3).returncode == 0
    stray = tmp_path / "inputs" / "run_id=0123456789abcdef" / "part-9.parquet"
    pq.write_table(pa.table({"a": [1]}), stray)
    with pytest.raises(StoreError, match=r"part-9\.parquet' has the columns \['a'\]"):
        Store(tmp_path).verify()


@pytest.mark.parametrize(
    "place", ["inputs/junk/part-0.parquet", "inputs/part-0.parquet", "attention/run_id=x/p.parquet"]
)
def test_parquet_file_outside_the_layout_is_named(tmp_path, place):
    import pyarrow.parquet as pq

    assert write(tmp_path, "run", 3).returncode == 0
    (tmp_path / place).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"a": [1]}), tmp_path / place)
    with pytest.raises(StoreError, match="is not where attnstore keeps"):
        Store(tmp_path).read(place.split("/")[0])


def test_full_disk_cleans_staging_and_says_so(tmp_path, monkeypatch):
    import errno

    store = Store(tmp_path, create=True)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StoreError, match="no space left in"):  # noqa: SIM117
        with store.transaction("run", KEY["run"]) as txn:
            monkeypatch.setattr(txn, "write", full)
            txn.write("inputs", None)
    assert not list((tmp_path / STAGING).iterdir()) and store.ids("run") == []


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
