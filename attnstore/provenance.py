"""Provenance: what produced a result, recorded beside it (in a card, a ``runs`` or an
``analyses`` row) so that a run can be reproduced from its record."""

from __future__ import annotations

import platform
import shlex
import sys
from pathlib import Path


def versions() -> dict[str, str]:
    """Versions of the packages that produce results, keyed by package name."""
    import numpy
    import sklearn
    import torch

    from attnstore import __version__

    return {
        "attnstore": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
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
