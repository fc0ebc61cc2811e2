"""The head pages' PNG figures (:func:`attnstore.plots.head_figure` and
:func:`~attnstore.plots.silhouette_figure`), drawn in a pool of worker processes.

Drawing them is most of a report's work (about a third of a second of one core per head with
matplotlib) and each is independent of the others, so they are drawn in :func:`workers`
processes while the report goes on reading the store. A worker returns the figure's bytes
(:func:`attnstore.plots.figure_bytes`: fixed style, dpi and metadata, so the bytes do not
depend on the process that drew them) and the report writes them, once it has checked
everything it read.

The workers are forked (Linux), before the report opens its DuckDB connection: a fork starts
in milliseconds and, unlike ``spawn``, never runs the caller's script again (a script that
calls :func:`~attnstore.report.build_report` needs no ``if __name__ == "__main__"``). A worker
only draws: it touches neither DuckDB nor Arrow nor torch, whose threads a fork does not copy.
Elsewhere, with one worker, or in a process that may not start any (a daemon, as a pool's own
worker is), the figures are drawn in this process.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from attnstore.plots.data import HeadFigureData

MAX_WORKERS = 2  # the processes that draw, at most: past two the reading is the longer part
# A worker's start (importing matplotlib, about half a second of a core) costs what drawing one
# or two heads does: a worker pays for itself from about this many heads on.
HEADS_PER_WORKER = 4


def workers(n_heads: int) -> int:
    """The processes to draw ``n_heads`` heads' figures with: one per HEADS_PER_WORKER heads,
    at most MAX_WORKERS and the cores this process may use; 1 (this process) below that, and
    where processes are not forked (not Linux)."""
    if sys.platform != "linux":
        return 1
    cores = len(os.sched_getaffinity(0))
    return max(1, min(MAX_WORKERS, cores, n_heads // HEADS_PER_WORKER))


def draw(data: HeadFigureData) -> tuple[bytes, bytes]:
    """The PNG bytes of the head figure and of the silhouette figure of ``data``."""
    from attnstore import plots

    return (
        plots.figure_bytes(plots.head_figure(data), "png"),
        plots.figure_bytes(plots.silhouette_figure(data), "png"),
    )


def _start() -> None:
    """A worker's first task: import what drawing needs while the report reads."""
    import attnstore.plots.head  # noqa: F401


class Drawer:
    """:func:`draw` in ``n_workers`` forked processes: :meth:`submit` hands it a figure's data,
    :meth:`result` waits for its bytes (a worker's error is raised there, with the worker's
    traceback). The workers start when it is made: make it before opening a DuckDB
    connection. Leaving the ``with`` block cancels what has not started and waits for the
    rest, so no worker outlives it."""

    def __init__(self, n_workers: int) -> None:
        self._pool = None
        forked = sys.platform == "linux" and not multiprocessing.current_process().daemon
        if n_workers > 1 and forked:
            context = multiprocessing.get_context("fork")
            self._pool = ProcessPoolExecutor(n_workers, mp_context=context)
            for _ in range(n_workers):  # the first task forks every worker, now
                self._pool.submit(_start)
        self._figures: dict[object, Future | tuple[bytes, bytes]] = {}

    def submit(self, key: object, data: HeadFigureData) -> None:
        """Draw ``data``'s figures, known as ``key``."""
        if self._pool is None:
            self._figures[key] = draw(data)
        else:
            self._figures[key] = self._pool.submit(draw, data)

    def result(self, key: object) -> tuple[bytes, bytes]:
        """The head figure's and the silhouette figure's bytes of ``key``."""
        done = self._figures.pop(key)
        return done.result() if isinstance(done, Future) else done

    def __enter__(self) -> Drawer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
