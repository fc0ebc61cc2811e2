"""The store's filesystem seam: every file operation of the store, its transactions and its
migration goes through one object of the :class:`FileSystem` protocol, a local folder
(:class:`LocalFS`) or an object store (:class:`ObjectFS`, ``s3://bucket/prefix``), so that
the commit protocol of :mod:`attnstore.transaction` is written once over the few primitives
both offer, and no code outside this module asks which filesystem it has:

- ``write_bytes`` replaces a file all at once (a reader sees the old bytes or the new);
- ``create_only`` creates a file only if none is there, atomically: the commit point;
- ``replace`` replaces a file only if it is still the version read (its ``tag``): an
  ``--overwrite``'s commit point (on S3 an ``If-Match`` put on the ETag);
- ``try_lock`` is an exclusive lock where the filesystem has one (``flock`` on a local
  folder, ``has_locks``) and None on an object store, which has neither locks nor renames;
- ``read_many`` reads many small files at once (concurrent GETs on S3): the commit records.

:func:`filesystem_for` turns what a user gives as ``--store`` (a folder or a URL) into a
filesystem and the store's root path on it. Object stores are reached through s3fs (botocore),
configured as every AWS tool is: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_PROFILE`` and the shared config files;
pyarrow reads and writes the Parquet files with its own S3 client, given what botocore resolved
(docs/object-storage.md). :func:`write_whole` is the one atomic write of a local file (store
files and the outputs of :mod:`attnstore.outputs` alike).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import fnmatch
import os
import re
import stat
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, BinaryIO, Protocol
from urllib.parse import urlsplit

from attnstore.errors import StoreError

SCHEMES = ("s3",)  # URL schemes a store may live at, besides a local folder
_ONE_SLASH = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):/(?!/)")  # s3:/bucket, a URL's typo
READ_CONCURRENCY = 32  # small objects read at once from an object store (read_many)


def is_url(location: str | os.PathLike) -> bool:
    """True if ``location`` is written as a URL (``scheme://...``) rather than a path."""
    return "://" in str(location)


def filesystem_for(location: str | os.PathLike) -> tuple[FileSystem, PurePath]:
    """The filesystem a store location lives on and the store's root path there: a local
    folder, or ``s3://bucket/prefix``. Another scheme is one line naming what is accepted."""
    text = str(location)
    if not text.strip():
        raise StoreError("the store path is empty; give a folder (store/) or s3://bucket/prefix")
    if not is_url(text):
        typo = _ONE_SLASH.match(text)
        if typo:
            raise StoreError(
                f"store '{text}' is not a URL (one slash after '{typo.group(1)}:'); write "
                f"{typo.group(1)}://{text[typo.end() :]}, or ./{text} for a local folder"
            )
        # '~' is the home folder, as a shell reads it (pyarrow would read it so anyway)
        return LocalFS(), Path(location).expanduser()
    scheme, _, rest = text.partition("://")
    if scheme.lower() not in SCHEMES:
        raise StoreError(
            f"store '{text}': URL scheme '{scheme}' is not supported; a store is a folder or "
            "s3://bucket/prefix"
        )
    bucket = rest.split("/", 1)[0]
    if not bucket:
        raise StoreError(f"store '{text}' names no bucket; write s3://bucket/prefix")
    if ".." in rest.split("/"):
        raise StoreError(f"store '{text}': '..' is not allowed in a key; write s3://bucket/prefix")
    return ObjectFS(text), PurePosixPath(rest.rstrip("/"))


class FileSystem(Protocol):
    """What the store asks of a filesystem. Paths are the store's root joined with paths in
    the layout (``PurePath``: a local ``Path``, or ``bucket/key`` on an object store). Every
    listing refuses a symbolic link it meets (:func:`link_refused`), never follows one."""

    has_locks: bool  # try_lock gives real locks (a local folder); else None, age decides

    def url(self, path: PurePath) -> str:
        """``path`` as a user names it: a local path, or ``s3://bucket/key``."""

    def display(self, root: PurePath) -> str | Path:
        """How a store at ``root`` is named in messages and outputs: the folder or the URL."""

    def check_root(self, root: PurePath, shown: str) -> None:
        """StoreError unless ``root`` can hold a store at all: not a file; on an object store
        a bucket that exists and can be listed (one quick request)."""

    def check_special(self, root: PurePath, shown: str) -> None:
        """StoreError if ``root`` is a place no store may be made (the filesystem root, the
        home folder)."""

    def local_folder(self, root: PurePath, what: str) -> Path:
        """``root`` as a local folder, for ``what`` that only exists on one (StoreError on an
        object store)."""

    def exists(self, path: PurePath) -> bool: ...

    def is_link(self, path: PurePath) -> bool: ...

    def mkdir(self, path: PurePath) -> None: ...

    def find(self, root: PurePath, pattern: str) -> list[Any]:
        """Files (and, on an object store, the folders keys imply) below ``root`` whose path
        below it matches the glob ``pattern``, sorted."""

    def stamps(self, root: PurePath, pattern: str) -> dict[Any, Any]:
        """:meth:`find`'s files, each with a stamp that changes whenever the file is replaced:
        one listing, no request per file."""

    def check_paths(self, root: PurePath, paths: Iterable[PurePath]) -> dict[Any, int | None]:
        """Each of ``paths`` (below ``root``) checked not to be, nor pass through, a symbolic
        link (refused: :func:`link_refused`), with its size where that costs no request (a
        local folder; None on an object store); a file that is not there is left out."""

    def modified(self, path: PurePath) -> datetime: ...

    def read_text(self, path: PurePath) -> str: ...

    def read_many(self, paths: Iterable[PurePath]) -> dict[Any, tuple[bytes, str | None]]:
        """The bytes of each file and the tag :meth:`replace` takes (the ETag on S3; None on
        a local folder), read at once; a file that is gone is left out."""

    def write_bytes(self, path: PurePath, data: bytes) -> None: ...

    def create_only(self, path: PurePath, data: bytes) -> bool: ...

    def replace(self, path: PurePath, data: bytes, tag: str | None) -> bool:
        """``data`` into ``path`` if it is still the version read with ``tag``; False if
        another writer replaced (or removed) it since."""

    def remove(self, path: PurePath) -> None: ...

    def prune(self, path: PurePath, stop: PurePath) -> None: ...

    def probe_writable(self, path: PurePath) -> None: ...

    def entries(self, path: PurePath, limit: int) -> list[str]: ...

    def staging_path(self, path: PurePath) -> PurePath: ...

    def publish(self, staged: PurePath, path: PurePath) -> None: ...

    def try_lock(self, path: PurePath) -> Any: ...

    def unlock(self, handle: Any) -> None: ...

    def arrow(self) -> Any:
        """The same filesystem for pyarrow (datasets, Parquet readers and writers)."""


def write_whole(path: Path, write: Callable[[BinaryIO], None], create_only: bool = False) -> bool:
    """The local file ``path`` written whole by ``write(file)``: into a temporary file beside
    it (``.NAME.<32 hex>.tmp``, created exclusively, never through a link) that the writer
    holds locked (``flock``: a cleaner sees it is alive), flushed to disk, then renamed onto
    ``path`` (a reader sees the old file or the new one). ``create_only``: hard-linked instead,
    which fails if a file is there (then False). The temporary file never outlives the call."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # held until closed
            write(f)
            f.flush()
            os.fsync(f.fileno())
            if not create_only:
                os.replace(tmp, path)
                return True
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            return True
    finally:
        tmp.unlink(missing_ok=True)


class LocalFS:
    """A local folder: atomic renames, ``flock`` locks, fsync'd writes."""

    has_locks = True

    def url(self, path: Path) -> str:
        return str(path)

    def display(self, root: Path) -> Path:
        return root

    def check_root(self, root: Path, shown: str) -> None:
        if root.is_file():
            raise StoreError(f"'{shown}' is a file; a store is a folder or s3://bucket/prefix")

    def check_special(self, root: Path, shown: str) -> None:
        where = root.resolve()
        try:
            home = Path.home().resolve()
        except (RuntimeError, KeyError):  # no home folder known
            home = None
        special = {Path(where.anchor): "the filesystem root", home: "your home folder"}
        if where in special:
            raise StoreError(
                f"store '{shown}' is {special[where]}; a store needs a folder of its own: give a "
                f"new or empty folder, e.g. --store {where / 'attnstore'}"
            )

    def local_folder(self, root: Path, what: str) -> Path:
        return root

    def exists(self, path: Path) -> bool:
        return path.exists()

    def is_link(self, path: Path) -> bool:
        return path.is_symlink()

    def mkdir(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)

    def find(self, root: Path, pattern: str) -> list[Path]:
        """Files under ``root`` whose path below it matches the glob ``pattern`` (``**/``
        spans folders), sorted. A symbolic link anywhere below ``root``, to a file or a
        folder, is refused (:func:`link_refused`): never followed, never silently skipped."""
        out: list[Path] = []
        folders = [root] if root.is_dir() else []
        while folders:
            folder = folders.pop()
            try:
                entries = list(os.scandir(folder))
            except FileNotFoundError:
                continue  # removed since it was listed (a commit's cleanup)
            for entry in entries:
                path = Path(entry.path)
                if entry.is_symlink():
                    raise link_refused(path)
                if entry.is_dir():
                    folders.append(path)
                elif _glob_match(path.relative_to(root).as_posix(), pattern):
                    out.append(path)
        return sorted(out)

    def stamps(self, root: Path, pattern: str) -> dict[Path, tuple[int, int, int]]:
        """:meth:`find` with a stamp of each file that changes whenever the file is replaced
        (inode, mtime, size); a file gone since the listing is left out."""
        out = {}
        for f in self.find(root, pattern):
            with contextlib.suppress(FileNotFoundError):
                st = f.stat()
                out[f] = (st.st_ino, st.st_mtime_ns, st.st_size)
        return out

    def check_paths(self, root: Path, paths: Iterable[Path]) -> dict[Path, int]:
        top = str(root)
        checked: set[str] = set()  # folders seen not to be links
        out = {}
        for path in paths:
            text = str(path)
            if not text.startswith(top + os.sep):
                raise StoreError(f"'{path}' is not inside the store '{root}'")
            folder = top
            for part in text[len(top) + 1 :].split(os.sep)[:-1]:
                folder = f"{folder}{os.sep}{part}"
                if folder not in checked:
                    if os.path.islink(folder):
                        raise link_refused(Path(folder))
                    checked.add(folder)
            try:
                st = os.lstat(text)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                raise link_refused(path)
            if stat.S_ISREG(st.st_mode):
                out[path] = st.st_size  # else a folder where a file should be: not there
        return out

    def modified(self, path: Path) -> datetime:
        return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)

    def read_text(self, path: Path) -> str:
        return path.read_text()

    def read_many(self, paths: Iterable[Path]) -> dict[Path, tuple[bytes, None]]:
        out = {}
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except FileNotFoundError:
                continue
            except OSError as e:
                if e.errno == 40:  # ELOOP: a symbolic link
                    raise link_refused(path) from None
                raise
            with os.fdopen(fd, "rb") as f:
                out[path] = (f.read(), None)
        return out

    def staging_path(self, path: Path) -> Path:
        """Where a file that becomes ``path`` is written until it is complete
        (:meth:`publish`): a hidden ``.tmp`` name that no reader's ``*.parquet`` glob, and no
        pyarrow dataset discovery, picks up half written."""
        return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")

    def publish(self, staged: Path, path: Path) -> None:
        """A complete file written at ``staging_path(path)`` takes its name, atomically."""
        os.replace(staged, path)

    def write_bytes(self, path: Path, data: bytes) -> None:
        """``data`` into ``path`` all at once: a reader sees the old file or the new one."""
        self.mkdir(path.parent)
        write_whole(path, lambda f: f.write(data))

    def create_only(self, path: Path, data: bytes) -> bool:
        """Create ``path`` holding ``data`` unless a file is there already (then False);
        atomic: a hard link of a complete temporary file, which fails if ``path`` exists."""
        self.mkdir(path.parent)
        return write_whole(path, lambda f: f.write(data), create_only=True)

    def replace(self, path: Path, data: bytes, tag: None) -> bool:
        """:meth:`write_bytes`: on a local folder the writer holds its id's lock, so the
        version read is still there."""
        self.write_bytes(path, data)
        return True

    def remove(self, path: Path) -> None:
        """Delete a file; one already gone is not an error."""
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def prune(self, path: Path, stop: Path) -> None:
        """Remove ``path`` and the folders above it, up to ``stop`` excluded, while empty."""
        while path != stop and stop in path.parents:
            try:
                path.rmdir()
            except OSError:
                return
            path = path.parent

    def probe_writable(self, path: Path) -> None:
        """Raise OSError unless a file can be created in the folder ``path``."""
        probe = path / f".probe-{uuid.uuid4().hex}"
        probe.write_text("")
        probe.unlink()

    def entries(self, path: Path, limit: int) -> list[str]:
        """The names of at most ``limit`` entries of the folder ``path`` (none if it does
        not exist)."""
        try:
            with os.scandir(path) as it:
                return [e.name for e, _ in zip(it, range(limit), strict=False)]
        except (FileNotFoundError, NotADirectoryError):
            return []
        except PermissionError as e:
            raise StoreError(f"cannot look into '{path}': {e.strerror or e}") from e

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


class ObjectFS:
    """An S3 bucket (or any S3 API) through s3fs: no renames, no locks, no folders; a write
    replaces an object whole, and ``create_only`` is a conditional put (``If-None-Match``).
    Listings are never cached: a store is read as it is now. Errors are one line naming the
    store and what to change (:meth:`errors`); opening checks the bucket in one quick request
    (:meth:`check_bucket`)."""

    has_locks = False

    def __init__(self, location: str) -> None:
        self.location = location
        self._s3 = self._connect({"connect_timeout": 5, "retries": {"max_attempts": 2}})
        self._clients = [self._s3]  # whose endpoint an error names
        self._arrow = None  # (credentials, pyarrow's filesystem): see arrow()

    def _connect(self, config: dict):
        try:
            import s3fs
        except ImportError as e:  # pragma: no cover - s3fs is a dependency
            raise StoreError(f"store '{self.location}' needs s3fs: pip install s3fs") from e
        return s3fs.S3FileSystem(
            use_listings_cache=False, skip_instance_cache=True, config_kwargs=config
        )

    def url(self, path: PurePosixPath) -> str:
        return f"s3://{path}"

    def display(self, root: PurePosixPath) -> str:
        return self.url(root)

    def check_special(self, root: PurePosixPath, shown: str) -> None:
        """Nothing: every prefix of a bucket may hold a store."""

    def local_folder(self, root: PurePosixPath, what: str) -> Path:
        raise StoreError(
            f"store '{self.url(root)}' is on an object store, and {what} is only ever a local "
            "folder"
        )

    def _endpoint(self) -> str:
        """The S3 API this store is reached at, as botocore resolved it."""
        for fs in self._clients:
            client = getattr(fs, "_s3", None)
            if client is not None:
                return client.meta.endpoint_url
        return os.environ.get("AWS_ENDPOINT_URL", "the AWS endpoint")

    @contextlib.contextmanager
    def errors(self, path: PurePosixPath, doing: str):
        """Turn what botocore and s3fs raise into one line naming the store and the cause; a
        missing object stays a FileNotFoundError (callers expect one)."""
        try:
            yield
        except (StoreError, FileExistsError):
            raise
        except Exception as e:
            problem = self._problem(e, path, doing)
            if problem is None:
                raise
            raise StoreError(f"store '{self.location}': {problem}") from e

    def _problem(self, e: Exception, path: PurePosixPath, doing: str) -> str | None:
        """What went wrong, for a user to act on; None for a missing object."""
        import botocore.exceptions as bx

        chain = _chain(e)
        responses = [x.response for x in chain if isinstance(getattr(x, "response", None), dict)]
        code = responses[0].get("Error", {}).get("Code") if responses else None  # S3's error
        bucket = str(path).split("/", 1)[0]
        creds = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        if code == "NoSuchBucket":
            return (
                f"bucket '{bucket}' does not exist at {self._endpoint()}; create it first "
                f"(aws s3 mb s3://{bucket}), or check AWS_ENDPOINT_URL"
            )
        if isinstance(e, FileNotFoundError):
            return None
        if any(isinstance(x, (bx.NoCredentialsError, bx.PartialCredentialsError)) for x in chain):
            return f"no AWS credentials found ({e}); set {creds} (a profile of ~/.aws/credentials)"
        if any(isinstance(x, bx.ProfileNotFound) for x in chain):
            return f"{e} (AWS_PROFILE); name a profile of ~/.aws/config or unset AWS_PROFILE"
        unreachable = (bx.ConnectionError, bx.HTTPClientError, TimeoutError, ConnectionError)
        if any(isinstance(x, unreachable) for x in chain):
            return (
                f"cannot reach {self._endpoint()} while {doing} ({type(e).__name__}); set "
                "AWS_ENDPOINT_URL to a reachable S3 API (unset: AWS itself)"
            )
        if code in _REFUSED_CREDENTIALS:
            return f"credentials refused by {self._endpoint()} ({code}: {_first(e)}); check {creds}"
        if isinstance(e, PermissionError) or code == "AccessDenied":
            if doing.startswith(("writing", "deleting")):
                return (
                    f"access denied while {doing}: these credentials may not write to the "
                    "store; writing one needs s3:PutObject, s3:GetObject, s3:DeleteObject and "
                    "s3:ListBucket on its prefix"
                )
            return (
                f"access denied while {doing}: these credentials may not read the store; "
                "reading one needs s3:GetObject and s3:ListBucket on its prefix"
            )
        headers = (
            responses[0].get("ResponseMetadata", {}).get("HTTPHeaders", {}) if responses else {}
        )
        if code == "500" and "x-amz-request-id" not in headers:  # botocore's 500 for a 200
            return (  # whose body is no S3 answer: not an S3 API at all
                f"{self._endpoint()} answered {doing} with something that is not an S3 API "
                "response; set AWS_ENDPOINT_URL to an S3 API (unset: AWS itself)"
            )
        if isinstance(e, ValueError) and "Invalid endpoint" in str(e):
            return f"{e} (AWS_ENDPOINT_URL); set it to an S3 API's URL, http(s)://host[:port]"
        if isinstance(e, OSError):
            return f"{doing} failed: {e}"
        return None

    def check_root(self, root: PurePosixPath, shown: str) -> None:
        """StoreError unless the store's bucket exists and its prefix can be listed: one
        request, tried once with short timeouts, so that a wrong endpoint, key or bucket is
        named in seconds rather than after the minutes of retries the transfers allow."""
        probe = self._connect(
            {"connect_timeout": 5, "read_timeout": 5, "retries": {"total_max_attempts": 1}}
        )
        probe.retries = 1  # s3fs's own retry loop, around botocore's: one try
        self._clients.append(probe)
        bucket, _, prefix = str(root).partition("/")
        with self.errors(root, "listing the bucket"):
            probe.call_s3(
                "list_objects_v2", Bucket=bucket, Prefix=prefix and prefix + "/", MaxKeys=1
            )

    def exists(self, path: PurePosixPath) -> bool:
        with self.errors(path, "looking for a file"):
            return bool(self._s3.exists(str(path)))

    def is_link(self, path: PurePosixPath) -> bool:
        return False

    def mkdir(self, path: PurePosixPath) -> None:
        """Nothing: an object store has no folders, only keys with slashes."""

    def find(self, root: PurePosixPath, pattern: str) -> list[PurePosixPath]:
        """Objects under ``root`` whose path below it matches the glob ``pattern`` (``**/``
        spans folders; ``*`` does not), sorted."""
        return list(self.stamps(root, pattern))

    def stamps(self, root: PurePosixPath, pattern: str) -> dict[PurePosixPath, str]:
        """The objects :meth:`find` lists, each with its ETag: one LIST request per 1,000
        keys (an empty prefix costs one), nothing per object."""
        bucket, _, prefix = str(root).partition("/")
        prefix = prefix and prefix + "/"
        out = {}
        token = None
        with self.errors(root, "listing"):
            while True:
                more = {} if token is None else {"ContinuationToken": token}
                page = self._s3.call_s3("list_objects_v2", Bucket=bucket, Prefix=prefix, **more)
                for o in page.get("Contents", []):
                    rel = o["Key"][len(prefix) :]
                    if rel and _glob_match(rel, pattern):
                        out[root / rel] = o.get("ETag") or str(o.get("LastModified"))
                token = page.get("NextContinuationToken")
                if not page.get("IsTruncated") or token is None:
                    break
        return {p: out[p] for p in sorted(out)}

    def check_paths(
        self, root: PurePosixPath, paths: Iterable[PurePosixPath]
    ) -> dict[PurePosixPath, None]:
        """Every path, size unknown: an object store has no links, and sizes cost requests."""
        return dict.fromkeys(paths)

    def modified(self, path: PurePosixPath) -> datetime:
        with self.errors(path, "reading a file's date"):
            when = self._s3.modified(str(path))
        return when if when.tzinfo else when.replace(tzinfo=timezone.utc)

    def read_text(self, path: PurePosixPath) -> str:
        """One GET (s3fs's own ``cat_file`` sends a HEAD first)."""
        got = self.read_many([path]).get(path)
        if got is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", self.url(path))
        return got[0].decode()

    def read_many(
        self, paths: Iterable[PurePosixPath]
    ) -> dict[PurePosixPath, tuple[bytes, str | None]]:
        """Each object whole with its ETag: one GET each (no HEAD first), at most
        :data:`READ_CONCURRENCY` at once; an object that is gone is left out."""
        from fsspec.asyn import sync

        paths = list(paths)
        gate = asyncio.Semaphore(READ_CONCURRENCY)

        async def get(path: PurePosixPath):
            bucket, _, key = str(path).partition("/")
            async with gate:
                resp = await self._s3._call_s3("get_object", Bucket=bucket, Key=key)
                try:
                    return await resp["Body"].read(), resp.get("ETag")
                finally:
                    resp["Body"].close()

        async def every():
            return await asyncio.gather(*(get(p) for p in paths), return_exceptions=True)

        out = {}
        where = paths[0] if paths else PurePosixPath(self.location)
        with self.errors(where, "reading"):
            for path, got in zip(paths, sync(self._s3.loop, every), strict=True):
                if isinstance(got, FileNotFoundError):
                    continue
                if isinstance(got, BaseException):
                    raise got
                out[path] = got
        return out

    def write_bytes(self, path: PurePosixPath, data: bytes) -> None:
        with self.errors(path, "writing"):
            self._s3.pipe_file(str(path), data)

    def replace(self, path: PurePosixPath, data: bytes, tag: str | None) -> bool:
        """A put conditional on the object's ETag (``If-Match``): False if it changed (or
        went) since it was read."""
        bucket, _, key = str(path).partition("/")
        with self.errors(path, "writing"):
            try:
                self._s3.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfMatch=tag)
                return True
            except FileNotFoundError:
                return False  # removed since: no version to replace
            except OSError as e:
                if _precondition_failed(e):
                    return False
                raise

    def create_only(self, path: PurePosixPath, data: bytes) -> bool:
        """A conditional put (``If-None-Match: *``): False if the object exists already."""
        with self.errors(path, "writing"):
            try:
                self._s3.pipe_file(str(path), data, mode="create")
                return True
            except FileExistsError:
                return False
            except OSError as e:
                if _precondition_failed(e):
                    return False
                raise

    def remove(self, path: PurePosixPath) -> None:
        with self.errors(path, "deleting"), contextlib.suppress(FileNotFoundError):
            self._s3.rm_file(str(path))

    def prune(self, path: PurePosixPath, stop: PurePosixPath) -> None:
        """Nothing: an object store has no empty folders to remove."""

    def probe_writable(self, path: PurePosixPath) -> None:
        probe = path / f".probe-{uuid.uuid4().hex}"
        with self.errors(path, "writing a probe object"):
            self._s3.pipe_file(str(probe), b"")
            self._s3.rm_file(str(probe))

    def entries(self, path: PurePosixPath, limit: int) -> list[str]:
        """The names of at most ``limit`` objects or key prefixes right below ``path``: one
        request."""
        bucket, _, prefix = str(path).partition("/")
        prefix = prefix and prefix + "/"
        with self.errors(path, "listing"):
            page = self._s3.call_s3(
                "list_objects_v2", Bucket=bucket, Prefix=prefix, Delimiter="/", MaxKeys=limit
            )
        keys = [o["Key"] for o in page.get("Contents", [])]
        keys += [p["Prefix"].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return [k[len(prefix) :] for k in keys][:limit]

    def staging_path(self, path: PurePosixPath) -> PurePosixPath:
        """``path`` itself: an object appears only once its upload is complete (a single put,
        or the completion of a multipart upload), so a reader never lists it half written."""
        return path

    def publish(self, staged: PurePosixPath, path: PurePosixPath) -> None:
        """Nothing: the object was written under its own name (:meth:`staging_path`)."""

    def try_lock(self, path: PurePosixPath) -> None:
        return None

    def unlock(self, handle: object) -> None:
        """Nothing: an object store has no locks."""

    def arrow(self):
        """The same bucket for pyarrow (datasets, Parquet writers): pyarrow's own S3 client,
        given the endpoint, region and credentials botocore resolved for s3fs, so that both
        follow one configuration. Not s3fs behind pyarrow's fsspec handler: there pyarrow's
        I/O threads call back into Python, and a DuckDB scan whose file vanished under it (a
        commit of an ``--overwrite``) could hang instead of failing; pyarrow's own client says
        the file is gone, and the reader lists again."""
        import pyarrow.fs
        from fsspec.asyn import sync

        where = PurePosixPath(self.location.partition("://")[2])
        with self.errors(where, "connecting"):
            client = self._s3.s3  # connects: the endpoint and region are resolved
            creds = sync(self._s3.loop, self._s3.session.get_credentials)
            if creds is None:
                import botocore.exceptions

                raise botocore.exceptions.NoCredentialsError()
            frozen = sync(self._s3.loop, creds.get_frozen_credentials)  # refreshed if due
        key = (frozen.access_key, frozen.secret_key, frozen.token)
        if self._arrow is None or self._arrow[0] != key:
            endpoint = urlsplit(client.meta.endpoint_url)
            custom = not endpoint.hostname.endswith(".amazonaws.com")  # MinIO, moto, ...
            self._arrow = (
                key,
                pyarrow.fs.S3FileSystem(
                    access_key=frozen.access_key,
                    secret_key=frozen.secret_key,
                    session_token=frozen.token,
                    region=client.meta.region_name,
                    endpoint_override=endpoint.netloc if custom else None,
                    scheme=endpoint.scheme,
                    connect_timeout=5,
                ),
            )
        return self._arrow[1]


def _precondition_failed(e: BaseException) -> bool:
    """True if S3 refused a conditional put (HTTP 412, ``PreconditionFailed``)."""
    for x in _chain(e):
        response = getattr(x, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code") in (
            "PreconditionFailed",
            "412",
        ):
            return True
    text = str(e)
    return "PreconditionFailed" in text or "412" in text or "pre-conditions" in text


def link_refused(path: PurePath) -> StoreError:
    """The one error of a symbolic link met inside a store."""
    return StoreError(
        f"'{path}' is a symbolic link; attnstore never follows links inside a store: replace "
        "it with the file or folder it points to, or move it out of the store"
    )


def _glob_match(rel: str, pattern: str) -> bool:
    """``rel`` matches ``pattern``, where ``*`` stays within one path segment and ``**/``
    matches any number of folders (as :meth:`pathlib.Path.glob`)."""
    if pattern.startswith("**/"):
        rest = pattern[3:]
        parts = rel.split("/")
        return any(_glob_match("/".join(parts[i:]), rest) for i in range(len(parts)))
    rp, pp = rel.split("/"), pattern.split("/")
    return len(rp) == len(pp) and all(
        fnmatch.fnmatchcase(r, p) for r, p in zip(rp, pp, strict=True)
    )


# S3 error codes of credentials the endpoint does not accept (unknown, mistyped, expired)
_REFUSED_CREDENTIALS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "InvalidClientTokenId",
}


def _chain(e: BaseException) -> list[BaseException]:
    """``e`` and the exceptions it was raised from, outermost first."""
    out: list[BaseException] = []
    while e is not None and e not in out:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def _first(e: BaseException) -> str:
    """An error's message up to its first sentence's end."""
    text = str(e).strip()
    return text.split(". ", 1)[0].rstrip(".")
