"""Progress on stderr: the one helper every long step uses (train, extract, analyze,
intervene, sweep, the report, figures, migrate).

Where stderr is a terminal, a tqdm bar (in a Jupyter kernel, tqdm's notebook bar). Anywhere
else (a job scheduler's log, a pipe, ``2> file``) a bar's carriage returns make no log, so
a plain line is written instead, at most every :data:`PROGRESS_ENV` seconds (default
:data:`DEFAULT_SECONDS`), each time the work moves on::

    train: 1,200/5,000 (24%), 41.2 step/s, ETA 1m32s, loss=0.4123

what is done of the total, the rate, the time left at that rate, and the step's own
values (``set_postfix``). Nothing is written before the first interval has passed, so a
short command's stderr holds only what the command itself says.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from attnstore.errors import ConfigError

PROGRESS_ENV = "ATTNSTORE_PROGRESS_SECONDS"
DEFAULT_SECONDS = 30.0


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str,
    unit: str = "it",
    enabled: bool = True,
) -> Any:
    """A progress reporter with tqdm's interface (iterate it, or ``update(n)``;
    ``set_postfix(**values)``; ``close()``): a tqdm bar on a terminal, :class:`PlainLines`
    elsewhere, silent where not ``enabled``."""
    from tqdm.auto import tqdm

    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    if sys.stderr.isatty() or _in_a_kernel():
        return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr)
    return PlainLines(iterable, total=total, desc=desc, unit=unit, every=plain_seconds())


def _in_a_kernel() -> bool:
    """True inside a running Jupyter kernel (not merely where ipykernel was imported, as a
    test process that ran a notebook has it)."""
    ipython = sys.modules.get("IPython")
    try:
        shell = ipython.get_ipython() if ipython is not None else None
    except Exception:  # an IPython too old or half-imported: not a kernel we can draw in
        return False
    return type(shell).__name__ == "ZMQInteractiveShell"


def plain_seconds() -> float:
    """The least time between two plain lines: :data:`PROGRESS_ENV`, else
    :data:`DEFAULT_SECONDS`; ConfigError for a value that is not a number >= 0."""
    text = os.environ.get(PROGRESS_ENV, "").strip()
    if not text:
        return DEFAULT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ConfigError(
            f"{PROGRESS_ENV}='{text}' is not accepted; accepted: a number of seconds >= 0 "
            "(0: a line at every step)"
        )
    return seconds


class PlainLines:
    """Plain progress lines on ``file`` (stderr), at most one every ``every`` seconds, written
    when the work moves on (:meth:`update`); the first after ``every`` seconds."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        every: float = DEFAULT_SECONDS,
        file: TextIO | None = None,
    ) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.every = every
        self.file = file
        self.n = 0
        self.postfix = ""
        self.start = self.last = time.monotonic()

    def __iter__(self) -> Iterator:
        try:
            for item in () if self.iterable is None else self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> PlainLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            out = self.file or sys.stderr
            print(self.line(now - self.start), file=out, flush=True)

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        """Values shown at the end of the next line (``loss=0.4123``)."""
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        """Nothing to clear: every line is complete."""

    def line(self, elapsed: float) -> str:
        """``desc: done/total (percent), rate unit/s, ETA time[, postfix]``."""
        rate = self.n / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.n:,}"]
        if self.total:
            parts = [f"{self.n:,}/{self.total:,} ({100 * self.n / self.total:.0f}%)"]
        parts.append(f"{rate:.3g} {self.unit}/s")
        if self.total and rate > 0:
            parts.append(f"ETA {_duration(max(self.total - self.n, 0) / rate)}")
        if self.postfix:
            parts.append(self.postfix)
        return f"{self.desc}: " + ", ".join(parts)


def _duration(seconds: float) -> str:
    """``1h02m``, ``1m32s`` or ``12s``."""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"
