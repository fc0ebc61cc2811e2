"""Transactions: how a run or an analysis is written into a store, all or nothing, and how the
next process to open the store finishes or removes what a killed writer left.

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
folders (never followed links), a transaction folder must be named ``<level>-<id>-<hex>`` (a
level of ``schema.PRIMARY``), and every move its ``COMMIT`` lists must be one of the moves that
transaction can make; anything else is refused with a StoreError naming it, and nothing is
touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from attnstore.errors import StoreError, known
from attnstore.fs import LocalFS
from attnstore.schema import PRIMARY, SCHEMA_VERSION, TABLES, Table, parquet_options

STAGING = ".staging"
LOCKS = ".locks"
COMMIT = "COMMIT"
CRASH_ENV = "ATTNSTORE_CRASH_AFTER_MOVES"
ROW_GROUP_ROWS = 1 << 20  # upper bound; writers pass whole batches as row groups
ID = re.compile(r"[0-9A-Za-z_]{1,64}")  # a run or analysis id: one path segment, no dots
_TXN = re.compile(rf"({'|'.join(PRIMARY)})-([0-9A-Za-z_]{{1,64}})-[0-9a-f]{{8}}")
_TRASH = re.compile(r"trash-[0-9a-f]{32}")


def _partition_dir(root: Path, table: Table, values: dict[str, Any]) -> Path:
    path = root / table.name
    for key, _ in table.partition:
        if key not in values:
            raise StoreError(f"table {table.name}: partition key {key} not given")
        path = path / f"{key}={values[key]}"
    return path


class Folder:
    """A store's folder as transactions see it: the id locks, the staging area, and the moves
    of a commit, never outside the store's own layout."""

    def __init__(self, root: Path, fs: LocalFS) -> None:
        self.root, self.fs = root, fs

    def recover(self) -> None:
        """Finish decided transactions and remove abandoned ones (see the module docstring)."""
        staging = self.root / STAGING
        self.no_links(staging)
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
            lock = self.lock_id(m.group(1), m.group(2))
            if lock is None:
                continue  # its writer is alive
            try:
                if self.fs.exists(entry / COMMIT):
                    moves = self.checked_moves(entry, m.group(1), m.group(2))
                    self.apply_moves(moves)
                self.fs.remove_tree(entry)
            finally:
                self.fs.unlock(lock)

    def no_links(self, *paths: Path) -> None:
        """Refuse paths inside the store that are, or pass through, a symbolic link."""
        for path in paths:
            part = self.root
            for name in path.relative_to(self.root).parts:
                part = part / name
                if self.fs.is_link(part):
                    raise StoreError(
                        f"'{part}' is a symbolic link; attnstore never follows links inside a "
                        "store: replace it with a folder"
                    )

    def lock_id(self, level: str, key: str) -> int | None:
        """The exclusive lock on a run or analysis id, or None if another process holds it."""
        locks = self.root / LOCKS
        self.no_links(locks)
        self.fs.mkdir(locks)
        path = locks / f"{level}-{key}.lock"
        try:
            return self.fs.try_lock(path)
        except OSError as e:  # e.g. a link planted where the lock file goes
            raise StoreError(f"cannot lock '{path}': {e.strerror or e}") from e

    def checked_moves(self, txn: Path, level: str, key: str) -> list[dict[str, str | None]]:
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
            self.no_links(self.root / dst, *([self.root / src] if src else []))
        return [{"src": src, "dst": dst} for src, dst in pairs]

    def apply_moves(
        self, moves: list[dict[str, str | None]], crash_after: int | None = None
    ) -> None:
        """Rename staged folders into place; an existing destination goes to the trash first.
        Idempotent: a move whose source is gone is done, and once the last move's source (the
        primary folder) is gone, the whole commit is (this keeps an overwrite's new primary
        row from being thrown away as "the old one"). ``crash_after`` kills the process after
        that many moves, as SIGKILL would (tests only)."""
        if not self.fs.exists(self.root / moves[-1]["src"]):
            return
        for i, m in enumerate(moves):
            if i == crash_after:
                os._exit(137)
            dst = self.root / m["dst"]
            if m["src"] is None:
                self.discard(dst)
                continue
            src = self.root / m["src"]
            if not self.fs.exists(src):
                continue  # done before the crash
            self.discard(dst)
            self.fs.replace(src, dst)
        if crash_after == len(moves):
            os._exit(137)  # every move done, the staging folder not yet removed

    def discard(self, path: Path) -> None:
        if self.fs.exists(path):
            trash = self.root / STAGING / f"trash-{uuid.uuid4().hex}"
            self.fs.replace(path, trash)
            self.fs.remove_tree(trash)


class Transaction:
    """Staged writes of one run or analysis; see :meth:`attnstore.store.Store.transaction`."""

    def __init__(self, folder: Folder, level: str, key: str, overwrite: bool) -> None:
        self.folder, self.level, self.key, self.overwrite = folder, level, key, overwrite
        self.fs = folder.fs
        if level not in PRIMARY or not ID.fullmatch(key):
            raise StoreError(
                f"cannot write {level} '{key}': levels are {known(PRIMARY)}, ids are 1 to 64 "
                "letters, digits or underscores"
            )
        # The id lock comes first: from before the staging folder exists, no recovery
        # (another process opening the store) can take this transaction for abandoned.
        try:
            self._key_lock = folder.lock_id(level, key)
        except OSError as e:
            raise StoreError(
                f"store '{folder.root}' is not writable ({e.strerror or e}); writing {level} "
                f"{key} needs a store you can write to"
            ) from e
        if self._key_lock is None:
            raise StoreError(f"{level} {key} is being written by another process right now")
        self.dir = folder.root / STAGING / f"{level}-{key}-{uuid.uuid4().hex[:8]}"
        folder.no_links(self.dir.parent)
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
                **parquet_options(t),
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
        self.folder.apply_moves(moves, crash_after=int(crash) if crash else None)
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
