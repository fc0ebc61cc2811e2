"""A store someone hands you, damaged or hostile, read with every read-only command: no reader
deletes or changes a byte of it, a commit record attnstore did not write is refused in one line
naming it (never read as "0 rows", never a reason to delete), links inside the store are
refused for files as for folders, a file whose rows were doubled is not served, and no store is
made at the filesystem root, the home folder, or a folder holding other things.

The commands run through click's runner; the store is a copy of conftest's tiny analysed store
(one run, two analyses), hashed byte for byte around every command."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from attnstore.cli import cli
from attnstore.errors import StoreError
from attnstore.store import Store
from attnstore.transaction import COMMIT_KEY, FILES_KEY, ROWS_KEY
from tests.test_store_recovery import KEY, _write_all, write

ORPHAN = "0123456789abcdef"  # the token of files no commit record names


# --- helpers -----------------------------------------------------------------------------------


def fingerprint(root: Path) -> dict[str, str]:
    """Every entry below ``root``: a file's sha256, a folder, or a link's target (links are
    listed, never followed)."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(folder) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link to " + os.readlink(p)
            elif p.is_dir():
                out[rel] = "folder"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def cli_run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result, *words) -> str:
    """The result is exit status 2 with one line on stderr holding every word."""
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture
def store(tmp_path, tiny_analysed_store):
    """A copy of the tiny analysed store: (path, run id)."""
    src, run_id, _ = tiny_analysed_store
    path = tmp_path / "store"
    shutil.copytree(src, path)
    return path, run_id


def record_path(path: Path, run_id: str) -> Path:
    return path / "runs" / f"run_id={run_id}" / "commit.parquet"


def data_file(path: Path, table: str, run_id: str) -> Path:
    (f,) = (path / table / f"run_id={run_id}").glob("part-*.parquet")
    return f


def rewrite_record(rec: Path, table: pa.Table | None = None, **meta: str | None) -> None:
    """The record rewritten with its metadata changed (a value None drops the key)."""
    old = pq.read_table(rec)
    kept = {k.decode(): v.decode() for k, v in (old.schema.metadata or {}).items()}
    for k, v in meta.items():
        kept.pop(k, None) if v is None else kept.__setitem__(k, v)
    pq.write_table((table or old).replace_schema_metadata(kept), rec)


def _pandas(rec: Path, run_id: str) -> None:
    pd.read_parquet(rec).to_parquet(rec)  # what a notebook "fixing" a value would do


def _token(value: str):
    return lambda rec, run_id: rewrite_record(rec, **{COMMIT_KEY: value})


def _two_rows(rec: Path, run_id: str) -> None:
    t = pq.read_table(rec)
    rewrite_record(rec, pa.concat_tables([t, t]))


def _other_id(rec: Path, run_id: str) -> None:
    rewrite_record(rec, **{"attnstore.run_id": "fedcba9876543210"})


def _bad_counts(rec: Path, run_id: str) -> None:
    rewrite_record(rec, **{ROWS_KEY: '{"runs": "many"}'})


# A commit record damaged in each way a hand, a tool or a disk damages one.
DAMAGED_RECORDS = {
    "rewritten by pandas": (_pandas, "names no commit token"),
    "token '*'": (_token("*"), "is not 16 hex digits"),
    "empty token": (_token(""), "is not 16 hex digits"),
    "token of 100,000 characters": (_token("a" * 100_000), "(100000 characters)"),
    "token of 16 non-hex characters": (_token("../../etc/passwd"), "is not 16 hex digits"),
    "two rows": (_two_rows, "holds 2 rows, not 1"),
    "another id": (_other_id, "not its folder's"),
    "row counts that are not counts": (_bad_counts, "not one count per table"),
}


def damage_record(path: Path, run_id: str, how: str) -> None:
    DAMAGED_RECORDS[how][0](record_path(path, run_id), run_id)


def link_a_data_file(path: Path, run_id: str, outside: Path) -> Path:
    """The run's inputs file moved out of the store, a link to it left in its place."""
    f = data_file(path, "inputs", run_id)
    outside.mkdir(parents=True, exist_ok=True)
    moved = outside / f.name
    shutil.move(f, moved)
    f.symlink_to(moved)
    return f


def link_a_run_folder(path: Path, run_id: str, outside: Path) -> Path:
    """The run's attention folder moved out of the store, a link to it left in its place."""
    folder = path / "attention" / f"run_id={run_id}"
    outside.mkdir(parents=True, exist_ok=True)
    moved = outside / folder.name
    shutil.move(folder, moved)
    folder.symlink_to(moved, target_is_directory=True)
    return folder


def leave_orphans(path: Path, run_id: str) -> None:
    """What a killed writer leaves: a whole data file no commit record names, and a
    half-written temporary file."""
    f = data_file(path, "inputs", run_id)
    shutil.copy(f, f.with_name(f"part-{ORPHAN}.parquet"))
    tmp = f.with_name(f".part-{ORPHAN}.parquet.{'0' * 32}.tmp")
    tmp.write_bytes(f.read_bytes()[:100])


# --- 1. damaged commit records ------------------------------------------------------------------


@pytest.mark.parametrize("how", list(DAMAGED_RECORDS))
def test_a_damaged_commit_record_is_named_and_nothing_is_deleted(store, how):
    """The issue's case: the record's token is not a token (or the record is not one row of
    its id); `sql` once deleted all six data files of the run and answered 0. Now one line
    names the record; the store keeps every byte; recovery and a writer of the id refuse."""
    path, run_id = store
    damage_record(path, run_id, how)
    before = fingerprint(path)
    result = cli_run("sql", "--store", path, "select count(*) from attention")
    one_line_error(result, str(record_path(path, run_id)), "is damaged", DAMAGED_RECORDS[how][1])
    assert len(result.output) < 600  # a 100,000-character token is not echoed
    assert fingerprint(path) == before
    with pytest.raises(StoreError, match="is damaged"):
        Store(path).recover()
    with pytest.raises(StoreError, match="is damaged"):
        Store(path).transaction("run", run_id, overwrite=True).__enter__()
    one_line_error(cli_run("recover", "--store", path), "is damaged")
    assert fingerprint(path) == before


def test_a_record_of_two_rows_is_not_read_as_two_runs(store):
    path, run_id = store
    damage_record(path, run_id, "two rows")
    with pytest.raises(StoreError, match="holds 2 rows, not 1"):
        Store(path).runs()


# --- a data file holding its rows twice ---------------------------------------------------------


def test_a_data_file_holding_its_rows_twice_is_not_served(store):
    """The commit record names each file with its bytes and rows: a file rewritten with every
    row twice (same name, same metadata) disagrees with it, and every connection refuses it
    in one line naming the file and its record."""
    path, run_id = store
    f = data_file(path, "inputs", run_id)
    t = pq.read_table(f)
    pq.write_table(pa.concat_tables([t, t]), f)
    before = fingerprint(path)
    result = cli_run("sql", "--store", path, "select count(*) from inputs")
    one_line_error(result, str(f), "bytes", str(record_path(path, run_id)))
    one_line_error(cli_run("verify", "--store", path), str(f))
    assert fingerprint(path) == before


def test_repeated_rows_with_the_count_kept_are_found_by_verify_deep(store):
    """A file whose rows repeat but whose count is unchanged (its record's manifest rewritten
    to its new bytes, as a buggy writer would have committed it) passes the footer checks;
    the grain check of `attnstore verify --deep` reads the grain columns and finds it."""
    path, run_id = store
    f = data_file(path, "inputs", run_id)
    t = pq.read_table(f)
    half = t.slice(0, t.num_rows // 2)
    pq.write_table(pa.concat_tables([half, half]).replace_schema_metadata(t.schema.metadata), f)
    rec = record_path(path, run_id)
    files = json.loads(pq.read_schema(rec).metadata[FILES_KEY.encode()])
    rel = str(f.relative_to(path))
    files = [e | {"bytes": f.stat().st_size} if e["path"] == rel else e for e in files]
    rewrite_record(rec, **{FILES_KEY: json.dumps(files)})
    before = fingerprint(path)
    ok = cli_run("verify", "--store", path)
    assert ok.exit_code == 0 and "every committed file checked" in ok.output, ok.output
    one_line_error(cli_run("verify", "--store", path, "--deep"), str(f), "repeat the grain")
    assert fingerprint(path) == before


def test_a_data_file_copied_from_another_place_is_named(store):
    """A file renamed to the committed token (or copied from another run) is not the bytes its
    record names: every read names it; and it carries its own id and token in its metadata:
    verify says so."""
    path, run_id = store
    f = data_file(path, "inputs", run_id)
    t = pq.read_table(f)
    meta = dict(t.schema.metadata) | {COMMIT_KEY.encode(): ORPHAN.encode()}
    pq.write_table(t.replace_schema_metadata(meta), f)
    one_line_error(cli_run("sql", "--store", path, "select 1"), str(f), "bytes")
    one_line_error(cli_run("verify", "--store", path), str(f), "copied or moved")


# --- 2 and 5. links -----------------------------------------------------------------------------


def test_a_linked_data_file_is_refused(store, tmp_path):
    """`part-<token>.parquet` as a link to a file outside the store: sql refuses it (it read
    it), and analyze commits no analysis of it (it did)."""
    path, run_id = store
    link = link_a_data_file(path, run_id, tmp_path / "outside")
    before = fingerprint(path)
    one_line_error(
        cli_run("sql", "--store", path, "select count(*) from inputs"), str(link), "symbolic link"
    )
    result = cli_run("analyze", "--store", path, "--view", "raw", "--backend", "sklearn")
    one_line_error(result, str(link), "symbolic link")
    assert fingerprint(path) == before


def test_a_linked_run_folder_is_refused(store, tmp_path):
    """A `run_id=` folder that is a link read as 0 rows with exit status 0."""
    path, run_id = store
    link = link_a_run_folder(path, run_id, tmp_path / "outside")
    before = fingerprint(path)
    result = cli_run("sql", "--store", path, "select count(*) from attention")
    one_line_error(result, str(link), "symbolic link")
    assert fingerprint(path) == before


# --- 4. where a store may be made ---------------------------------------------------------------


def _extract(where, tiny_checkpoint):
    return cli_run("extract", "--store", where, "--checkpoint", tiny_checkpoint, "--samples", 2,
                   "--no-analysis")  # fmt: skip


def test_no_store_at_the_filesystem_root(tiny_checkpoint, monkeypatch):
    """(Were the refusal to fail, this test must not make a store at '/': every way of writing
    there fails the test instead.)"""
    from attnstore import extraction
    from attnstore.fs import LocalFS

    def must_not_write(*args, **kwargs):
        raise AssertionError("a store was about to be written at the filesystem root")

    monkeypatch.setattr(extraction, "write", must_not_write)
    for name in ("mkdir", "probe_writable", "create_only", "write_bytes"):
        monkeypatch.setattr(LocalFS, name, must_not_write)
    for where in ("/", "//", "/tmp/.."):
        one_line_error(_extract(where, tiny_checkpoint), f"'{where}'", "filesystem root")
        with pytest.raises(StoreError, match="filesystem root"):
            Store(where, create=True)


def test_no_store_in_the_home_folder(tiny_checkpoint, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for where in (home, "~", f"{home}/."):
        one_line_error(_extract(where, tiny_checkpoint), "home folder")
    assert list(home.iterdir()) == []


def test_no_store_in_a_folder_holding_other_things(tiny_checkpoint, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "thesis.tex").write_text("keep")
    before = fingerprint(full)
    one_line_error(_extract(full, tiny_checkpoint), f"'{full}'", "'thesis.tex'", "new or empty")
    one_line_error(_extract(f"{full}/", tiny_checkpoint), "'thesis.tex'")
    with pytest.raises(StoreError, match="holds other things"):
        Store(full, create=True)
    assert fingerprint(full) == before


def test_no_store_in_an_s3_prefix_holding_other_things(s3_bucket):
    import boto3

    boto3.client("s3").put_object(Bucket=s3_bucket, Key="data/results.csv", Body=b"keep")
    for where in (f"s3://{s3_bucket}", f"s3://{s3_bucket}/data"):
        with pytest.raises(StoreError, match="holds other things"):
            Store(where, create=True)
    Store(f"s3://{s3_bucket}/store", create=True)  # a new prefix
    keys = boto3.client("s3").list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert sorted(o["Key"] for o in keys) == ["data/results.csv", "store/attnstore.json"]


def test_a_store_is_made_in_a_new_or_empty_folder_and_reopened(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for where in (empty, tmp_path / "new" / "store"):
        Store(where, create=True)
        assert (where / "attnstore.json").exists()
        Store(where, create=True)  # a store already: opened as it is


# --- 7. readers change nothing ------------------------------------------------------------------


STATES = [
    "healthy",
    *(f"record {how}" for how in DAMAGED_RECORDS),
    "a linked data file",
    "a linked run folder",
    "a killed writer's files",
    "a stray temporary file",
]
ANSWERING = ("healthy", "a killed writer's files", "a stray temporary file")


def bring_about(state: str, path: Path, run_id: str, outside: Path) -> None:
    """Damage the store as ``state`` says."""
    if state.startswith("record "):
        damage_record(path, run_id, state.removeprefix("record "))
    elif state == "a linked data file":
        link_a_data_file(path, run_id, outside)
    elif state == "a linked run folder":
        link_a_run_folder(path, run_id, outside)
    elif state == "a killed writer's files":
        leave_orphans(path, run_id)
    elif state == "a stray temporary file":
        stray = record_path(path, run_id).with_name(f".commit.parquet.{'1' * 32}.tmp")
        stray.write_bytes(b"PAR1")  # a killed local write of a commit record


READ_COMMANDS = {
    "sql": ["sql", "--store", "{s}", "select count(*) from attention"],
    "query": ["query", "run_overview", "--store", "{s}"],
    "plot": ["plot", "heads", "--store", "{s}", "--out", "{out}/heads.png"],
    "report": ["report", "--store", "{s}", "--out", "{out}/report"],
}


@pytest.mark.parametrize("state", STATES)
def test_read_commands_change_no_byte_of_the_store(store, tmp_path, state):
    """Every read-only command, on a healthy store and on damaged ones: the store is
    byte-identical afterwards (a healthy one answers; a damaged one is refused in one line,
    or, where the damage is only a dead writer's leftovers, answers from the committed
    files)."""
    path, run_id = store
    bring_about(state, path, run_id, tmp_path / "outside")
    before = fingerprint(path)
    for name, args in READ_COMMANDS.items():
        out = tmp_path / f"out-{name}"
        result = cli_run(*[a.format(s=path, out=out) for a in args])
        if state in ANSWERING:
            assert result.exit_code == 0, (name, result.output, result.exception)
        else:
            one_line_error(result)
        assert fingerprint(path) == before, (state, name)
    if state == "a killed writer's files":  # recovery, when asked, takes them
        assert Store(path).recover() == 2
        assert not list(path.rglob(f"*{ORPHAN}*"))


def test_opening_a_writable_store_deletes_nothing(store):
    """Opening the store (as every reader does) once ran recovery: it deletes nothing now,
    not even a dead writer's files; the next writer of that id, or `attnstore recover`,
    does."""
    path, run_id = store
    leave_orphans(path, run_id)
    before = fingerprint(path)
    for _ in range(2):
        Store(path).runs()
    assert fingerprint(path) == before
    result = cli_run("recover", "--store", path)
    assert result.exit_code == 0 and "2 leftover files deleted" in result.output, result.output
    assert not list(path.rglob(f"*{ORPHAN}*"))
    assert Store(path).read("inputs", run_id=run_id).num_rows > 0


def test_a_writer_recovers_only_the_id_it_writes(tmp_path):
    """A killed writer's files of run A stay when run B is written; the next writer of A
    removes them."""
    s = Store(tmp_path / "s", create=True)
    left = {}
    for key in ("a" * 16, "b" * 16):
        folder = tmp_path / "s" / "inputs" / f"run_id={key}"
        folder.mkdir(parents=True)
        left[key] = folder / f"part-{ORPHAN}.parquet"
        left[key].write_bytes(b"left by a killed writer")
    with s.transaction("run", "b" * 16) as txn:
        _write_all(txn, "run", 3)
    assert left["a" * 16].exists() and not left["b" * 16].exists()
    with s.transaction("run", "a" * 16) as txn:
        assert not left["a" * 16].exists()  # gone before this writer's first file
        _write_all(txn, "run", 3)


def test_rows_counted_in_the_record(store):
    """A commit record counts the rows of each table of its id (what verify checks)."""
    path, run_id = store
    meta = pq.read_schema(record_path(path, run_id)).metadata
    rows = json.loads(meta[ROWS_KEY.encode()])
    s = Store(path)
    for name, n in rows.items():
        assert s.read(name, run_id=run_id).num_rows == n > 0, name


def test_a_read_racing_an_overwrite_reads_a_whole_version(tmp_path, monkeypatch):
    """An overwrite that commits (and deletes the old files) between the reading of the commit
    records and the reading of the files they name: the old files are gone, the record is
    not the one read, so the read reads the records again and the new version, whole (not an
    error, not a missing file)."""
    path = tmp_path / "store"
    assert write(path, "run", 3).returncode == 0
    s = Store(path)
    real, raced = s._committed, []

    def overwrite_after_reading_the_records(t, records):
        files = real(t, records)
        if t.name == "inputs" and not raced:
            raced.append(t.name)
            with Store(path).transaction("run", KEY["run"], overwrite=True) as txn:
                _write_all(txn, "run", 5)
        return files

    monkeypatch.setattr(s, "_committed", overwrite_after_reading_the_records)
    assert s.read("inputs").num_rows == 5 and raced


def test_a_layer_folder_that_is_not_a_number_is_named(store):
    """`layer=abc` under a run's attention once ended in pyarrow's ArrowInvalid traceback. No
    commit record names it, so no reader reads it (sql answers the committed rows), and
    `attnstore verify` names it as out of place: an integer partition value must be digits.
    A manifest naming it is a damaged record."""
    path, run_id = store
    f = next((path / "attention" / f"run_id={run_id}" / "layer=0").glob("part-*.parquet"))
    sql = ("sql", "--store", path, "select count(*) as n from attention")
    answer = cli_run(*sql)
    odd = f.parent.parent / "layer=abc"
    odd.mkdir()
    shutil.copy(f, odd / f.name)
    before = fingerprint(path)
    assert cli_run(*sql).output == answer.output and answer.exit_code == 0
    result = cli_run("verify", "--store", path)
    one_line_error(result, "layer=abc", "is not where attnstore keeps attention files")
    rec = record_path(path, run_id)
    files = json.loads(pq.read_schema(rec).metadata[FILES_KEY.encode()])
    files[0]["path"] = str((odd / f.name).relative_to(path))
    rewrite_record(rec, **{FILES_KEY: json.dumps(files)})
    one_line_error(cli_run(*sql), str(rec), "is damaged", "layer=abc")
    assert fingerprint(path) != before  # the record only
