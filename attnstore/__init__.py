"""attnstore: attention interpretability of small in-context learners, as data you can query.

Names are re-exported lazily, so ``import attnstore`` loads neither torch nor pandas. No module
of the package bears the name of an export (``extract`` lives in ``attnstore.extraction``,
``train`` in ``attnstore.training``), so importing a module, which binds it onto the package,
never replaces an exported function.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "AnalysisConfig": "attnstore.analysis.run",
    "AttnStoreError": "attnstore.errors",
    "ExtractConfig": "attnstore.extraction",
    "InContextModel": "attnstore.model",
    "ModelConfig": "attnstore.model",
    "Store": "attnstore.store",
    "connect": "attnstore.connection",
    "extract": "attnstore.extraction",
    "TrainConfig": "attnstore.training",
    "analyze": "attnstore.analysis.run",
    "evaluate": "attnstore.training",
    "load_checkpoint": "attnstore.checkpoint",
    "query": "attnstore.queries",
    "sample_task": "attnstore.tasks",
    "train": "attnstore.training",
}

__all__ = sorted(["__version__", *_EXPORTS])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'attnstore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
