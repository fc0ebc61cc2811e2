"""The store: a folder (or an object store prefix) of Parquet tables, read as Arrow or pandas,
with the one lookup of a run or an analysis ("the latest" everywhere). Writes go through
transactions (:mod:`attnstore.transaction`): a run or an analysis appears whole or not at all.

What is committed is read from the commit records alone: each names its id's files (path,
bytes, rows), so opening a store lists the primary tables' folders and reads each record once
(one small request each on an object store, all at once), and never lists a data folder or
reads a data file's footer. A store of a thousand runs opens in a thousand small reads.

Opening a store, and every read, changes nothing in it: what killed writers left is deleted by
the next writer of the same id, or by :meth:`Store.recover` when asked (``attnstore recover``).
Every commit record a read meets is checked (:func:`attnstore.transaction.parse_record`), and a
symbolic link met anywhere on the way to a file is refused, never followed or skipped.
"""

from __future__ import annotations

import errno
import json
import re
import time
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from attnstore.errors import NotFoundError, SchemaVersionError, StoreError, known
from attnstore.fs import FileSystem, filesystem_for
from attnstore.schema import (
    PRIMARY,
    SCHEMA_VERSION,
    TABLES,
    Table,
    _grain_repeats,
    with_later_columns,
)
from attnstore.transaction import (
    COMMIT_FILE,
    COMMIT_KEY,
    FileEntry,
    Folder,
    Record,
    Transaction,
    in_layout,
    parse_record,
)

STORE_FILE = "attnstore.json"
READ_ATTEMPTS = 5  # a read that races a commit's deletions reads the records again
# What making a store leaves in its folder before attnstore.json, when killed: a writability
# probe, a temporary attnstore.json. A folder holding only these is still an empty one.
_MAKING = re.compile(r"\.probe-[0-9a-f]{32}|\.attnstore\.json\.[0-9a-f]{32}\.tmp")


def check_store_place(location: str | Path) -> None:
    """StoreError unless a store may be made at ``location``: the one rule, which
    ``Store(location, create=True)`` applies and the command line checks before its work. Not
    the filesystem root, nor the home folder; and an existing folder (an object store prefix)
    only if it is a store already, or empty. A new folder is fine."""
    _check_place(*filesystem_for(location), str(location))


def _check_place(fs: FileSystem, root: PurePath, shown: str) -> None:
    fs.check_special(root, shown)
    if fs.exists(root / STORE_FILE):
        return
    entries = fs.entries(root, 20)
    if STORE_FILE in entries:  # another writer made the store since: a store now, not a stranger
        return
    others = [n for n in entries if not _MAKING.fullmatch(n)]
    if others:
        raise StoreError(
            f"store '{shown}' is a folder that holds other things ('{others[0]}') and no "
            f"{STORE_FILE}; attnstore makes a store only in a new or empty folder: give one, "
            f"e.g. --store {shown.rstrip('/')}/attnstore"
        )


def _text(values: list[str], type_: pa.DataType) -> pa.Array:
    """``values`` as an Arrow array of ``type_``; a string array is made from its buffers:
    ``pa.array`` first asks pyarrow's pandas shim whether a list is a pandas object, which
    imports pandas (a fifth of a second of every ``attnstore query``)."""
    if type_ != pa.string():
        return pa.array(values, type_)
    data = [v.encode() for v in values]
    offsets = [0]
    for d in data:
        offsets.append(offsets[-1] + len(d))
    return pa.StringArray.from_buffers(
        len(data), pa.py_buffer(array("i", offsets).tobytes()), pa.py_buffer(b"".join(data))
    )


def _equal(rows: pa.Table, filters: dict[str, str]) -> pa.Table:
    """The rows whose columns equal ``filters``' values, as slices of ``rows``."""
    if not filters:
        return rows
    keep = [
        i
        for i, row in enumerate(rows.select(list(filters)).to_pylist())
        if all(row[c] == v for c, v in filters.items())
    ]
    return pa.concat_tables([rows.slice(i, 1) for i in keep]) if keep else rows.slice(0, 0)


class Store:
    """A store: a folder, or an object store URL (``s3://bucket/prefix``). ``Store(location)``
    opens one; ``Store(location, create=True)`` makes it too."""

    def __init__(self, path: str | Path, create: bool = False) -> None:
        self.fs, self.root = filesystem_for(path)
        # How the store is named to users (messages, outputs): the folder or the URL given.
        self.path = self.fs.display(self.root)
        self._folder = Folder(self.root, self.fs)
        # each commit record read: its path -> (stamp, record, its bytes, its row or None)
        self._records_read: dict[PurePath, list[Any]] = {}
        self.fs.check_root(self.root, str(self.path))
        if create:
            self._create()
        self._check_version()

    # --- opening -----------------------------------------------------------------------

    def _create(self) -> None:
        _check_place(self.fs, self.root, str(self.path))
        try:
            self.fs.mkdir(self.root)
            self.fs.probe_writable(self.root)
        except OSError as e:
            raise StoreError(f"store path '{self.path}' is not writable: {e.strerror or e}") from e
        meta = self.root / STORE_FILE
        self.fs.create_only(meta, (json.dumps({"schema_version": SCHEMA_VERSION}) + "\n").encode())

    def _check_version(self) -> None:
        """The store file read (one request on an object store) and its version checked."""
        meta = self.root / STORE_FILE
        try:
            content = json.loads(self.fs.read_text(meta))
        except FileNotFoundError:
            there = self.fs.exists(self.root)
            hint = f"it has no {STORE_FILE}" if there else "it does not exist"
            raise StoreError(
                f"'{self.path}' is not an attnstore store ({hint}); 'attnstore extract "
                f"--store {self.path}' makes one"
            ) from None
        except (OSError, ValueError) as e:
            raise StoreError(f"'{self.fs.url(meta)}' is unreadable: {e}") from e
        version = content.get("schema_version") if isinstance(content, dict) else None
        if type(version) is not int:
            raise StoreError(
                f"'{self.fs.url(meta)}' holds {json.dumps(content)[:80]}; expected an object with "
                'an integer "schema_version", as {"schema_version": ' + str(SCHEMA_VERSION) + "}"
            )
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"store '{self.path}' has schema version {version}; this attnstore reads "
                f"version {SCHEMA_VERSION}: upgrade attnstore"
            )
        if version < SCHEMA_VERSION:
            raise SchemaVersionError(
                f"store '{self.path}' has schema version {version}; this attnstore reads "
                f"version {SCHEMA_VERSION}: run 'attnstore migrate {self.path}' (it rewrites the "
                "store in place, keeping every run and analysis id)"
            )

    def recover(self) -> int:
        """Delete what killed writers left in every id: data files no commit record names, and
        temporary files, of ids whose writer is gone (:meth:`attnstore.transaction.Folder.
        recover`). Run only when asked (``attnstore recover``); a writer does the same for the
        ids it writes. The store is verified first (:meth:`verify`): in a store that fails its
        checks nothing is deleted. How many files were deleted."""
        self.verify()
        return self._folder.recover({level: self.commits(level) for level in PRIMARY})

    # --- the commit records ------------------------------------------------------------

    def commits(self, level: str) -> dict[str, str]:
        """The committed ids of a level ('run', 'analysis', 'intervention'), each with the
        token of its files: what the commit records (``<primary>/<key>=<id>/commit.parquet``)
        say now."""
        return {key: r.token for key, r in self.records(level).items()}

    def records(self, level: str) -> dict[str, Record]:
        """The commit records of a level's ids as they are now, each checked
        (:func:`attnstore.transaction.parse_record`: a damaged one is a StoreError naming it).
        One listing of the primary table's folder; each record is read whole once per version
        of it (one request on an object store, all of them at once)."""
        return {key: got[1] for key, got in self._read_records(level).items()}

    def record(self, level: str, key: str) -> Record | None:
        """The commit record of one id as it is now (checked), None if it is not committed:
        one read, whatever the size of the store."""
        got = self._read_records(level, [key]).get(key)
        return None if got is None else got[1]

    def has(self, level: str, key: str) -> bool:
        """True if ``key`` is a committed id of ``level``: one read (:meth:`record`)."""
        return self.record(level, key) is not None

    def _read_records(self, level: str, keys: list[str] | None = None) -> dict[str, list[Any]]:
        """Each id's cache entry [stamp, record, bytes, row]: of every id (listed), or of
        ``keys`` alone (read now, not listed)."""
        t = TABLES[PRIMARY[level]]
        root = self.root / t.name
        self._folder.no_links(root)
        if keys is None:
            stamps = self.fs.stamps(root, "**/*.parquet")
            for f in stamps:
                self._check_place(t, f.relative_to(root))
        else:
            stamps = {self._folder.commit_path(level, k): None for k in keys}
            for f in stamps:
                self._folder.no_links(f.parent)
        stale = [
            f
            for f, stamp in stamps.items()
            if stamp is None or f not in self._records_read or self._records_read[f][0] != stamp
        ]
        got = self.fs.read_many(stale)
        for f in stale:
            if f not in got:
                self._records_read.pop(f, None)  # gone since it was listed
                continue
            key = f.parent.name.split("=", 1)[1]
            record = parse_record(got[f][0], self.fs.url(f), t, key)
            self._records_read[f] = [stamps[f], record, got[f][0], None]
        out = {}
        for f in stamps:
            if f in self._records_read:
                out[f.parent.name.split("=", 1)[1]] = self._records_read[f]
        return dict(sorted(out.items()))

    def _primary_rows(self, t: Table, keys: list[str] | None) -> pa.Table:
        """A primary table's rows (the records' own rows, already read), keys first."""
        key_name, key_type = t.partition[0]
        rows = []
        for key, entry in self._read_records(t.level, keys).items():
            if entry[3] is None:
                # ParquetFile, not read_table: pyarrow.dataset loads pandas (0.2 s of a query)
                data = pq.ParquetFile(pa.BufferReader(entry[2])).read()
                data = with_later_columns(t, data.replace_schema_metadata(None))
                data = data.select(t.schema.names)
                if data.schema != t.schema:  # cast only where needed: it loads pyarrow.compute
                    data = data.cast(t.schema)
                entry[3] = data.add_column(0, key_name, _text([key], key_type))
            rows.append(entry[3])
        return pa.concat_tables(rows) if rows else t.full_schema.empty_table()

    # --- the files of each table -------------------------------------------------------

    def files(self, table: str | None = None, keys: list[str] | None = None) -> list[Path]:
        """The committed Parquet files of a table (of every table when None), of every id or
        of ``keys`` alone: a commit record, or a file its record's manifest names. Each is
        checked on the way: no symbolic link on its path, and, where that costs no request
        (a local folder), the bytes its record says.

        A record written before manifests has its id's folders listed instead, and is read
        before the listing and again after: a commit (an ``--overwrite``) in between could
        otherwise pair the old record with a listing from which its files were already
        deleted."""
        return list(self.sizes(table, keys))

    def sizes(
        self, table: str | None = None, keys: list[str] | None = None
    ) -> dict[Path, int | None]:
        """:meth:`files`, each with its bytes as the commit records say, at no further cost:
        a data file's from its record's manifest, a commit record's from its own reading;
        None where no record says (a record written before manifests). For a reader that
        would otherwise ask each file's size (a request per file on an object store)."""
        names = [table] if table else list(TABLES)
        for name in names:
            if name not in TABLES:
                raise NotFoundError(f"unknown table '{name}'; known: {known(sorted(TABLES))}")
        out = {}
        for level in PRIMARY:  # each level's records read once, for all its tables
            level_tables = [TABLES[n] for n in names if TABLES[n].level == level]
            for f, entry in self._entries(level_tables, keys) if level_tables else []:
                read = self._records_read.get(f)
                out[f] = entry.bytes if entry else (len(read[2]) if read else None)
        return out

    def _entries(
        self, tables: list[Table], keys: list[str] | None
    ) -> list[tuple[PurePath, FileEntry | None]]:
        """The committed files of ``tables`` (of one level; of ``keys`` when given), checked
        (:meth:`files`), each with its manifest entry (None for a record without one)."""
        level = tables[0].level
        for attempt in range(READ_ATTEMPTS):
            records = self._select(level, keys)
            per_table = {t.name: self._committed(t, records) for t in tables}
            listed = any(r.files is None for r in records.values())
            data = any(t.name != PRIMARY[level] for t in tables)
            if not (listed and data) or self._select(level, keys) == records:
                try:
                    for t in tables:
                        self._check_files(t, per_table[t.name], records)
                    return [f for t in tables for f in per_table[t.name]]
                except FileNotFoundError:
                    if attempt == READ_ATTEMPTS - 1:
                        raise
            time.sleep(0.05 * (attempt + 1))  # a commit is under way: let it finish
        raise AssertionError("unreachable")

    def _select(self, level: str, keys: list[str] | None) -> dict[str, Record]:
        if keys is None:
            return self.records(level)
        return {k: got[1] for k, got in self._read_records(level, keys).items()}

    def _committed(
        self, t: Table, records: dict[str, Record]
    ) -> list[tuple[PurePath, FileEntry | None]]:
        """The files of table ``t`` that ``records`` commit."""
        if t.name == PRIMARY[t.level]:
            return [(self._folder.commit_path(t.level, key), None) for key in records]
        out = []
        for key, record in records.items():
            if record.files is not None:
                out += [
                    (self.root / e.path, e)
                    for e in record.files
                    if e.path.split("/", 1)[0] == t.name
                ]
                continue
            folder = self.root / t.name / f"{t.partition[0][0]}={key}"
            self._folder.no_links(folder)
            for f in self.fs.find(folder, "**/*.parquet"):
                self._check_place(t, f.relative_to(self.root / t.name))
                if f.name == f"part-{record.token}.parquet":
                    out.append((f, None))
        return out

    def _check_files(
        self, t: Table, files: list[tuple[PurePath, FileEntry | None]], records: dict
    ) -> None:
        """No link on the way to any of ``files``; each there with the bytes its manifest
        says, where the filesystem knows sizes for free. A file missing while its record is
        unchanged, or of other bytes, is a StoreError naming it and its record;
        FileNotFoundError when a commit replaced the record since (read again)."""
        sizes = self.fs.check_paths(self.root, [f for f, _ in files])
        for f, entry in files:
            if f not in sizes:
                self._missing(t, f, records)
            size = sizes[f]
            if entry is not None and size is not None and size != entry.bytes:
                raise self._changed(t, f, size, entry.bytes)

    def _key_of(self, t: Table, f: PurePath) -> str:
        return f.relative_to(self.root / t.name).parts[0].split("=", 1)[1]

    def _missing(self, t: Table, f: PurePath, records: dict[str, Record]) -> None:
        """A committed file that is not there: FileNotFoundError if its record changed since
        (an overwrite deleted it: read again), else a StoreError naming it."""
        key = self._key_of(t, f)
        if self.record(t.level, key) != records.get(key):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", self.fs.url(f))
        record = self.fs.url(self._folder.commit_path(t.level, key))
        raise StoreError(
            f"commit record '{record}' names '{self.fs.url(f)}', which is missing: the "
            f"{t.level} is damaged; restore the file, or move '{self.fs.url(Path(record).parent)}' "
            f"out of the store (then {t.level} {key} is gone and can be written again)"
        )

    def _changed(self, t: Table, f: PurePath, size: int, want: int) -> StoreError:
        key = self._key_of(t, f)
        record = self.fs.url(self._folder.commit_path(t.level, key))
        return StoreError(
            f"'{self.fs.url(f)}' holds {size} bytes, and its commit record '{record}' says "
            f"{want}: the file was changed or replaced after the commit; restore it, or move "
            f"'{self.fs.url(Path(record).parent)}' out of the store (then {t.level} {key} is "
            "gone and can be written again)"
        )

    def record_bytes(self, path: PurePath) -> bytes | None:
        """The bytes of the commit record ``path`` (as :meth:`files` gave it) as this store last
        read them, the version whose manifest :meth:`files` followed; None if it was not read."""
        read = self._records_read.get(path)
        return None if read is None else read[2]

    def check_bytes(self, path: PurePath, size: int) -> None:
        """StoreError if the committed file ``path`` (as :meth:`files` gave it) does not hold
        the ``size`` bytes its record's manifest says: for a reader that opens a file and
        learns its size (on an object store, where :meth:`files` cannot know it for free)."""
        t = TABLES[path.relative_to(self.root).parts[0]]
        if t.name == PRIMARY[t.level]:
            return
        record = self.record(t.level, self._key_of(t, path))
        want = {self.root / e.path: e.bytes for e in (record.files or ())} if record else {}
        if path in want and want[path] != size:
            raise self._changed(t, path, size, want[path])

    def _check_place(self, t: Table, rel: PurePath) -> None:
        if not in_layout(t, rel):
            name = COMMIT_FILE if t.name == PRIMARY[t.level] else "part-<token>.parquet"
            layout = "/".join([t.name, *(f"{k}=<{k}>" for k, _ in t.partition), name])
            raise StoreError(
                f"'{self.fs.url(self.root / t.name / rel)}' is not where attnstore keeps "
                f"{t.name} files ({layout}); move it out of the store"
            )

    # --- checking the whole store ------------------------------------------------------

    def verify(self, deep: bool = False) -> None:
        """Check the whole store (``attnstore verify``): every file of every table sits where
        the layout puts it, and every committed file, from its footer, is a readable Parquet
        file with its table's columns, written for the id and token its folder and name say,
        holding the bytes and rows its record's manifest says; for each id whose record counts
        its rows, every table holds exactly that many (a file that lost rows, or holds some
        twice, is caught here). ``deep`` also reads the grain columns of every file: no row
        repeats another's grain. The first failure is a StoreError naming the file. Only
        ``attnstore verify`` and ``attnstore recover`` pay this; readers and writers check
        only the files they touch."""
        for name, t in TABLES.items():
            root = self.root / name
            self._folder.no_links(root)
            for f in self.fs.stamps(root, "**/*"):  # files only: one listing
                self._check_place(t, f.relative_to(root))
        for level in PRIMARY:
            records = self.records(level)
            rows: dict[tuple[str, str], int] = {}
            replaced: set[str] = set()  # ids an overwrite committed while this read them
            for name, t in TABLES.items():
                if t.level != level or name == PRIMARY[level]:
                    continue
                files = self._committed(t, records)
                self.fs.check_paths(self.root, [f for f, _ in files])  # no link followed
                for f, entry in files:
                    key = self._key_of(t, f)
                    want = None if entry is None else entry.bytes
                    got = self._verify_file(t, f, key, records[key].token, want, deep)
                    if got is None:
                        if self.record(level, key) == records[key]:
                            self._missing(t, f, records)
                        replaced.add(key)
                        continue
                    n, _ = got
                    rows[(key, name)] = rows.get((key, name), 0) + n
            for key, record in records.items():
                if record.rows is None or key in replaced:
                    continue
                for name, want in record.rows.items():
                    if name != PRIMARY[level] and rows.get((key, name), 0) != want:
                        if self.record(level, key) != record:
                            break  # an overwrite committed since: its old files are gone
                        path = self._folder.commit_path(level, key)
                        raise StoreError(
                            f"table {name} of {level} {key} holds {rows.get((key, name), 0)} "
                            f"rows, and its commit record says {want}: a file of it was changed "
                            f"after the commit (rows lost or repeated); move "
                            f"'{self.fs.url(path.parent)}' out of the store (the {level} is then "
                            "gone and can be written again)"
                        )

    def _verify_file(
        self, t: Table, f: PurePath, key: str, token: str, want: int | None, deep: bool
    ) -> tuple[int, int] | None:
        """A committed file's rows and bytes, once checked (:meth:`verify`; ``want``: its
        bytes as its manifest says); None if gone."""
        url = self.fs.url(f)
        size = None
        try:
            with self.fs.arrow().open_input_file(str(f)) as fh:
                size = fh.size()
                footer = pq.read_metadata(fh)
                schema = footer.schema.to_arrow_schema()
                grain = [c for c in t.grain if c in t.schema.names]
                data = pq.read_table(fh, columns=grain) if deep and grain else None
        except FileNotFoundError:
            return None
        except (pa.ArrowException, OSError) as e:
            if want is not None and size is not None and size != want:
                raise self._changed(t, f, size, want) from e  # cut short, or grown
            raise StoreError(f"corrupted Parquet file '{url}': {e}") from e
        if not schema.remove_metadata().equals(t.schema):
            raise StoreError(
                f"Parquet file '{url}' has the columns {schema.names} "
                f"({', '.join(str(ty) for ty in schema.types)}); table {t.name} declares "
                f"{t.schema.names}: move it out of the store"
            )
        meta = schema.metadata or {}
        id_key = f"attnstore.{t.partition[0][0]}"
        said = (
            meta.get(id_key.encode(), b"").decode(errors="replace"),
            meta.get(COMMIT_KEY.encode(), b"").decode(errors="replace"),
        )
        if said != (key, token):
            raise StoreError(
                f"Parquet file '{url}' was written for {id_key} {said[0]!r:.40} with token "
                f"{said[1]!r:.40}, not where it lies ({key}, {token}): it was copied or moved "
                "here; move it out of the store"
            )
        if want is not None and size != want:
            raise self._changed(t, f, size, want)
        if data is not None and (repeats := _grain_repeats(data, data.column_names)):
            raise StoreError(
                f"Parquet file '{url}': {repeats} rows repeat the grain of table {t.name} "
                f"({', '.join(t.grain)}): move it out of the store"
            )
        return footer.num_rows, size

    def keys(self, level: str) -> list[str]:
        """Committed ids of a level: 'run', 'analysis' or 'intervention'."""
        return list(self.commits(level))

    def read(
        self, name: str, columns: list[str] | None = None, where: Any = None, **filters: Any
    ) -> pa.Table:
        """One table as Arrow, committed rows only: ``columns`` to read, ``where`` a pyarrow
        compute expression, and ``column=value`` equality filters."""
        t = TABLES.get(name)
        if t is None:
            raise NotFoundError(f"unknown table '{name}'; known: {known(sorted(TABLES))}")
        schema = t.full_schema
        for col in [*filters, *(columns or [])]:
            if col not in schema.names:
                raise NotFoundError(
                    f"table {name} has no column '{col}'; known: {known(schema.names)}"
                )
        # An id asked for by name: its record alone is read, whatever the store's size.
        key = filters.get(t.partition[0][0])
        keys = [key] if isinstance(key, str) else None
        texts = all(
            isinstance(v, str) and schema.field(c).type == pa.string() for c, v in filters.items()
        )
        if t.name == PRIMARY[t.level] and where is None and texts:
            # the lookups (Store.ids, run, analysis): filtered here, without pyarrow.compute,
            # whose import is 30 ms of every attnstore query
            rows = _equal(self._primary_rows(t, keys), filters)
            return rows if columns is None else rows.select(columns)
        import pyarrow.compute as pc

        expr = None
        for col, value in filters.items():
            term = pc.field(col) == value
            expr = term if expr is None else expr & term
        if where is not None:
            expr = where if expr is None else expr & where
        if t.name == PRIMARY[t.level]:  # the records' own rows, read with the records
            rows = self._primary_rows(t, keys)
            rows = rows if expr is None else rows.filter(expr)
            return rows if columns is None else rows.select(columns)
        for attempt in range(READ_ATTEMPTS):
            try:
                return self.dataset(name, keys).to_table(columns=columns, filter=expr)
            except FileNotFoundError:
                # A commit (an --overwrite) replaced files between listing and reading:
                # read the records again; the old version or the new one is read.
                if attempt == READ_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
            except (pa.ArrowException, OSError) as e:
                raise self._unreadable(t, keys, e) from e
        raise AssertionError("unreachable")

    def _unreadable(self, t: Table, keys: list[str] | None, e: Exception) -> StoreError:
        """What made a table unreadable, in one line: a committed file whose bytes are not its
        manifest's (sizes asked only now, on the way to this error), else the reader's
        error."""
        entries = [(f, entry) for f, entry in self._entries([t], keys) if entry is not None]
        infos = self.fs.arrow().get_file_info([str(f) for f, _ in entries])
        for (f, entry), info in zip(entries, infos, strict=True):
            if info.size is not None and info.size != entry.bytes:
                return self._changed(t, f, info.size, entry.bytes)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return StoreError(f"table {t.name} of '{self.path}' is unreadable: {first}")

    def dataset(self, name: str, keys: list[str] | None = None):
        """A pyarrow dataset of a table's committed files as they are now (of ``keys``' ids
        alone when given), each file's size given from its record's manifest (no request to
        learn it). The partition keys come from the folder names *below* the table's own
        folder, never from the path above the store, and the store's path is never read as a
        glob pattern."""
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        t = TABLES[name]
        fmt = ds.ParquetFileFormat()
        arrow = self.fs.arrow()
        fragments = []
        for f, entry in self._entries([t], keys):
            parts = f.relative_to(self.root / name).parts
            expr = None
            for (col, ty), part in zip(t.partition, parts, strict=False):
                term = pc.field(col) == pa.scalar(part.split("=", 1)[1]).cast(ty)
                expr = term if expr is None else expr & term
            fragments.append(
                fmt.make_fragment(
                    str(f),
                    filesystem=arrow,
                    partition_expression=expr,
                    file_size=None if entry is None else entry.bytes,
                )
            )
        return ds.FileSystemDataset(fragments, t.full_schema, fmt, arrow)

    def prompts(self, run: dict[str, Any]):
        """A run's prompts from ``inputs``, given its runs row: x of shape (n_samples,
        n_points, n_dims) float32 and y of shape (n_samples, n_points) int8, both ±1. A run
        whose inputs are not all there raises NotFoundError."""
        import numpy as np

        t = self.read("inputs", run_id=run["run_id"]).sort_by(
            [("sample", "ascending"), ("point", "ascending")]
        )
        S, N, D = run["n_samples"], run["n_points"], run["n_dims"]
        if t.num_rows != S * N:
            raise NotFoundError(
                f"run {run['run_id']} has {t.num_rows} prompt points in table inputs, "
                f"{S * N} expected ({S} samples x {N} points)"
            )
        x = t.column("x").combine_chunks().flatten().to_numpy().astype(np.float32)
        return x.reshape(S, N, D), t.column("y").to_numpy().astype(np.int8).reshape(S, N)

    def df(self, name: str, columns: list[str] | None = None, where: Any = None, **filters: Any):
        """:meth:`read` as a pandas DataFrame."""
        return self.read(name, columns, where, **filters).to_pandas()

    def runs(self):
        """The runs table as pandas, newest last."""
        return self._newest_last("runs")

    def analyses(self):
        """The analyses table as pandas, newest last."""
        return self._newest_last("analyses")

    def _newest_last(self, name: str):
        key = TABLES[name].partition[0][0]
        return self.df(name).sort_values(["created_at", key], ignore_index=True)

    # --- the one lookup of a run or an analysis ---------------------------------------------

    def ids(self, level: str, **equal: Any) -> list[str]:
        """Committed run ids (level 'run') or analysis ids (level 'analysis'), newest first;
        ``equal`` filters the primary table (``run_id=``, ``view=``).

        This order defines "the latest" everywhere: the newest ``created_at``, the greater id
        on a tie. The SQL view ``latest_analyses`` (``queries/views/``) orders the same way,
        and a test holds the two to each other."""
        primary = TABLES[PRIMARY[level]]
        key = primary.partition[0][0]
        rows = self.read(primary.name, [key, "created_at"], **equal)
        # sorted here, the times as their integers: Arrow's sort loads pyarrow.compute, and
        # timestamps as Python objects load pandas (30 and 200 ms of every attnstore query)
        times = [
            x for c in rows.column("created_at").chunks for x in c.view(pa.int64()).to_pylist()
        ]
        ids = rows.column(key).to_pylist()
        return [k for _, k in sorted(zip(times, ids, strict=True), reverse=True)]

    def run(self, run_id: str | None = None) -> dict[str, Any]:
        """The runs row of ``run_id`` as a dict, or of the latest run when None."""
        if run_id is None:
            ids = self.ids("run")
            if not ids:
                raise NotFoundError(
                    f"store '{self.path}' holds no run; 'attnstore extract --store {self.path}' "
                    "makes one"
                )
            run_id = ids[0]
        rows = self.read("runs", run_id=run_id).to_pylist()
        if not rows:
            raise NotFoundError(f"unknown run '{run_id}'; in the store: {known(self.keys('run'))}")
        return rows[0]

    def analysis(
        self, analysis_id: str | None = None, run_id: str | None = None, view: str | None = None
    ) -> dict[str, Any]:
        """The analyses row of ``analysis_id`` as a dict; when None, the latest analysis of
        ``run_id`` (the latest run when None too), of ``view`` when given."""
        if analysis_id is None:
            run_id = self.run(run_id)["run_id"]
            equal = {"run_id": run_id} | ({} if view is None else {"view": view})
            ids = self.ids("analysis", **equal)
            if not ids:
                of_view = "" if view is None else f" of view '{view}'"
                flag = "" if view is None else f" --view {view}"
                raise NotFoundError(
                    f"run {run_id} has no analysis{of_view}; 'attnstore analyze --store "
                    f"{self.path} --run {run_id}{flag}' makes one"
                )
            analysis_id = ids[0]
        rows = self.read("analyses", analysis_id=analysis_id).to_pylist()
        if not rows:
            raise NotFoundError(
                f"unknown analysis '{analysis_id}'; in the store: {known(self.keys('analysis'))}"
            )
        row = rows[0]
        if run_id is not None and row["run_id"] != run_id:
            theirs = self.read("analyses", ["analysis_id", "view"], run_id=run_id).to_pylist()
            listed = [f"{r['analysis_id']} ({r['view']})" for r in theirs]
            raise NotFoundError(
                f"analysis '{analysis_id}' not in run {run_id}; its analyses: {known(listed)}"
            )
        return row

    # --- writing -----------------------------------------------------------------------

    @contextmanager
    def transaction(self, level: str, key: str, overwrite: bool = False) -> Iterator[Transaction]:
        """Write one run or analysis; it becomes visible, whole, when the block exits cleanly."""
        txn = Transaction(self._folder, level, key, overwrite)
        try:
            yield txn
            txn.commit()
        except BaseException as e:
            txn.abort()
            if isinstance(e, OSError) and (
                e.errno == errno.ENOSPC or "no space left" in str(e).lower()
            ):
                raise StoreError(
                    f"no space left in '{self.path}' while writing {level} {key}; its staged "
                    "files were removed and nothing was committed"
                ) from e
            raise


def open_store(store: str | Path | Store) -> Store:
    """``store`` itself if it is a :class:`Store`, else the store at that path: the one way a
    caller's store argument becomes a Store."""
    return store if isinstance(store, Store) else Store(store)
