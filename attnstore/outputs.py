"""Files written for the user (figures, query results, the folders that hold them): never
inside a store, always whole, and a path that cannot be written is one line.

- :func:`check_output`: the one rule of where an output may go. Not inside a store: a store
  lists every file it holds, so a stray file breaks every later command, and one written over
  a store's file loses what it held. A path is inside a store when it, or a folder above it,
  holds ``attnstore.json``, or when it lies in the store a command was given (which may not
  exist yet). Paths are resolved first, so ``S/../S/runs/x`` and links into a store count.
- :func:`check_output_folder`: a folder for outputs, checked and probed, so that a command can
  refuse it before its work.
- :func:`write_output`: a file, checked, its folder made, written beside its destination
  under a locked temporary name and moved into place (:func:`attnstore.fs.write_whole`, the
  one atomic write of a local file, which the store's own files use too): never seen
  half-written. A temporary file left by a writer that was killed is removed by the next write
  of the same output.

Every refusal is a :class:`~attnstore.errors.ConfigError` naming the path. Nothing here
imports matplotlib or pandas.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from attnstore.errors import ConfigError
from attnstore.fs import is_url, write_whole
from attnstore.store import STORE_FILE, check_store_place  # what makes a folder a store

STALE_AFTER_S = 10.0  # a temporary file nobody holds, untouched this long, is a dead writer's


def _is_store(folder: Path) -> bool:
    try:
        return (folder / STORE_FILE).exists()
    except OSError:  # a folder we may not look into is no store of ours
        return False


def check_output(path: str | Path, store: str | Path | None = None) -> Path:
    """``path`` as given, if an output may be written there; else ConfigError naming it and
    the store it lies in. ``store``: a store the command writes (it may not exist yet)."""
    if not str(path).strip():
        raise ConfigError("the output path is empty; give a file or folder outside the store")
    where = Path(path).resolve()
    stores = [d for d in (where, *where.parents) if _is_store(d)]
    if store is not None and str(store).strip() and not is_url(store):  # a URL is no folder
        given = Path(store).resolve()
        if where == given or given in where.parents:
            stores.insert(0, given)
    if stores:
        how = "is the store" if where == stores[0] else "lies inside the store"
        raise ConfigError(
            f"output '{path}' {how} '{stores[0]}'; a file written there would break the "
            "store: write it outside the store"
        )
    return Path(path)


def check_new_store(path: str | Path) -> None:
    """ConfigError if a store made at ``path`` would lie inside another store (whose files it
    would add to, breaking it); StoreError where no store may be made there at all
    (:func:`attnstore.store.check_store_place`). ``path`` itself may be a store already."""
    if not str(path).strip():
        raise ConfigError("the store path is empty; give a folder, e.g. --store store/")
    if is_url(path):
        return  # an object store holds no local folder another store could lie in
    where = Path(path).resolve()
    outer = next((d for d in where.parents if _is_store(d)), None)
    if outer is not None:
        raise ConfigError(
            f"store '{path}' lies inside the store '{outer}'; a store inside another breaks "
            "it: give a folder outside any store"
        )
    check_store_place(path)


def cannot_write(path: str | Path, e: OSError) -> ConfigError:
    """The one-line error of an output that could not be written."""
    return ConfigError(f"cannot write '{path}': {e.strerror or e}")


def _make_folder(folder: Path, path: str | Path) -> None:
    """``folder`` made with its parents; a file in the way is named."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (folder, *folder.parents) if p.is_file()), None)
        if blocker is None:
            raise
        raise ConfigError(f"cannot write '{path}': '{blocker}' is a file, not a folder") from None


def check_output_folder(path: str | Path, store: str | Path | None = None) -> Path:
    """``path`` if outputs may be written into that folder: checked (:func:`check_output`),
    and a file can be made in it. The folders this makes to find out are removed again, so a
    command can check before its work and leave nothing behind if the work fails."""
    folder = check_output(path, store)
    missing = [d for d in (folder, *folder.parents) if not d.exists()]
    try:
        _make_folder(folder, path)
        probe = folder / f".probe-{uuid.uuid4().hex}"
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as e:
        raise cannot_write(path, e) from None
    finally:
        for d in missing:  # the deepest first
            with contextlib.suppress(OSError):
                d.rmdir()
    return folder


def _lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files of ``path`` (``.NAME.<hex>.tmp`` beside it) that a killed
    writer left: those no process holds locked and nobody has touched for a while."""
    pattern = re.compile(re.escape(f".{path.name}.") + r"[0-9a-f]{8,32}\.tmp")
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        with contextlib.suppress(OSError):
            if not entry.is_file(follow_symlinks=False):
                continue
            if now - entry.stat(follow_symlinks=False).st_mtime < STALE_AFTER_S:
                continue  # perhaps a writer that has not locked it yet
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                if _lock(fd):  # no live writer holds it
                    os.unlink(entry.path)
            finally:
                os.close(fd)


def write_output(
    path: str | Path, write: Callable[[BinaryIO], None], store: str | Path | None = None
) -> Path:
    """Write the file ``path`` with ``write(file)`` (a binary file open for writing): checked
    (:func:`check_output`), its folder made if need be, written to a temporary file beside it
    that the writer holds locked, then moved into place. Returns ``path``; an OSError is a
    ConfigError ``cannot write 'PATH': <reason>``."""
    path = check_output(path, store)
    try:
        _make_folder(path.parent, path)
        remove_stale_temporaries(path)
        write_whole(path, write)
    except OSError as e:
        raise cannot_write(path, e) from None
    return path
