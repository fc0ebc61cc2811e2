"""Provenance: what produced a result, recorded beside it (in a card, a ``runs`` or an
``analyses`` row) so that a run can be reproduced from its record."""

from __future__ import annotations

import hashlib
import json
import platform
import shlex
import sys
from pathlib import Path
from typing import Any


def content_id(fields: dict[str, Any]) -> str:
    """The id of a run, an analysis or an intervention: the first 16 hex digits of the sha256
    of ``fields`` as sorted JSON, so that the same inputs always give the same id."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def versions() -> dict[str, str]:
    """Versions of the packages that produce results, keyed by package name. scikit-learn's
    is read from its installed metadata, not by importing it (about 1.5 s), so that writers
    that do not use it (extraction) can record it too."""
    from importlib.metadata import PackageNotFoundError, version

    import numpy
    import torch

    from attnstore import __version__

    try:
        sklearn = version("scikit-learn")
    except PackageNotFoundError:  # pragma: no cover - a dependency
        sklearn = "absent"
    return {
        "attnstore": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn,
        "python": platform.python_version(),
    }


def command_line() -> str:
    """The command that is running, as a user could paste it."""
    argv = (
        ["attnstore", *sys.argv[1:]]
        if Path(sys.argv[0]).name in {"attnstore", "__main__.py"}
        else sys.argv
    )
    return shlex.join(argv)
