"""The store: a folder of Parquet tables, written in all-or-nothing transactions.

Writing a run (or an analysis) happens in a *transaction*:

1. every file is written under ``STORE/.staging/<txn>/``, invisible to any reader's glob;
2. ``COMMIT`` (a JSON list of folder moves) is written atomically into the staging folder;
   from that instant the transaction is decided;
3. the folders are renamed into place, the primary table (``runs`` or ``analyses``) last, and
   the staging folder removed.

A process killed before step 2 leaves only staging files, removed by the next writer or reader
that opens the store; one killed during step 3 is *rolled forward* by the next one (every move
is idempotent). The views of :func:`connect` only show rows whose run (or analysis) is in the
primary table, so even a reader that arrives during step 3 sees a run whole or not at all.
Each transaction holds an exclusive ``flock`` on its run or analysis id, so two processes can
write different runs into one store at once, and never the same one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from attnstore.errors import NotFoundError, SchemaVersionError, StoreError, known
from attnstore.schema import SCHEMA_VERSION, TABLES, Table

STORE_FILE = "attnstore.json"
STAGING = ".staging"
LOCKS = ".locks"
COMMIT = "COMMIT"
PRIMARY = {"run": "runs", "analysis": "analyses"}
CRASH_ENV = "ATTNSTORE_CRASH_AFTER_MOVES"
ROW_GROUP_ROWS = 1 << 20  # upper bound; writers pass whole batches as row groups
_DUCKDB_TYPES = {pa.string(): "VARCHAR", pa.int16(): "SMALLINT"}


def _partition_dir(root: Path, table: Table, values: dict[str, Any]) -> Path:
    path = root / table.name
    for key, _ in table.partition:
        if key not in values:
            raise StoreError(f"table {table.name}: partition key {key} not given")
        path = path / f"{key}={values[key]}"
    return path


class Store:
    """A store folder. ``Store(path)`` opens one; ``Store(path, create=True)`` makes it too."""

    def __init__(self, path: str | Path, create: bool = False) -> None:
        self.path = Path(path)
        meta = self.path / STORE_FILE
        if create:
            self._create()
        elif not meta.exists():
            hint = "it does not exist" if not self.path.exists() else f"it has no {STORE_FILE}"
            raise StoreError(
                f"'{self.path}' is not an attnstore store ({hint}); 'attnstore extract "
                f"--store {self.path}' makes one"
            )
        self._check_version()
        if os.access(self.path, os.W_OK):
            self.recover()

    # --- opening -----------------------------------------------------------------------

    def _create(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".probe-{uuid.uuid4().hex}"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise StoreError(f"store path '{self.path}' is not writable: {e.strerror or e}") from e
        meta = self.path / STORE_FILE
        if not meta.exists():
            _atomic_write(meta, json.dumps({"schema_version": SCHEMA_VERSION}) + "\n")

    def _check_version(self) -> None:
        try:
            version = json.loads((self.path / STORE_FILE).read_text())["schema_version"]
        except (OSError, ValueError, KeyError) as e:
            raise StoreError(f"'{self.path / STORE_FILE}' is unreadable: {e}") from e
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"store '{self.path}' has schema version {version}; this attnstore reads "
                f"versions up to {SCHEMA_VERSION}: upgrade attnstore"
            )

    def recover(self) -> None:
        """Finish decided transactions and remove abandoned ones (see the module docstring)."""
        staging = self.path / STAGING
        if not staging.exists():
            return
        for txn in sorted(staging.iterdir()):
            lock = _try_lock(txn / "lock")
            if lock is None:
                continue  # a live writer holds it
            try:
                if (txn / COMMIT).exists():
                    _apply_moves(self.path, json.loads((txn / COMMIT).read_text()))
                shutil.rmtree(txn, ignore_errors=True)
            finally:
                os.close(lock)

    # --- reading -----------------------------------------------------------------------

    def files(self, table: str | None = None) -> list[Path]:
        names = [table] if table else list(TABLES)
        return sorted(p for n in names for p in (self.path / n).glob("**/*.parquet"))

    def verify(self) -> None:
        """Read every file's footer; a corrupted file raises StoreError naming it."""
        for f in self.files():
            try:
                pq.read_metadata(f)
            except (pa.ArrowException, OSError) as e:
                raise StoreError(f"corrupted Parquet file '{f}': {e}") from e

    def keys(self, level: str) -> list[str]:
        """Committed run ids (level 'run') or analysis ids (level 'analysis')."""
        primary = TABLES[PRIMARY[level]]
        key = primary.partition[0][0]
        root = self.path / primary.name
        return sorted(p.name.split("=", 1)[1] for p in root.glob(f"{key}=*") if p.is_dir())

    def read(
        self, name: str, columns: list[str] | None = None, where: Any = None, **filters: Any
    ) -> pa.Table:
        """One table as Arrow, committed rows only: ``columns`` to read, ``where`` a pyarrow
        compute expression, and ``column=value`` equality filters."""
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        t = TABLES.get(name)
        if t is None:
            raise NotFoundError(f"unknown table '{name}'; known: {known(sorted(TABLES))}")
        schema = pa.schema([pa.field(k, ty) for k, ty in t.partition] + list(t.schema))
        for col in [*filters, *(columns or [])]:
            if col not in schema.names:
                raise NotFoundError(
                    f"table {name} has no column '{col}'; known: {known(schema.names)}"
                )
        files = self.files(name)
        if not files:
            return schema.empty_table().select(columns or schema.names)
        part = ds.partitioning(pa.schema(list(t.partition)), flavor="hive")
        data = ds.dataset(
            [str(f) for f in files],
            partitioning=part,
            partition_base_dir=str(self.path / name),
            schema=schema,
        )
        key = t.partition[0][0]
        expr = pc.field(key).isin(self.keys(t.level))
        for col, value in filters.items():
            expr = expr & (pc.field(col) == value)
        if where is not None:
            expr = expr & where
        return data.to_table(columns=columns, filter=expr)

    def df(self, name: str, columns: list[str] | None = None, where: Any = None, **filters: Any):
        """:meth:`read` as a pandas DataFrame."""
        return self.read(name, columns, where, **filters).to_pandas()

    def runs(self):
        """The runs table as pandas, newest last."""
        return self.df("runs").sort_values("created_at", ignore_index=True)

    def analyses(self):
        """The analyses table as pandas, newest last."""
        return self.df("analyses").sort_values("created_at", ignore_index=True)

    # --- writing -----------------------------------------------------------------------

    @contextmanager
    def transaction(self, level: str, key: str, overwrite: bool = False) -> Iterator[Transaction]:
        """Write one run or analysis; it becomes visible, whole, when the block exits cleanly."""
        txn = Transaction(self, level, key, overwrite)
        try:
            yield txn
        except BaseException:
            txn.abort()
            raise
        txn.commit()


class Transaction:
    """Staged writes of one run or analysis; see :meth:`Store.transaction`."""

    def __init__(self, store: Store, level: str, key: str, overwrite: bool) -> None:
        self.store, self.level, self.key, self.overwrite = store, level, key, overwrite
        locks = store.path / LOCKS
        locks.mkdir(exist_ok=True)
        self._key_lock = _try_lock(locks / f"{level}-{key}.lock")
        if self._key_lock is None:
            raise StoreError(f"{level} {key} is being written by another process right now")
        self.dir = store.path / STAGING / f"{level}-{key}-{uuid.uuid4().hex[:8]}"
        self.dir.mkdir(parents=True)
        self._dir_lock = _try_lock(self.dir / "lock")
        self._writers: dict[Path, pq.ParquetWriter] = {}
        self._tables: set[str] = set()

    def write(self, name: str, data: pa.Table, **partition: Any) -> None:
        """Append ``data`` as one row group to ``name`` (partition values beyond the key)."""
        t = TABLES[name]
        if t.level != self.level:
            raise StoreError(f"table {name} belongs to a {t.level}, not a {self.level}")
        data = t.check(data)
        path = _partition_dir(self.dir, t, {t.partition[0][0]: self.key, **partition})
        path = path / "part-0.parquet"
        writer = self._writers.get(path)
        if writer is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            meta = {
                "attnstore.schema_version": str(SCHEMA_VERSION),
                "attnstore.table": name,
                f"attnstore.{t.partition[0][0]}": self.key,
            }
            writer = pq.ParquetWriter(
                path,
                t.schema.with_metadata(meta),
                compression="zstd",
                write_statistics=True,
                use_dictionary=True,
            )
            self._writers[path] = writer
        writer.write_table(data, row_group_size=ROW_GROUP_ROWS)
        self._tables.add(name)

    def commit(self) -> None:
        for w in self._writers.values():
            w.close()
        primary = PRIMARY[self.level]
        level_tables = [n for n, t in TABLES.items() if t.level == self.level]
        missing = [n for n in level_tables if n not in self._tables]
        if missing:
            raise StoreError(f"{self.level} {self.key}: no rows written to {', '.join(missing)}")
        key_dir = f"{TABLES[primary].partition[0][0]}={self.key}"
        order = sorted(n for n in level_tables if n != primary)
        # The old primary row goes first (the old version disappears whole), the new one last.
        moves = [{"src": None, "dst": f"{primary}/{key_dir}"}] if self.overwrite else []
        moves += [
            {"src": f"{STAGING}/{self.dir.name}/{n}/{key_dir}", "dst": f"{n}/{key_dir}"}
            for n in [*order, primary]
        ]
        _atomic_write(self.dir / COMMIT, json.dumps(moves))
        crash = os.environ.get(CRASH_ENV)  # fault injection for the crash tests only
        _apply_moves(self.store.path, moves, crash_after=int(crash) if crash else None)
        self._release(remove=True)

    def abort(self) -> None:
        for w in self._writers.values():
            with contextlib.suppress(Exception):  # best effort on the way out
                w.close()
        self._release(remove=True)

    def _release(self, remove: bool) -> None:
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)
        for fd in (self._dir_lock, self._key_lock):
            if fd is not None:
                os.close(fd)
        self._dir_lock = self._key_lock = None


def _apply_moves(
    root: Path, moves: list[dict[str, str | None]], crash_after: int | None = None
) -> None:
    """Rename staged folders into place; an existing destination goes to the trash first.
    Safe to repeat after a crash at any point. ``crash_after`` kills the process after that
    many moves, as SIGKILL would (tests only)."""
    for i, m in enumerate(moves):
        if i == crash_after:
            os._exit(137)
        dst = root / m["dst"]
        if m["src"] is None:
            _discard(root, dst)
            continue
        src = root / m["src"]
        if not src.exists():
            continue  # done before the crash
        _discard(root, dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)


def _discard(root: Path, path: Path) -> None:
    if path.exists():
        trash = root / STAGING / f"trash-{uuid.uuid4().hex}"
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)


def _try_lock(path: Path) -> int | None:
    """An exclusive non-blocking flock on ``path`` (created if need be), or None if held."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:
        return None  # its folder went away under us: someone else finished it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# --- DuckDB ----------------------------------------------------------------------------------


def connect(store: str | Path | Store, verify: bool = True):
    """A DuckDB connection with one view per table (same names), committed rows only.

    With ``verify``, every file's footer is read first, so a corrupted file is named in a
    StoreError rather than surfacing in the middle of a query.
    """
    import duckdb

    from attnstore.queries import get_query

    s = store if isinstance(store, Store) else Store(store)
    if verify:
        s.verify()
    con = duckdb.connect()
    for name, t in TABLES.items():
        key = t.partition[0][0]
        primary = PRIMARY[t.level]
        if s.files(name):
            glob = _sql_str(str(s.path / name) + "/**/*.parquet")
            types = ", ".join(f"'{k}': {_DUCKDB_TYPES[ty]}" for k, ty in t.partition)
            source = f"read_parquet({glob}, hive_partitioning = true, hive_types = {{{types}}})"
        else:
            empty = pa.schema([pa.field(k, ty) for k, ty in t.partition] + list(t.schema))
            con.register(f"__empty_{name}", empty.empty_table())
            source = f"__empty_{name}"
        cols = ", ".join(f'"{c}"' for c in t.columns)
        if name == primary:
            con.execute(f"create view {name} as select {cols} from {source}")
        else:
            con.execute(
                f"create view {name} as select {cols} from {source} "
                f"where {key} in (select {key} from {primary})"
            )
    con.execute(f"create view head_summary as {get_query('head_summary').sql}")
    return con


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
