"""``attnstore migrate``: rewrite a store of schema version 1 into the current format, in place,
keeping every run, analysis and intervention id and every value; and give the commit records of
a version 2 store written before file manifests their manifests.

**Manifests (version 2, no schema change).** A commit record names its files
(``attnstore.files``: path, bytes, rows; :mod:`attnstore.transaction`). Records written before
that are still read (their ids' folders are listed instead); ``attnstore migrate`` adds the
manifest to each: the files of the record's token are listed and their footers read (the rows
must add up to the record's counts), and the record is replaced by the same row with the
manifest added, one id at a time, under the id's lock (on S3 a put conditional on the record's
ETag). A migration killed half way leaves some records with manifests and some without, all
read correctly; running it again finishes it. Works on a folder and on an object store.

What changes from version 1 to 2:

- ``attention.weights`` holds the keys a causal query can see (``query_pos + 1`` values)
  instead of all ``2 * n_points``; the keys dropped are exactly 0 (checked for every row:
  a row with a non-zero weight there is refused, nothing is lost);
- ``runs`` gains ``precision`` ('float32'), ``max_abs_error`` (0.0), ``train_step`` and
  ``sweep_id`` (null: version 1 did not record them);
- ``schema_version`` columns and file metadata say 2;
- files follow the format 2 layout: data files ``part-<token>.parquet`` and a
  ``commit.parquet`` record per id (:mod:`attnstore.transaction`), written with the format's
  encodings (:func:`attnstore.schema.parquet_options`).

**One transaction, SIGKILL-safe.** The store's ``attnstore.json`` says version 1 until the
very end, so every command but this one refuses the store throughout:

1. every version 1 file is converted into its version 2 file beside it (a temporary file
   renamed into place, so a file is whole or absent; one already there is skipped, so a rerun
   resumes where a killed migration stopped; its token is derived from the id);
2. the version 1 files, and what version 1 writers left in ``.staging``, are deleted;
3. ``attnstore.json`` is replaced by ``{"schema_version": 2}``: the commit point.

A migration killed anywhere leaves a store that is still version 1 and still complete
(each id's files in one version or the other), and ``attnstore migrate`` again finishes it. A
version 1 store whose ``.staging`` holds a decided but unfinished commit (a ``COMMIT`` file) is
refused: the attnstore that wrote it must finish it first. A store holding a symbolic link
anywhere (a ``run_id=`` folder, a file) is refused before anything is written, as format 2
refuses them: no file is ever written or deleted through a link. Only a local folder can hold
a version 1 store (object stores arrived with version 2).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from attnstore.errors import SchemaVersionError, StoreError
from attnstore.fs import FileSystem, filesystem_for
from attnstore.schema import PRIMARY, SCHEMA_VERSION, TABLES, Table, parquet_options
from attnstore.store import STORE_FILE, Store
from attnstore.transaction import (
    COMMIT_FILE,
    LOCKS,
    FileEntry,
    commit_record,
    file_metadata,
    parse_record,
)

V1_FILE = "part-0.parquet"
V1_STAGING = ".staging"
CRASH_ENV = "ATTNSTORE_MIGRATE_CRASH_AT"  # tests only: 'converted', 'cleaned'
# Columns version 2 added, and the value they take for rows written before them.
ADDED = {
    ("runs", "precision"): "float32",
    ("runs", "max_abs_error"): 0.0,
    ("runs", "train_step"): None,  # a version 1 run does not record it
    ("runs", "sweep_id"): None,
    ("runs", "train_seed"): None,  # unknown: added later (schema.LATER_COLUMNS)
}


@dataclass(frozen=True)
class MigrateResult:
    store: str
    from_version: int
    to_version: int
    ids: dict[str, int]  # level -> ids migrated
    bytes_before: int
    bytes_after: int
    manifests: int = 0  # commit records given their file manifest


def migrate(location: str | Path, progress: bool = False) -> MigrateResult:
    """Rewrite the store at ``location`` into the current schema version, and give every
    commit record its file manifest (module docstring). A store already current is left as it
    is."""
    fs, root = filesystem_for(location)
    meta = root / STORE_FILE
    fs.check_root(root, str(location))
    if not fs.exists(meta):
        raise StoreError(f"'{location}' is not an attnstore store (it has no {STORE_FILE})")
    version = _version(fs, meta)
    if version == SCHEMA_VERSION:
        n = add_manifests(Store(location))
        return MigrateResult(str(location), version, version, {}, 0, 0, n)
    if version != 1:
        raise SchemaVersionError(
            f"store '{location}' has schema version {version}; this attnstore migrates "
            f"version 1 to {SCHEMA_VERSION}"
        )
    root = fs.local_folder(root, "a version 1 store")
    fs.find(root, "**/*")  # a symbolic link anywhere inside is refused: never written through
    _refuse_unfinished_commits(fs, root, location)
    fs.mkdir(root / LOCKS)
    lock = fs.try_lock(root / LOCKS / "migrate.lock")
    if lock is None:
        raise StoreError(f"store '{location}' is being migrated by another process right now")
    try:
        ids = {level: _committed_v1(fs, root, level) for level in PRIMARY}
        before = sum(f.stat().st_size for f in root.glob(f"*/**/{V1_FILE}"))
        _convert(fs, root, ids, progress)
        _crash_at("converted")
        for f in root.glob(f"*/**/{V1_FILE}"):
            fs.remove(f)
        shutil.rmtree(root / V1_STAGING, ignore_errors=True)
        _crash_at("cleaned")
        fs.write_bytes(meta, (json.dumps({"schema_version": SCHEMA_VERSION}) + "\n").encode())
        after = sum(f.stat().st_size for f in root.glob("*/**/*.parquet"))
    finally:
        fs.unlock(lock)
    counts = {level: len(v) for level, v in ids.items()}
    n = sum(counts.values())  # every record written with its manifest
    return MigrateResult(str(location), version, SCHEMA_VERSION, counts, before, after, n)


def add_manifests(s: Store) -> int:
    """Give every commit record of ``s`` that has none its file manifest (module docstring);
    how many records were rewritten. A record whose files do not add up to its row counts is
    a StoreError naming it, and is left as it is."""
    n = 0
    for level in PRIMARY:
        for key, record in s.records(level).items():
            if record.files is not None:
                continue
            lock = s._folder.lock_id(level, key)
            if lock is None:
                raise StoreError(
                    f"{level} {key} is being written by another process right now; run "
                    "attnstore migrate again once it has finished"
                )
            try:
                n += _add_manifest(s, level, key)
            finally:
                s._folder.unlock(lock)
    return n


def _add_manifest(s: Store, level: str, key: str) -> int:
    """The record of ``key`` rewritten with its manifest (1), or left (0: it has one now)."""
    record, tag = s._folder.read_version(level, key)  # again, under the lock
    if record is None or record.files is not None:
        return 0
    t = TABLES[PRIMARY[level]]
    path = s._folder.commit_path(level, key)
    entries = []
    arrow = s.fs.arrow()
    for f in s._folder.version_files(level, key, record):
        with arrow.open_input_file(str(f)) as fh:
            entries.append(
                FileEntry(
                    f.relative_to(s.root).as_posix(), fh.size(), pq.read_metadata(fh).num_rows
                )
            )
    row = s.read(t.name, **{t.partition[0][0]: key}).drop_columns([t.partition[0][0]])
    rows = record.rows
    data = commit_record(t, row, key, record.token, rows, entries)
    parse_record(data, s.fs.url(path), t, key)  # the rows add up: else named, nothing written
    if not s.fs.replace(path, data, tag):
        raise StoreError(
            f"{level} {key} was replaced by another writer during the migration; run attnstore "
            "migrate again"
        )
    return 1


def _version(fs: FileSystem, meta: Path) -> int:
    try:
        content = json.loads(fs.read_text(meta))
        version = content["schema_version"]
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise StoreError(f"'{meta}' is not a store file attnstore wrote ({e})") from e
    if type(version) is not int:
        raise StoreError(f"'{meta}' holds schema_version {version!r}; expected an integer")
    return version


def _refuse_unfinished_commits(fs: FileSystem, root: Path, location) -> None:
    staging = root / V1_STAGING
    for entry in sorted(staging.iterdir()) if staging.is_dir() else []:
        if entry.is_dir() and (entry / "COMMIT").exists():
            raise StoreError(
                f"store '{location}' holds an unfinished version 1 commit ('{entry}'); open "
                "the store once with the attnstore that wrote it (it finishes the commit), "
                "then migrate"
            )


def _committed_v1(fs: FileSystem, root: Path, level: str) -> list[str]:
    """Ids whose primary row is there: a version 1 file, or the record of a migration that
    was killed after writing it."""
    t = TABLES[PRIMARY[level]]
    key = t.partition[0][0]
    out = []
    folders = root / t.name
    for folder in sorted(folders.iterdir()) if folders.is_dir() else []:
        if folder.name.startswith(f"{key}=") and (
            (folder / V1_FILE).exists() or (folder / COMMIT_FILE).exists()
        ):
            out.append(folder.name.split("=", 1)[1])
    return out


def token_for(level: str, key: str) -> str:
    """The token of an id's migrated files: derived, so that a rerun finds its own files."""
    return hashlib.sha256(f"migrate:{level}:{key}".encode()).hexdigest()[:16]


def _convert(fs: FileSystem, root: Path, ids: dict[str, list[str]], progress: bool) -> None:
    from attnstore.progress import progress_bar

    jobs = []
    rows: dict[tuple[str, str], dict[str, int]] = {}  # each id's rows per table, for its record
    for level, keys in ids.items():
        for key in keys:
            counts = rows[(level, key)] = {}
            for name, t in TABLES.items():
                if t.level != level:
                    continue
                counts[name] = 0
                folder = root / name / f"{t.partition[0][0]}={key}"
                for old in sorted(folder.glob(f"**/{V1_FILE}")):
                    jobs.append((t, key, old, level))
                    counts[name] += pq.read_metadata(old).num_rows
    # each id's data files first, its commit record last: the record names them (manifest)
    jobs.sort(key=lambda job: (job[3], job[1], job[0].name == PRIMARY[job[3]]))
    files: dict[tuple[str, str], list[FileEntry]] = {}
    for t, key, old, level in progress_bar(jobs, desc="migrate", unit="file", enabled=progress):
        token = token_for(level, key)
        primary = t.name == PRIMARY[level]
        new = old.with_name(COMMIT_FILE if primary else f"part-{token}.parquet")
        if not new.exists():  # else converted by a migration that was killed later
            done = files.get((level, key), []) if primary else None
            _convert_file(t, key, token, old, new, rows[(level, key)] if primary else None, done)
        if not primary:
            entry = FileEntry(
                new.relative_to(root).as_posix(),
                new.stat().st_size,
                pq.read_metadata(new).num_rows,
            )
            files.setdefault((level, key), []).append(entry)


def _convert_file(
    t: Table,
    key: str,
    token: str,
    old: Path,
    new: Path,
    rows: dict[str, int] | None,
    files: list[FileEntry] | None,
) -> None:
    """One version 1 file into its version 2 file, row group by row group (memory holds one),
    written under a temporary name and renamed into place; a commit record (``rows`` given)
    counts the rows of each of its id's tables and names its files (``files``), as a commit
    does."""
    source = pq.ParquetFile(old)
    tmp = new.with_name(f".{new.name}.{uuid.uuid4().hex}.tmp")
    schema = t.schema.with_metadata(file_metadata(t, key, token, rows, files))
    try:
        with pq.ParquetWriter(tmp, schema, **parquet_options(t)) as writer:
            for i in range(source.num_row_groups):
                writer.write_table(t.check(upgrade(t, source.read_row_group(i))))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, new)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def upgrade(t: Table, data: pa.Table) -> pa.Table:
    """Rows of a version 1 file of table ``t`` as version 2 rows (module docstring)."""
    data = data.replace_schema_metadata(None)
    cols = {}
    for field in t.schema:
        if field.name in data.column_names:
            cols[field.name] = data.column(field.name)
        elif (t.name, field.name) in ADDED:
            value = ADDED[(t.name, field.name)]
            cols[field.name] = pa.array([value] * data.num_rows, type=field.type)
        else:
            raise StoreError(f"table {t.name}: version 1 has no column {field.name} to migrate")
    if "schema_version" in cols:
        cols["schema_version"] = pa.array([SCHEMA_VERSION] * data.num_rows, type=pa.int16())
    if t.name == "attention":
        cols["weights"] = causal_weights(data.column("weights"), data.column("query_pos"))
    return pa.table(cols)


def causal_weights(weights: pa.ChunkedArray, query_pos: pa.ChunkedArray) -> pa.Array:
    """Full rows (version 1) cut to keys 0..query_pos (version 2); the keys cut must be 0."""
    w = weights.combine_chunks()
    q = query_pos.to_numpy().astype(np.int64)
    n = len(w)
    if n == 0:
        return pa.array([], type=pa.list_(pa.float32()))
    lengths = pc.list_value_length(w).to_numpy()
    if (lengths != lengths[0]).any() or (q >= lengths[0]).any():
        raise StoreError("table attention: version 1 rows of unequal lengths; not migrated")
    rows = w.flatten().to_numpy().reshape(n, int(lengths[0]))
    keep = np.arange(rows.shape[1])[None, :] <= q[:, None]
    if (rows[~keep] != 0).any():
        raise StoreError(
            "table attention: a version 1 row has a non-zero weight on a key after its query; "
            "not migrated (the format 2 rows would lose it)"
        )
    offsets = np.concatenate([[0], np.cumsum(q + 1)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(rows[keep], type=pa.float32()))


def _crash_at(step: str) -> None:
    if os.environ.get(CRASH_ENV) == step:
        os._exit(137)
