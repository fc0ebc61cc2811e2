"""The store: a folder of Parquet tables, written in all-or-nothing transactions.

Writing a run (or an analysis) happens in a *transaction*:

1. every file is written under ``STORE/.staging/<txn>/``, invisible to any reader's glob;
2. ``COMMIT`` (a JSON list of folder moves) is written atomically into the staging folder;
   from that instant the transaction is decided;
3. the folders are renamed into place, the primary table (``runs`` or ``analyses``) last, and
   the staging folder removed.

Each transaction holds an exclusive lock (``flock``) on its run or analysis id,
``.locks/<level>-<id>.lock``, from *before* its staging folder exists until after that folder
is gone; so two processes can write different runs into one store at once, never the same one,
and a staging folder whose id lock is free provably has no live owner.

A process killed before step 2 leaves only staging files, removed by the next writer or reader
that opens the store (once it holds the id lock); one killed during step 3 is *rolled forward*
by the next one. Every step of roll-forward is idempotent: a move whose source is gone is done,
and once the primary folder has left staging (the last move) the whole commit is done, so an
``--overwrite`` that dies after its last rename keeps the new run. The views of
:func:`attnstore.connect` only show rows whose run (or analysis) is in the primary table, so a
reader that arrives during step 3 sees a run whole or not at all.

Recovery only ever touches the store's own layout: ``.staging`` and ``.locks`` must be real
folders (never followed links), a transaction folder must be named ``<level>-<id>-<hex>``, and
every move its ``COMMIT`` lists must be one of the moves that transaction can make; anything
else is refused with a StoreError naming it, and nothing is touched.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import time
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
READ_ATTEMPTS = 5  # a read that races a commit's renames lists the files again
_ID = re.compile(r"[0-9A-Za-z_]{1,64}")  # a run or analysis id: one path segment, no dots
_TXN = re.compile(r"(run|analysis)-([0-9A-Za-z_]{1,64})-[0-9a-f]{8}")
_TRASH = re.compile(r"trash-[0-9a-f]{32}")


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
        if not str(path).strip():
            raise StoreError("the store path is empty; give a folder, e.g. --store store/")
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
        meta = self.path / STORE_FILE
        try:
            content = json.loads(self.fs.read_text(meta))
        except (OSError, ValueError) as e:
            raise StoreError(f"'{meta}' is unreadable: {e}") from e
        version = content.get("schema_version") if isinstance(content, dict) else None
        if type(version) is not int:
            raise StoreError(
                f"'{meta}' holds {json.dumps(content)[:80]}; expected an object with an integer "
                '"schema_version", as {"schema_version": ' + str(SCHEMA_VERSION) + "}"
            )
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"store '{self.path}' has schema version {version}; this attnstore reads "
                f"versions up to {SCHEMA_VERSION}: upgrade attnstore"
            )

    def recover(self) -> None:
        """Finish decided transactions and remove abandoned ones (see the module docstring)."""
        staging = self.path / STAGING
        self._no_links(staging)
        for entry in self.fs.listdir(staging):
            if self.fs.is_link(entry):
                raise StoreError(
                    f"'{entry}' is a symbolic link; attnstore never follows links inside a store: "
                    "remove it"
                )
            if _TRASH.fullmatch(entry.name):
                self.fs.remove_tree(entry)  # an old folder a commit was throwing away
                continue
            m = _TXN.fullmatch(entry.name)
            if m is None or not self.fs.is_dir(entry):
                continue  # not a transaction of attnstore's (e.g. .DS_Store): left alone
            lock = self._lock_id(m.group(1), m.group(2))
            if lock is None:
                continue  # its writer is alive
            try:
                if self.fs.exists(entry / COMMIT):
                    moves = self._checked_moves(entry, m.group(1), m.group(2))
                    self._apply_moves(moves)
                self.fs.remove_tree(entry)
            finally:
                self.fs.unlock(lock)

    def _no_links(self, *paths: Path) -> None:
        """Refuse paths inside the store that are, or pass through, a symbolic link."""
        for path in paths:
            part = self.path
            for name in path.relative_to(self.path).parts:
                part = part / name
                if self.fs.is_link(part):
                    raise StoreError(
                        f"'{part}' is a symbolic link; attnstore never follows links inside a "
                        "store: replace it with a folder"
                    )

    def _lock_id(self, level: str, key: str) -> int | None:
        """The exclusive lock on a run or analysis id, or None if another process holds it."""
        locks = self.path / LOCKS
        self._no_links(locks)
        self.fs.mkdir(locks)
        path = locks / f"{level}-{key}.lock"
        try:
            return self.fs.try_lock(path)
        except OSError as e:  # e.g. a link planted where the lock file goes
            raise StoreError(f"cannot lock '{path}': {e.strerror or e}") from e

    def _checked_moves(self, txn: Path, level: str, key: str) -> list[dict[str, str | None]]:
        """The moves a transaction's COMMIT lists, each checked to be one that transaction can
        make (into its own id's folders, from its own staging folder)."""
        primary = PRIMARY[level]
        key_dir = f"{TABLES[primary].partition[0][0]}={key}"
        allowed = {(None, f"{primary}/{key_dir}")} | {
            (f"{STAGING}/{txn.name}/{n}/{key_dir}", f"{n}/{key_dir}")
            for n, t in TABLES.items()
            if t.level == level
        }
        bad = f"'{txn / COMMIT}' is not a commit attnstore wrote"
        try:
            moves = json.loads(self.fs.read_text(txn / COMMIT))
            pairs = [(m["src"], m["dst"]) for m in moves]
        except (ValueError, TypeError, KeyError) as e:
            raise StoreError(f"{bad} ({e}); remove that folder by hand") from e
        for pair in pairs:
            if pair not in allowed:
                raise StoreError(
                    f"{bad}: it moves {pair[0]} to {pair[1]}, outside {level} {key}'s folders; "
                    "nothing was touched: remove that folder by hand"
                )
        if not pairs or pairs[-1] != (
            f"{STAGING}/{txn.name}/{primary}/{key_dir}",
            primary + "/" + key_dir,
        ):
            raise StoreError(f"{bad}: its last move is not the {primary} folder; remove it by hand")
        for src, dst in pairs:
            self._no_links(self.path / dst, *([self.path / src] if src else []))
        return [{"src": src, "dst": dst} for src, dst in pairs]

    def _apply_moves(
        self, moves: list[dict[str, str | None]], crash_after: int | None = None
    ) -> None:
        """Rename staged folders into place; an existing destination goes to the trash first.
        Idempotent: a move whose source is gone is done, and once the last move's source (the
        primary folder) is gone, the whole commit is (this keeps an overwrite's new primary
        row from being thrown away as "the old one"). ``crash_after`` kills the process after
        that many moves, as SIGKILL would (tests only)."""
        if not self.fs.exists(self.path / moves[-1]["src"]):
            return
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
        if crash_after == len(moves):
            os._exit(137)  # every move done, the staging folder not yet removed

    def _discard(self, path: Path) -> None:
        if self.fs.exists(path):
            trash = self.path / STAGING / f"trash-{uuid.uuid4().hex}"
            self.fs.replace(path, trash)
            self.fs.remove_tree(trash)

    # --- reading -----------------------------------------------------------------------

    def files(self, table: str | None = None) -> list[Path]:
        """The Parquet files of a table (of every table when None), each checked to sit where
        the layout puts it: ``<table>/<key>=<value>[/layer=<n>]/<name>.parquet``."""
        out = []
        for name in [table] if table else list(TABLES):
            root = self.path / name
            for f in self.fs.find(root, "**/*.parquet"):
                self._check_place(TABLES[name], f.relative_to(root))
                out.append(f)
        return out

    def _check_place(self, t: Table, rel: Path) -> None:
        parts = rel.parts
        ok = len(parts) == len(t.partition) + 1 and all(
            part.startswith(f"{key}=") and _ID.fullmatch(part.split("=", 1)[1])
            for part, (key, _) in zip(parts, t.partition, strict=False)
        )
        if not ok:
            layout = "/".join([t.name, *(f"{k}=<{k}>" for k, _ in t.partition), "part-0.parquet"])
            raise StoreError(
                f"'{self.path / t.name / rel}' is not where attnstore keeps {t.name} files "
                f"({layout}); move it out of the store"
            )

    def verify(self) -> None:
        """Read every file's footer; a corrupted file, or one whose columns are not its table's,
        raises StoreError naming it."""
        for name in TABLES:
            declared = TABLES[name].schema
            for f in self.files(name):
                try:
                    schema = pq.read_schema(f)
                except FileNotFoundError:
                    continue  # replaced by a commit since it was listed: not corrupted
                except (pa.ArrowException, OSError) as e:
                    raise StoreError(f"corrupted Parquet file '{f}': {e}") from e
                if not schema.remove_metadata().equals(declared):
                    raise StoreError(
                        f"Parquet file '{f}' has the columns {schema.names} "
                        f"({', '.join(str(t) for t in schema.types)}); table {name} declares "
                        f"{declared.names}: move it out of the store"
                    )

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

        t = TABLES.get(name)
        if t is None:
            raise NotFoundError(f"unknown table '{name}'; known: {known(sorted(TABLES))}")
        schema = t.full_schema
        for col in [*filters, *(columns or [])]:
            if col not in schema.names:
                raise NotFoundError(
                    f"table {name} has no column '{col}'; known: {known(schema.names)}"
                )
        key = t.partition[0][0]
        expr = pc.field(key).isin(pa.array(self.keys(t.level), pa.string()))
        for col, value in filters.items():
            expr = expr & (pc.field(col) == value)
        if where is not None:
            expr = expr & where
        for attempt in range(READ_ATTEMPTS):
            try:
                return self.dataset(name).to_table(columns=columns, filter=expr)
            except FileNotFoundError:
                # A commit (an --overwrite) replaced files between listing and reading:
                # list again; the old version or the new one is read, never an error.
                if attempt == READ_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def dataset(self, name: str):
        """A pyarrow dataset of a table's files as they are now (committed or not: filter on
        the primary table's ids). The partition keys come from the folder names *below* the
        table's own folder, never from the path above the store, and the store's path is
        never read as a glob pattern."""
        import pyarrow.dataset as ds

        t = TABLES[name]
        return ds.dataset(
            [str(f) for f in self.files(name)],
            partitioning=ds.partitioning(pa.schema(list(t.partition)), flavor="hive"),
            partition_base_dir=str(self.path / name),
            schema=t.full_schema,
            filesystem=self.fs.arrow(),
        )

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


class Transaction:
    """Staged writes of one run or analysis; see :meth:`Store.transaction`."""

    def __init__(self, store: Store, level: str, key: str, overwrite: bool) -> None:
        self.store, self.level, self.key, self.overwrite = store, level, key, overwrite
        self.fs = store.fs
        if level not in PRIMARY or not _ID.fullmatch(key):
            raise StoreError(
                f"cannot write {level} '{key}': levels are {known(PRIMARY)}, ids are 1 to 64 "
                "letters, digits or underscores"
            )
        # The id lock comes first: from before the staging folder exists, no recovery
        # (another process opening the store) can take this transaction for abandoned.
        try:
            self._key_lock = store._lock_id(level, key)
        except OSError as e:
            raise StoreError(
                f"store '{store.path}' is not writable ({e.strerror or e}); writing {level} "
                f"{key} needs a store you can write to"
            ) from e
        if self._key_lock is None:
            raise StoreError(f"{level} {key} is being written by another process right now")
        self.dir = store.path / STAGING / f"{level}-{key}-{uuid.uuid4().hex[:8]}"
        store._no_links(self.dir.parent)
        self.fs.mkdir(self.dir)
        self._writers: dict[Path, pq.ParquetWriter] = {}
        self._rows: dict[str, int] = {}
        self._expected: dict[str, int] = {}

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
        self._rows[name] = self._rows.get(name, 0) + data.num_rows

    def expect_rows(self, **counts: int) -> None:
        """Declare how many rows tables must hold when this transaction commits; a commit with
        fewer or more is refused (nothing becomes visible)."""
        self._expected.update(counts)

    def commit(self) -> None:
        for w in self._writers.values():
            w.close()
        primary = PRIMARY[self.level]
        level_tables = [n for n, t in TABLES.items() if t.level == self.level]
        missing = [n for n in level_tables if n not in self._rows]
        if missing:
            raise StoreError(f"{self.level} {self.key}: no rows written to {', '.join(missing)}")
        self._check_staged()
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

    def _check_staged(self) -> None:
        """Refuse to commit unless every table holds, on disk in staging, the rows written to
        it and the rows expected of it."""
        on_disk: dict[str, int] = {}
        for path in self._writers:
            name = path.relative_to(self.dir).parts[0]
            try:
                on_disk[name] = on_disk.get(name, 0) + pq.read_metadata(path).num_rows
            except (OSError, pa.ArrowException) as e:
                raise StoreError(
                    f"{self.level} {self.key}: staged file '{path}' is gone or unreadable "
                    f"before the commit ({e}); nothing was committed"
                ) from e
        for name, n in self._rows.items():
            want = self._expected.get(name, n)
            if on_disk.get(name) != n or n != want:
                raise StoreError(
                    f"{self.level} {self.key}: table {name} holds {on_disk.get(name, 0)} rows "
                    f"in staging, {want} expected; nothing was committed"
                )

    def abort(self) -> None:
        """Give up: staged files are removed, unless the commit was already decided (its
        COMMIT written), in which case the next opener of the store rolls it forward."""
        for w in self._writers.values():
            with contextlib.suppress(Exception):  # best effort on the way out
                w.close()
        self._release(remove=not self.fs.exists(self.dir / COMMIT))

    def _release(self, remove: bool) -> None:
        if remove:
            self.fs.remove_tree(self.dir)
        if self._key_lock is not None:
            self.fs.unlock(self._key_lock)
        self._key_lock = None


def open_store(store: str | Path | Store) -> Store:
    """``store`` itself if it is a :class:`Store`, else the store at that path: the one way a
    caller's store argument becomes a Store."""
    return store if isinstance(store, Store) else Store(store)
