"""Any named query's output as a layer × head map: :func:`query_figure`, and
:func:`draw_query`, the registered kind ``query``."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from attnstore.errors import ConfigError, NotFoundError, known
from attnstore.plots.heads import head_map
from attnstore.store import Store


def query_figure(frame, column: str, query_kind: str | None = None, title: str = "") -> Figure:
    """A layer × head map of one numeric column of a query's output (a DataFrame with
    ``layer`` and ``head`` columns, e.g. ``attnstore.query(store, "heads_by_literals")``).
    ``query_kind`` keeps the rows of one query kind where the output has that column; each
    (layer, head) must then occur once (narrow the query with its parameters otherwise). A
    change (a column named ``delta_*`` or ``*_delta_*``) is drawn in a diverging colour map
    centred at 0."""
    missing = [c for c in ("layer", "head", column) if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"the query's output has no column {', '.join(missing)}; a head map needs layer, "
            f"head and the column to map; its columns: {known(list(frame.columns))}"
        )
    if query_kind is not None and "query_kind" in frame.columns:
        frame = frame[frame["query_kind"] == query_kind]
    if frame.empty:
        raise NotFoundError("the query returned no rows to map")
    if frame.duplicated(["layer", "head"]).any():
        raise ConfigError(
            "the query's output has several rows per (layer, head): narrow it with its "
            "parameters (e.g. view=..., and --query-kind for x/y outputs)"
        )
    try:
        numbers = frame[column].astype(float)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"column '{column}' is not numeric: {e}") from e
    values = np.full((int(frame["layer"].max()) + 1, int(frame["head"].max()) + 1), np.nan)
    values[frame["layer"].astype(int), frame["head"].astype(int)] = numbers
    kind = f", {query_kind} queries" if query_kind else ""
    signed = column.startswith("delta_") or "_delta_" in column
    return head_map(values, column, title or f"{column}{kind}", signed=signed)


def draw_query(
    store: Store,
    query: str,
    *,
    column: str,
    params: dict[str, Any] | None = None,
    query_kind: str | None = None,
) -> Figure:
    """The registered kind ``query``: run the named ``query`` on ``store`` with ``params``
    and map its ``column`` (titled ``NAME: column[, kind queries]``)."""
    from attnstore.queries import run_query

    frame = run_query(store, query, params or {})
    kind = f", {query_kind} queries" if query_kind else ""
    return query_figure(frame, column, query_kind, title=f"{query}: {column}{kind}")
