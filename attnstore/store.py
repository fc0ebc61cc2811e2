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
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from attnstore.errors import NotFoundError, SchemaVersionError, StoreError, known
from attnstore.fs import LocalFS
from attnstore.schema import SCHEMA_VERSION, TABLES, Table

STORE_FILE = "attnstore.json"
STAGING = ".staging"
LOCKS = ".locks"
COMMIT = "COMMIT"
PRIMARY = {"run": "runs", "analysis": "analyses"}
CRASH_ENV = "ATTNSTORE_CRASH_AFTER_MOVES"
ROW_GROUP_ROWS = 1 << 20  # upper bound; writers pass whole batches as row groups


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
        self.fs = LocalFS()
        meta = self.path / STORE_FILE
        if create:
            self._create()
        elif not self.fs.exists(meta):
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
            self.fs.mkdir(self.path)
            self.fs.probe_writable(self.path)
        except OSError as e:
            raise StoreError(f"store path '{self.path}' is not writable: {e.strerror or e}") from e
        meta = self.path / STORE_FILE
        if not self.fs.exists(meta):
            self.fs.write_atomic(meta, json.dumps({"schema_version": SCHEMA_VERSION}) + "\n")

    def _check_version(self) -> None:
        try:
            version = json.loads(self.fs.read_text(self.path / STORE_FILE))["schema_version"]
        except (OSError, ValueError, KeyError) as e:
            raise StoreError(f"'{self.path / STORE_FILE}' is unreadable: {e}") from e
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"store '{self.path}' has schema version {version}; this attnstore reads "
                f"versions up to {SCHEMA_VERSION}: upgrade attnstore"
            )

    def recover(self) -> None:
        """Finish decided transactions and remove abandoned ones (see the module docstring)."""
        for txn in self.fs.listdir(self.path / STAGING):
            lock = self.fs.try_lock(txn / "lock")
            if lock is None:
                continue  # a live writer holds it
            try:
                if self.fs.exists(txn / COMMIT):
                    self._apply_moves(json.loads(self.fs.read_text(txn / COMMIT)))
                self.fs.remove_tree(txn)
            finally:
                self.fs.unlock(lock)

    def _apply_moves(
        self, moves: list[dict[str, str | None]], crash_after: int | None = None
    ) -> None:
        """Rename staged folders into place; an existing destination goes to the trash first.
        Safe to repeat after a crash at any point. ``crash_after`` kills the process after that
        many moves, as SIGKILL would (tests only)."""
        for i, m in enumerate(moves):
            if i == crash_after:
                os._exit(137)
            dst = self.path / m["dst"]
            if m["src"] is None:
                self._discard(dst)
                continue
            src = self.path / m["src"]
            if not self.fs.exists(src):
                continue  # done before the crash
            self._discard(dst)
            self.fs.replace(src, dst)

    def _discard(self, path: Path) -> None:
        if self.fs.exists(path):
            trash = self.path / STAGING / f"trash-{uuid.uuid4().hex}"
            self.fs.replace(path, trash)
            self.fs.remove_tree(trash)

    # --- reading -----------------------------------------------------------------------

    def files(self, table: str | None = None) -> list[Path]:
        names = [table] if table else list(TABLES)
        return [p for n in names for p in self.fs.find(self.path / n, "**/*.parquet")]

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
        folders = self.fs.find(self.path / primary.name, f"{key}=*")
        return sorted(p.name.split("=", 1)[1] for p in folders if self.fs.is_dir(p))

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
            filesystem=self.fs.arrow(),
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
        ordered = rows.sort_by([("created_at", "descending"), (key, "descending")])
        return ordered.column(key).to_pylist()

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
        fs = self.fs = store.fs
        locks = store.path / LOCKS
        fs.mkdir(locks)
        self._key_lock = fs.try_lock(locks / f"{level}-{key}.lock")
        if self._key_lock is None:
            raise StoreError(f"{level} {key} is being written by another process right now")
        self.dir = store.path / STAGING / f"{level}-{key}-{uuid.uuid4().hex[:8]}"
        fs.mkdir(self.dir)
        self._dir_lock = fs.try_lock(self.dir / "lock")
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
            self.fs.mkdir(path.parent)
            meta = {
                "attnstore.schema_version": str(SCHEMA_VERSION),
                "attnstore.table": name,
                f"attnstore.{t.partition[0][0]}": self.key,
            }
            writer = pq.ParquetWriter(
                str(path),
                t.schema.with_metadata(meta),
                filesystem=self.fs.arrow(),
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
        self.fs.write_atomic(self.dir / COMMIT, json.dumps(moves))
        crash = os.environ.get(CRASH_ENV)  # fault injection for the crash tests only
        self.store._apply_moves(moves, crash_after=int(crash) if crash else None)
        self._release(remove=True)

    def abort(self) -> None:
        for w in self._writers.values():
            with contextlib.suppress(Exception):  # best effort on the way out
                w.close()
        self._release(remove=True)

    def _release(self, remove: bool) -> None:
        if remove:
            self.fs.remove_tree(self.dir)
        for lock in (self._dir_lock, self._key_lock):
            if lock is not None:
                self.fs.unlock(lock)
        self._dir_lock = self._key_lock = None


def open_store(store: str | Path | Store) -> Store:
    """``store`` itself if it is a :class:`Store`, else the store at that path: the one way a
    caller's store argument becomes a Store."""
    return store if isinstance(store, Store) else Store(store)
