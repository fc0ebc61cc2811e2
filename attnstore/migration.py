"""``attnstore migrate``: rewrite a store of schema version 1 into the current format, in place,
keeping every run, analysis and intervention id and every value.

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
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from attnstore.errors import SchemaVersionError, StoreError
from attnstore.fs import LocalFS, filesystem_for
from attnstore.schema import PRIMARY, SCHEMA_VERSION, TABLES, Table, parquet_options
from attnstore.store import STORE_FILE
from attnstore.transaction import COMMIT_FILE, LOCKS, file_metadata

V1_FILE = "part-0.parquet"
V1_STAGING = ".staging"
CRASH_ENV = "ATTNSTORE_MIGRATE_CRASH_AT"  # tests only: 'converted', 'cleaned'
# Columns version 2 added, and the value they take for rows written before them.
ADDED = {
    ("runs", "precision"): "float32",
    ("runs", "max_abs_error"): 0.0,
    ("runs", "train_step"): None,  # a version 1 run does not record it
    ("runs", "sweep_id"): None,
}


@dataclass(frozen=True)
class MigrateResult:
    store: str
    from_version: int
    to_version: int
    ids: dict[str, int]  # level -> ids migrated
    bytes_before: int
    bytes_after: int


def migrate(location: str | Path, progress: bool = False) -> MigrateResult:
    """Rewrite the store at ``location`` into the current schema version (module docstring).
    A store already current is left as it is."""
    fs, root = filesystem_for(location)
    meta = root / STORE_FILE
    if not isinstance(fs, LocalFS):
        raise StoreError(
            f"store '{location}' is on an object store, where every store is written in schema "
            f"version {SCHEMA_VERSION} from the start: there is nothing to migrate"
        )
    if not fs.exists(meta):
        raise StoreError(f"'{location}' is not an attnstore store (it has no {STORE_FILE})")
    version = _version(fs, meta)
    if version == SCHEMA_VERSION:
        return MigrateResult(str(location), version, version, {}, 0, 0)
    if version != 1:
        raise SchemaVersionError(
            f"store '{location}' has schema version {version}; this attnstore migrates "
            f"version 1 to {SCHEMA_VERSION}"
        )
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
        fs.remove_tree(root / V1_STAGING)
        _crash_at("cleaned")
        fs.write_atomic(meta, json.dumps({"schema_version": SCHEMA_VERSION}) + "\n")
        after = sum(f.stat().st_size for f in root.glob("*/**/*.parquet"))
    finally:
        fs.unlock(lock)
    counts = {level: len(v) for level, v in ids.items()}
    return MigrateResult(str(location), version, SCHEMA_VERSION, counts, before, after)


def _version(fs: LocalFS, meta: Path) -> int:
    try:
        content = json.loads(fs.read_text(meta))
        version = content["schema_version"]
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise StoreError(f"'{meta}' is not a store file attnstore wrote ({e})") from e
    if type(version) is not int:
        raise StoreError(f"'{meta}' holds schema_version {version!r}; expected an integer")
    return version


def _refuse_unfinished_commits(fs: LocalFS, root: Path, location) -> None:
    for entry in fs.listdir(root / V1_STAGING):
        if fs.is_dir(entry) and fs.exists(entry / "COMMIT"):
            raise StoreError(
                f"store '{location}' holds an unfinished version 1 commit ('{entry}'); open "
                "the store once with the attnstore that wrote it (it finishes the commit), "
                "then migrate"
            )


def _committed_v1(fs: LocalFS, root: Path, level: str) -> list[str]:
    """Ids whose primary row is there: a version 1 file, or the record of a migration that
    was killed after writing it."""
    t = TABLES[PRIMARY[level]]
    key = t.partition[0][0]
    out = []
    for folder in fs.listdir(root / t.name):
        if folder.name.startswith(f"{key}=") and (
            (folder / V1_FILE).exists() or (folder / COMMIT_FILE).exists()
        ):
            out.append(folder.name.split("=", 1)[1])
    return out


def token_for(level: str, key: str) -> str:
    """The token of an id's migrated files: derived, so that a rerun finds its own files."""
    return hashlib.sha256(f"migrate:{level}:{key}".encode()).hexdigest()[:16]


def _convert(fs: LocalFS, root: Path, ids: dict[str, list[str]], progress: bool) -> None:
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
    for t, key, old, level in progress_bar(jobs, desc="migrate", unit="file", enabled=progress):
        token = token_for(level, key)
        primary = t.name == PRIMARY[level]
        new = old.with_name(COMMIT_FILE if primary else f"part-{token}.parquet")
        if new.exists():
            continue  # converted by a migration that was killed later
        _convert_file(t, key, token, old, new, rows[(level, key)] if primary else None)


def _convert_file(
    t: Table, key: str, token: str, old: Path, new: Path, rows: dict[str, int] | None
) -> None:
    """One version 1 file into its version 2 file, row group by row group (memory holds one),
    written under a temporary name and renamed into place; a commit record (``rows`` given)
    counts the rows of each of its id's tables, as a commit does."""
    source = pq.ParquetFile(old)
    tmp = new.with_name(f".{new.name}.{uuid.uuid4().hex}.tmp")
    schema = t.schema.with_metadata(file_metadata(t, key, token, rows))
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
