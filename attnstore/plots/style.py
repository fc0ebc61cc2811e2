"""The same figure, the same bytes: one style every figure is drawn and saved under, and
:func:`save_figure`.

Drawing uses ``matplotlib.figure.Figure`` (no pyplot, no global backend) under matplotlib's
default style, whatever style the caller has set; files carry no dates or version strings.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import matplotlib as mpl
import matplotlib.style
from matplotlib.figure import Figure

from attnstore.errors import ConfigError, known
from attnstore.outputs import check_output, write_output

FORMATS = (".pdf", ".png", ".svg")
DPI = 100
# Fixed metadata: no dates, no version strings, so the same figure always has the same bytes.
_METADATA = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None},
}
_RC = {"svg.hashsalt": "attnstore", "figure.dpi": DPI, "savefig.dpi": DPI}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """matplotlib's default style plus fixed hashing and dpi, whatever the caller has set."""
    with mpl.style.context("default"), mpl.rc_context(_RC):
        yield


def check_figure_path(path: str | Path, store: str | Path | None = None) -> Path:
    """``path`` if a figure may be written there: .png, .svg or .pdf, and outside any store
    (:func:`~attnstore.outputs.check_output`); else ConfigError naming it."""
    path = check_output(path, store)
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(f"figure file '{path}' must end in one of: {known(FORMATS)}")
    return path


def save_figure(fig: Figure, path: str | Path, store: str | Path | None = None) -> Path:
    """Write ``fig`` as .png, .svg or .pdf (from the suffix), byte-identical from run to run:
    fixed dpi, no dates or version strings in the metadata, a fixed SVG id salt. Written as
    :func:`~attnstore.outputs.write_output` writes (its folder made if need be, whole or
    not at all, never inside a store or ``store``); a path that cannot be written is a
    ConfigError naming it."""
    path = check_figure_path(path, store)
    raw = figure_bytes(fig, path.suffix.lower()[1:])
    return write_output(path, lambda f: f.write(raw), store)


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    """``fig`` as the bytes :func:`save_figure` writes in format ``fmt`` (png, svg or pdf)."""
    buffer = io.BytesIO()
    with style():
        fig.savefig(buffer, format=fmt, dpi=DPI, metadata=_METADATA[fmt])
    return buffer.getvalue()
