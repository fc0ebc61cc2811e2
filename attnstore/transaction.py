"""Transactions: how a run, an analysis or an intervention is written into a store, all or
nothing, with one protocol for a local folder and an object store (neither renames nor locks
are needed; :mod:`attnstore.fs` holds the few primitives it uses).

Writing run ``R`` (an analysis, an intervention: the same with their own tables):

1. every table but the primary one is written under a name unique to this transaction,
   ``<table>/run_id=R[/layer=L]/part-<token>.parquet`` (``token``: 16 random hex digits): on a
   local folder first under a hidden ``.tmp`` name that plain readers' globs skip, renamed when
   complete; on an object store under its own name (an object appears only once whole). No
   reader shows these files yet: a data file counts only when its token is the one its run's
   commit record names;
2. the rows on disk are counted against the rows written and declared
   (:meth:`Transaction.expect_rows`);
3. the *commit record* ``runs/run_id=R/commit.parquet`` (the run's row of the primary table,
   with ``attnstore.commit = <token>``, the rows of each table, ``attnstore.rows``, and the
   manifest of its files, ``attnstore.files``: each file's path below the store, bytes and
   rows, in its key-value metadata) is created with a create-only write: ``O_EXCL``-like hard
   link on a local folder, a conditional put (``If-None-Match: *``) on S3. From that instant
   the run exists, whole. ``--overwrite`` replaces the record in one write instead (``rename``
   under the id's lock locally; on S3 a put conditional on the ETag of the record the writer
   read when it started, ``If-Match``, so that of two overwrites at once one fails cleanly):
   readers see the old version or the new one, never neither and never a mix;
4. the files of the version it replaced (its record's manifest) are deleted.

Readers take each table's files from the records' manifests alone: no listing of the data
folders, no footer read of a file a query does not touch. A record written before manifests
(no ``attnstore.files``) is read the old way: its id's folders are listed and the files whose
token is the record's are its files (``attnstore migrate`` adds the manifests).

A process killed before step 3 leaves only files no reader shows; one killed after it leaves
the old version's files, equally hidden. The next writer of ``R`` deletes them when it starts
(:meth:`Folder.recover_id`: its id's folders only); ``Store.recover`` (``attnstore recover``)
does the same for every id. Only writers and that explicit call delete: opening a
store to read it changes nothing. Recovery deletes an id's files on a local folder only when
the id's lock proves their writer dead (a writer holds ``flock`` on
``.locks/<level>-<id>.lock`` from before its first file until after its last), on an object
store once they are older than :data:`STALE_AFTER` (it has no locks; a writer checks its files
are all still there just before it commits); and only after the id's commit record passed its
checks (:func:`parse_record`): a record that is not one attnstore wrote (no valid token, not one
row, another id, a manifest naming a file that is not its own: ``..``, an absolute path,
another bucket, another id or token) is a StoreError naming it, and nothing is deleted.

Two writers of one id: on a local folder the second is refused at once (the id lock); on an
object store both write, the first commit record wins (the first ``--overwrite`` of the version
both read), and the loser removes its files and says so. Paths never leave the store: a
symbolic link inside it (a table or id folder, a data file, ``.locks``) is refused, never
followed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from attnstore.errors import CommitConflict, StoreError, known
from attnstore.fs import FileSystem, link_refused
from attnstore.schema import PRIMARY, SCHEMA_VERSION, TABLES, Table, parquet_options

LOCKS = ".locks"
COMMIT_FILE = "commit.parquet"  # the primary table's file: a run's commit record
COMMIT_KEY = "attnstore.commit"  # key-value metadata: the token of the committed files
ROWS_KEY = "attnstore.rows"  # key-value metadata of a record: rows of each table, JSON
FILES_KEY = "attnstore.files"  # key-value metadata of a record: its files (FileEntry), JSON
CRASH_ENV = "ATTNSTORE_CRASH_AT"  # tests only: 'written' (before step 3), 'committed' (after)
STALE_AFTER = timedelta(hours=1)  # object stores: an uncommitted file this old is a dead writer's
ROW_GROUP_ROWS = 1 << 20  # upper bound; writers pass whole batches as row groups
ID = re.compile(r"[0-9A-Za-z_]{1,64}")  # a run or analysis id: one path segment, no dots
DIGITS = re.compile(r"[0-9]{1,5}")  # an integer partition value (layer): digits only
TOKEN = re.compile(r"[0-9a-f]{16}")  # a transaction's token, as new_token() makes it
DATA_FILE = re.compile(rf"part-({TOKEN.pattern})\.parquet")
TMP_FILE = re.compile(r"\..+\.[0-9a-f]{32}\.tmp")  # a local write's temporary file
_NO_LOCK = object()  # an object store's stand-in for a lock


def partition_dir(root: Path, table: Table, values: dict[str, Any]) -> Path:
    path = root / table.name
    for key, _ in table.partition:
        if key not in values:
            raise StoreError(f"table {table.name}: partition key {key} not given")
        path = path / f"{key}={values[key]}"
    return path


def in_layout(t: Table, rel: Path) -> bool:
    """True if ``rel`` (below the table's folder) is where attnstore keeps the table's files:
    ``<key>=<id>[/layer=<n>]/part-<token>.parquet``, or ``.../commit.parquet`` for a primary
    table; a temporary file of a local atomic write counts too."""
    parts = rel.parts
    if len(parts) != len(t.partition) + 1 or not all(
        part.startswith(f"{key}=")
        and (DIGITS if pa.types.is_integer(ty) else ID).fullmatch(part.split("=", 1)[1])
        for part, (key, ty) in zip(parts, t.partition, strict=False)
    ):
        return False
    if TMP_FILE.fullmatch(parts[-1]):
        return True
    return bool(
        parts[-1] == COMMIT_FILE if t.name == PRIMARY[t.level] else DATA_FILE.fullmatch(parts[-1])
    )


@dataclass(frozen=True)
class FileEntry:
    """One file of a committed version, as its commit record's manifest names it (what a
    Delta Lake ``add`` action carries)."""

    path: str  # below the store's root, '/'-separated: <table>/<key>=<id>[/layer=<n>]/part-...
    bytes: int
    rows: int

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "bytes": self.bytes, "rows": self.rows}


def file_metadata(
    table: Table,
    key: str,
    token: str,
    rows: dict[str, int] | None = None,
    files: list[FileEntry] | None = None,
) -> dict[str, str]:
    """The key-value metadata of every file attnstore writes; a commit record's also counts
    the rows of each table of its id (``rows``) and names its files (``files``)."""
    meta = {
        "attnstore.schema_version": str(SCHEMA_VERSION),
        "attnstore.table": table.name,
        f"attnstore.{table.partition[0][0]}": key,
        COMMIT_KEY: token,
    }
    if rows is not None:
        meta[ROWS_KEY] = json.dumps(rows, sort_keys=True)
    if files is not None:
        entries = sorted(files, key=lambda e: e.path)
        meta[FILES_KEY] = json.dumps([e.as_json() for e in entries], separators=(",", ":"))
    return meta


def commit_record(
    table: Table,
    data: pa.Table,
    key: str,
    token: str,
    rows: dict[str, int] | None = None,
    files: list[FileEntry] | None = None,
) -> bytes:
    """The bytes of a commit record: the primary table's row as one Parquet file, naming the
    token of its id's files, (``rows``) how many rows each table of the id holds and
    (``files``) each of its files."""
    buf = io.BytesIO()
    schema = table.schema.with_metadata(file_metadata(table, key, token, rows, files))
    pq.write_table(
        data.cast(table.schema).replace_schema_metadata(schema.metadata),
        buf,
        **parquet_options(table),
    )
    return buf.getvalue()


def new_token() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class Record:
    """What a commit record says, checked (:func:`parse_record`)."""

    token: str  # the token of the id's committed files
    rows: dict[str, int] | None  # rows of each of the id's tables; None in records written
    # before commit records counted them (ROWS_KEY)
    files: tuple[FileEntry, ...] | None  # its files; None in records written before
    # manifests (FILES_KEY): their files are found by listing the id's folders

    def paths(self, root: PurePath, table: str | None = None) -> list[PurePath]:
        """The paths of its files (of ``table`` alone when given) below ``root``."""
        return [
            root / e.path
            for e in self.files or ()
            if table is None or e.path.split("/", 1)[0] == table
        ]


def parse_record(data: bytes, url: str, table: Table, key: str) -> Record:
    """The commit record of ``key`` from its bytes (``url``: where it lies, for messages),
    from its footer alone. It must be one attnstore wrote: one row, its id's name in its
    metadata, a token of the form :func:`new_token` makes, where given a row count for the
    tables of its level and a manifest naming files of its own id and token inside the store
    (no ``..``, no absolute path, no other bucket, where the layout puts them) whose rows add
    up to those counts. Anything else (a record rewritten by a tool that drops Parquet
    metadata, a damaged token, two rows, another id, a manifest pointing elsewhere) is a
    one-line StoreError naming the file, so that no reader serves it and no recovery deletes
    files on its word."""
    try:
        footer = pq.read_metadata(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as e:
        raise StoreError(f"corrupted Parquet file '{url}': {e}") from e
    meta = {
        k.decode(errors="replace"): v.decode(errors="replace")
        for k, v in (footer.metadata or {}).items()
    }
    id_key = f"attnstore.{table.partition[0][0]}"
    token = meta.get(COMMIT_KEY)
    problem = None
    if token is None:
        problem = (
            f"it names no commit token (no '{COMMIT_KEY}' in its key-value metadata: rewritten "
            "by a tool that drops Parquet metadata?)"
        )
    elif not TOKEN.fullmatch(token):
        problem = f"its commit token {_shown(token)} is not 16 hex digits"
    elif footer.num_rows != 1:
        problem = f"it holds {footer.num_rows} rows, not 1"
    elif meta.get(id_key) != key:
        problem = f"it names {id_key} {_shown(meta.get(id_key))}, not its folder's {key}"
    rows = None
    if problem is None and ROWS_KEY in meta:
        level_tables = sorted(n for n, t in TABLES.items() if t.level == table.level)
        try:
            rows = json.loads(meta[ROWS_KEY])
        except ValueError:
            rows = None
        if (
            not isinstance(rows, dict)
            or table.name not in rows  # a record counts the tables of its level when written
            or not set(rows) <= set(level_tables)
            or not all(type(n) is int and n >= 0 for n in rows.values())
        ):
            problem = f"its row counts {_shown(meta[ROWS_KEY])} are not one count per table"
    files = None
    if problem is None and FILES_KEY in meta:
        files, problem = _manifest(meta[FILES_KEY], table, key, token, rows)
    if problem is not None:
        raise StoreError(
            f"commit record '{url}' is damaged: {problem}; attnstore reads nothing on its "
            f"word and deletes nothing until it is restored, or moved out of the store with its "
            f"folder (then {table.level} {key} is gone and can be written again)"
        )
    return Record(token, rows, files)


def _manifest(
    text: str, primary: Table, key: str, token: str, rows: dict[str, int] | None
) -> tuple[tuple[FileEntry, ...] | None, str | None]:
    """A record's manifest, checked: (its entries, None), or (None, what is wrong)."""
    try:
        items = json.loads(text)
    except ValueError:
        items = None
    if not isinstance(items, list):
        return None, f"its file manifest {_shown(text)} is not a list of files"
    entries, per_table = [], {}
    for item in items:
        if (
            not isinstance(item, dict)
            or sorted(item) != ["bytes", "path", "rows"]
            or not isinstance(item["path"], str)
            or not all(type(item[n]) is int and item[n] >= 0 for n in ("bytes", "rows"))
        ):
            return None, f"its file manifest holds {_shown(json.dumps(item))}, not a file"
        where = _foreign(item["path"], primary, key, token)
        if where is not None:
            return None, f"its file manifest names {_shown(item['path'], 120)}, {where}"
        entries.append(FileEntry(item["path"], item["bytes"], item["rows"]))
        name = item["path"].split("/", 1)[0]
        per_table[name] = per_table.get(name, 0) + item["rows"]
    if len({e.path for e in entries}) != len(entries):
        return None, "its file manifest names a file twice"
    if rows is not None:
        for name in sorted(set(rows) | set(per_table) - {primary.name}):
            if name != primary.name and per_table.get(name, 0) != rows.get(name, 0):
                return None, (
                    f"its file manifest gives table {name} {per_table.get(name, 0)} rows, its "
                    f"row counts {rows.get(name, 0)}"
                )
    return tuple(entries), None


def _foreign(path: str, primary: Table, key: str, token: str) -> str | None:
    """Why ``path`` (a manifest entry) is not a file of ``key``'s version ``token`` inside the
    store; None when it is."""
    if "\\" in path or ":" in path or path.startswith("/"):
        return "which is not a path below the store (an absolute path, a URL, another bucket)"
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "which leaves its place in the store ('..', '.' or an empty folder name)"
    t = TABLES.get(parts[0])
    if t is None or t.level != primary.level or t is primary:
        return f"which is not in a table of its {primary.level}"
    rel = PurePosixPath(*parts[1:])
    if not in_layout(t, rel) or TMP_FILE.fullmatch(parts[-1]):
        return f"which is not where attnstore keeps {t.name} files"
    if parts[1] != f"{t.partition[0][0]}={key}" or parts[-1] != f"part-{token}.parquet":
        return f"which is a file of another id or version, not of {key} with token {token}"
    return None


def _shown(value: str | None, limit: int = 24) -> str:
    """A stored value quoted for a message, cut short if longer than ``limit``."""
    if value is None:
        return "nothing"
    text = value if len(value) <= limit else f"{value[:limit]}... ({len(value)} characters)"
    return repr(text)


class Folder:
    """A store's root as transactions see it: id locks, the files of an id, and recovery."""

    def __init__(self, root: PurePath, fs: FileSystem) -> None:
        self.root, self.fs = root, fs

    # --- locks ---------------------------------------------------------------------------

    def lock_id(self, level: str, key: str):
        """The exclusive lock on an id: a handle, ``_NO_LOCK`` where the filesystem has no
        locks (an object store), or None if another process holds it."""
        if not self.fs.has_locks:
            return _NO_LOCK
        locks = self.root / LOCKS
        self.no_links(locks)
        self.fs.mkdir(locks)
        path = locks / f"{level}-{key}.lock"
        try:
            return self.fs.try_lock(path)
        except OSError as e:  # e.g. a link planted where the lock file goes
            raise StoreError(f"cannot lock '{path}': {e.strerror or e}") from e

    def unlock(self, handle) -> None:
        if handle is not None and handle is not _NO_LOCK:
            self.fs.unlock(handle)

    def no_links(self, *paths: Path) -> None:
        """Refuse paths inside the store that are, or pass through, a symbolic link."""
        for path in paths:
            part = self.root
            for name in path.relative_to(self.root).parts:
                part = part / name
                if self.fs.is_link(part):
                    raise link_refused(part)

    # --- what is committed -------------------------------------------------------------

    def commit_path(self, level: str, key: str) -> Path:
        t = TABLES[PRIMARY[level]]
        return self.root / t.name / f"{t.partition[0][0]}={key}" / COMMIT_FILE

    def level_files(self, level: str, key: str | None = None) -> dict[str, list[Path]]:
        """Every data file and temporary file of a level's tables (the commit records aside),
        by id, committed or not: of every id, or of ``key`` alone (its folders only)."""
        out: dict[str, list[Path]] = {}
        for name, t in TABLES.items():
            if t.level != level:
                continue
            root = self.root / name
            part = f"{t.partition[0][0]}="
            where = root if key is None else root / f"{part}{key}"
            self.no_links(where)
            for f in self.fs.find(where, "**/*"):
                if f.name == COMMIT_FILE or not in_layout(t, f.relative_to(root)):
                    continue  # a record, or a stray file: readers name it, nothing deletes it
                first = f.relative_to(root).parts[0]
                if first.startswith(part):
                    out.setdefault(first.split("=", 1)[1], []).append(f)
        return out

    def committed_token(self, level: str, key: str) -> str | None:
        """The token the commit record of ``key`` names now (checked: :func:`parse_record`);
        None where there is none."""
        record, _ = self.read_version(level, key)
        return None if record is None else record.token

    def read_version(self, level: str, key: str) -> tuple[Record | None, str | None]:
        """The commit record of ``key`` as it is now (checked), and the tag that
        :meth:`FileSystem.replace` takes to replace exactly this version; (None, None) where
        there is none. One request on an object store."""
        path = self.commit_path(level, key)
        self.no_links(path.parent)
        got = self.fs.read_many([path]).get(path)
        if got is None:
            return None, None
        return parse_record(got[0], self.fs.url(path), TABLES[PRIMARY[level]], key), got[1]

    def version_files(self, level: str, key: str, record: Record) -> list[PurePath]:
        """The files of ``key``'s version ``record``: its manifest, or (a record written before
        manifests) the files of its token found in the id's folders."""
        if record.files is not None:
            return record.paths(self.root)
        listed = self.level_files(level, key).get(key, [])
        return [f for f in listed if _token(f) == record.token]

    # --- cleaning up -------------------------------------------------------------------

    def collect(self, level: str, key: str, keep: str | None, files: Iterable[Path]) -> int:
        """Delete the files of ``key`` whose token is not ``keep`` (None: all of them); how
        many were deleted."""
        n = 0
        for f in files:
            m = DATA_FILE.fullmatch(f.name)
            if m and m.group(1) == keep:
                continue
            if m or TMP_FILE.fullmatch(f.name):
                self.no_links(f.parent)
                self.fs.remove(f)
                self.fs.prune(f.parent, self.root)
                n += 1
        return n

    def recover(self, tokens: dict[str, dict[str, str]]) -> int:
        """Delete what killed writers left, in every id: data files no commit record names and
        temporary files, of ids whose writer is provably gone (local: its lock is free) or long
        gone (object store: every such file is older than :data:`STALE_AFTER`). ``tokens``: the
        committed token of each id, per level, as read before (each id's record is read again
        under its lock, so that a commit in between is never taken for a leftover). How many
        files were deleted."""
        n = 0
        for level in PRIMARY:
            committed = tokens.get(level, {})
            for key, files in self.level_files(level).items():
                if _stray(files, committed.get(key)):
                    n += self.recover_id(level, key, files)
        return n

    def recover_id(
        self, level: str, key: str, files: list[Path] | None = None, locked: bool = False
    ) -> int:
        """:meth:`recover` for one id: what earlier writers of ``key`` left (``files``: its
        files, listed now when None), nothing of other ids. A writer calls it holding the id's
        lock (``locked``); anyone else takes the lock first, and skips an id whose writer is
        alive. How many files were deleted."""
        if files is None:
            files = self.level_files(level, key).get(key, [])
        if not files:
            return 0
        lock = _NO_LOCK if locked else self.lock_id(level, key)
        if lock is None:
            return 0  # its writer is alive
        try:
            mine = self.committed_token(level, key)  # read again, under the lock
            stray = _stray(files, mine)
            if not self.fs.has_locks:
                now = datetime.now(timezone.utc)
                with contextlib.suppress(FileNotFoundError):
                    if any(now - self.fs.modified(f) < STALE_AFTER for f in stray):
                        return 0  # perhaps a live writer's
            return self.collect(level, key, mine, stray)
        finally:
            self.unlock(lock)


class Transaction:
    """The writes of one run, analysis or intervention (``Store.transaction``)."""

    def __init__(self, folder: Folder, level: str, key: str, overwrite: bool) -> None:
        self.folder, self.level, self.key, self.overwrite = folder, level, key, overwrite
        self.fs = folder.fs
        if level not in PRIMARY or not ID.fullmatch(key):
            raise StoreError(
                f"cannot write {level} '{key}': levels are {known(PRIMARY)}, ids are 1 to 64 "
                "letters, digits or underscores"
            )
        # The id lock comes first: from before the first file exists, no recovery (another
        # writer's, or an explicit Store.recover) can take this transaction's files for
        # abandoned.
        try:
            self._key_lock = folder.lock_id(level, key)
        except OSError as e:
            raise StoreError(
                f"store '{folder.fs.url(folder.root)}' is not writable ({e.strerror or e}); "
                f"writing {level} {key} needs a store you can write to"
            ) from e
        if self._key_lock is None:
            raise StoreError(f"{level} {key} is being written by another process right now")
        try:
            # The version this transaction replaces (a damaged record of this id: refused
            # now), and the tag that replaces exactly it (an --overwrite on an object store).
            self._base, self._base_tag = folder.read_version(level, key)
            folder.recover_id(level, key, locked=True)  # what killed writers of it left
        except BaseException:
            self._release()
            raise
        self.token = new_token()
        self.primary = TABLES[PRIMARY[level]]
        self._writers: dict[Path, pq.ParquetWriter] = {}  # by the file's final path
        self._staged: dict[Path, Path] = {}  # final path -> where it is written until complete
        self._rows: dict[str, int] = {}
        self._expected: dict[str, int] = {}
        self._record: list[pa.Table] = []
        self._committed = False

    def write(self, name: str, data: pa.Table, **partition: Any) -> None:
        """Append ``data`` as one row group to ``name`` (partition values beyond the key)."""
        t = TABLES[name]
        if t.level != self.level:
            raise StoreError(f"table {name} belongs to a {t.level}, not a {self.level}")
        data = t.check(data)
        self._rows[name] = self._rows.get(name, 0) + data.num_rows
        if t is self.primary:
            self._record.append(data)
            return
        folder = partition_dir(self.folder.root, t, {t.partition[0][0]: self.key, **partition})
        path = folder / f"part-{self.token}.parquet"
        writer = self._writers.get(path)
        if writer is None:
            self.folder.no_links(folder)
            self.fs.mkdir(folder)
            schema = t.schema.with_metadata(file_metadata(t, self.key, self.token))
            staged = self._staged[path] = self.fs.staging_path(path)
            writer = pq.ParquetWriter(
                str(staged), schema, filesystem=self.fs.arrow(), **parquet_options(t)
            )
            self._writers[path] = writer
        writer.write_table(data, row_group_size=ROW_GROUP_ROWS)

    def expect_rows(self, **counts: int) -> None:
        """Declare how many rows tables must hold when this transaction commits; a commit with
        fewer or more is refused (nothing becomes visible)."""
        self._expected.update(counts)

    def commit(self) -> None:
        for path, w in self._writers.items():
            w.close()
            try:
                self.fs.publish(self._staged[path], path)
            except FileNotFoundError as e:
                raise StoreError(
                    f"{self.level} {self.key}: written file '{self._staged[path]}' is gone "
                    f"before the commit ({e}); nothing was committed"
                ) from e
        level_tables = [n for n, t in TABLES.items() if t.level == self.level]
        missing = [n for n in level_tables if n not in self._rows]
        if missing:
            raise StoreError(f"{self.level} {self.key}: no rows written to {', '.join(missing)}")
        files = self._check_written()
        record = commit_record(
            self.primary, pa.concat_tables(self._record), self.key, self.token, self._rows, files
        )
        _crash_at("written")
        path = self.folder.commit_path(self.level, self.key)
        self.folder.no_links(path.parent)
        self.fs.mkdir(path.parent)
        base = self._base if self.overwrite else None
        if base is not None:
            if not self.fs.replace(path, record, self._base_tag):
                raise CommitConflict(
                    f"{self.level} {self.key} was replaced by another writer (another "
                    "--overwrite) while this one ran; this writer's files were removed and the "
                    "other's version is kept"
                )
        elif not self.fs.create_only(path, record):
            raise CommitConflict(
                f"{self.level} {self.key} was committed by another writer while this one ran; "
                "this writer's files were removed and the committed one is kept"
            )
        self._committed = True
        _crash_at("committed")
        if base is not None and base.token != self.token:
            # The version this commit replaced, and nothing else: any other token may be a
            # live writer's (an object store has no locks), left to recovery once stale.
            old = self.folder.version_files(self.level, self.key, base)
            self.folder.collect(self.level, self.key, self.token, old)
        self._release()

    def _check_written(self) -> list[FileEntry]:
        """Refuse to commit unless every table holds, on disk, the rows written to it and the
        rows expected of it (on an object store this also proves no recovery took them); the
        manifest of the files written: each one's path, bytes and rows, read back from it."""
        on_disk: dict[str, int] = {self.primary.name: sum(t.num_rows for t in self._record)}
        arrow = self.fs.arrow()
        entries = []
        for path in self._writers:
            rel = path.relative_to(self.folder.root)
            name = rel.parts[0]
            try:
                with arrow.open_input_file(str(path)) as f:
                    size, n = f.size(), pq.read_metadata(f).num_rows
            except (OSError, pa.ArrowException) as e:
                raise StoreError(
                    f"{self.level} {self.key}: written file '{path}' is gone or unreadable "
                    f"before the commit ({e}); nothing was committed"
                ) from e
            entries.append(FileEntry(rel.as_posix(), size, n))
            on_disk[name] = on_disk.get(name, 0) + n
        for name, n in self._rows.items():
            want = self._expected.get(name, n)
            if on_disk.get(name) != n or n != want:
                raise StoreError(
                    f"{self.level} {self.key}: table {name} holds {on_disk.get(name, 0)} rows "
                    f"on disk, {want} expected; nothing was committed"
                )
        return entries

    def abort(self) -> None:
        """Give up: this transaction's files are removed (unless it committed)."""
        for w in self._writers.values():
            with contextlib.suppress(Exception):  # best effort on the way out
                w.close()
        if not self._committed:
            with contextlib.suppress(Exception):  # recovery removes what this cannot
                files = [*self._staged.values(), *self._writers]
                self.folder.collect(self.level, self.key, None, files)
        self._release()

    def _release(self) -> None:
        self.folder.unlock(self._key_lock)
        self._key_lock = None


def _stray(files: list[Path], mine: str | None) -> list[Path]:
    """The files of an id that are not its committed version (``mine``: its token)."""
    return [f for f in files if f.name != f"part-{mine}.parquet"]


def _token(path: Path) -> str | None:
    m = DATA_FILE.fullmatch(path.name)
    return m.group(1) if m else None


def _crash_at(step: str) -> None:
    """Kill the process here, as SIGKILL would, when the crash tests ask for this step."""
    if os.environ.get(CRASH_ENV) == step:
        os._exit(137)
