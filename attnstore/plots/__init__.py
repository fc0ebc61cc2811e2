"""Figures drawn from stored rows only: no model, no recomputation.

The flow, one module each::

    registry  FIGURES: every figure kind, its parameters, its draw function (no matplotlib)
    data      rows from the store, through named queries → HeadFigureData
    head      head_figure, silhouette_figure          (kinds head, silhouette)
    heads     heads_figure, head_map                  (kind heads)
    query     query_figure                            (kind query)
    emergence emergence_figure                        (kind emergence)
    style     the fixed style; save_figure (figure_bytes) writes the same bytes every time
    outputs   where outputs may go (never into a store), written whole (figures, query files)
    manifest  plot_figure (one registered kind), plot_manifest (a figures.toml)

Names are re-exported lazily, so ``import attnstore.plots`` (and the command line's
``--help``) loads no matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FIGURES": "registry",
    "FigureKind": "registry",
    "HeadFigureData": "data",
    "Param": "registry",
    "QueryClusters": "data",
    "draw_figure": "manifest",
    "emergence_figure": "emergence",
    "figure_bytes": "style",
    "head_figure": "head",
    "head_figure_data": "data",
    "head_map": "heads",
    "heads_figure": "heads",
    "patching_figure": "patching",
    "paths_figure": "patching",
    "plot_figure": "manifest",
    "plot_manifest": "manifest",
    "query_figure": "query",
    "read_manifest": "manifest",
    "register": "registry",
    "save_figure": "style",
    "silhouette_figure": "head",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
