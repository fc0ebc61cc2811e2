"""The same figure, the same bytes: one style every figure is drawn and saved under, and
:func:`save_figure`.

Drawing uses ``matplotlib.figure.Figure`` (no pyplot, no global backend) under matplotlib's
default style, whatever style the caller has set; files carry no dates or version strings.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import matplotlib as mpl
import matplotlib.style
from matplotlib.figure import Figure

from attnstore.errors import ConfigError, known

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


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as .png, .svg or .pdf (from the suffix), byte-identical from run to run:
    fixed dpi, no dates or version strings in the metadata, a fixed SVG id salt. The file is
    written beside its destination and moved into place, so it is never seen half-written."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(f"figure file '{path}' must end in one of: {known(FORMATS)}")
    fmt = path.suffix.lower()[1:]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with style():
            fig.savefig(tmp, format=fmt, dpi=DPI, metadata=_METADATA[fmt])
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
