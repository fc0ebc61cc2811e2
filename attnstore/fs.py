"""The store's filesystem seam: every file operation of :mod:`attnstore.store` goes through one
object of this interface, so that another filesystem (an object store) can come in behind the
same calls without the store's transaction logic changing.

Paths are :class:`pathlib.PurePosixPath`-like strings relative to nothing: the store passes
full paths it built from its root. :class:`LocalFS` is the local folder, with POSIX renames
and ``flock``; it is the only implementation today.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from pathlib import Path


class LocalFS:
    """A local folder: atomic renames, ``flock`` locks, fsync'd writes."""

    def exists(self, path: Path) -> bool:
        return path.exists()

    def is_dir(self, path: Path) -> bool:
        return path.is_dir()

    def is_link(self, path: Path) -> bool:
        return path.is_symlink()

    def mkdir(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)

    def listdir(self, path: Path) -> list[Path]:
        """The entries of a folder, sorted; none if it does not exist."""
        return sorted(path.iterdir()) if path.is_dir() else []

    def find(self, root: Path, pattern: str) -> list[Path]:
        """Files under ``root`` matching the glob ``pattern`` (``**`` spans folders), sorted."""
        return sorted(root.glob(pattern))

    def read_text(self, path: Path) -> str:
        return path.read_text()

    def write_atomic(self, path: Path, text: str) -> None:
        """``text`` into ``path`` all at once: a reader sees the old file or the new one."""
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def replace(self, src: Path, dst: Path) -> None:
        """Move ``src`` to ``dst`` in one step (``dst`` must not be a non-empty folder)."""
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)

    def remove_tree(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def probe_writable(self, path: Path) -> None:
        """Raise OSError unless a file can be created in the folder ``path``."""
        probe = path / f".probe-{uuid.uuid4().hex}"
        probe.write_text("")
        probe.unlink()

    def try_lock(self, path: Path) -> int | None:
        """An exclusive non-blocking lock on ``path`` (created if need be): a handle for
        :meth:`unlock`, or None if another process holds it (or its folder went away)."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except FileNotFoundError:
            return None  # its folder went away under us
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def unlock(self, handle: int) -> None:
        os.close(handle)

    def arrow(self):
        """The same filesystem for pyarrow (datasets, Parquet writers)."""
        import pyarrow.fs

        return pyarrow.fs.LocalFileSystem()
