"""Every head at once: a layer × head map of one ``head_summary`` metric, values written in.

:func:`head_map` draws any (n_layers, n_heads) array that way; :func:`heads_figure` and
:func:`~attnstore.plots.query.query_figure` both use it. :func:`draw_heads` is the registered
kind ``heads``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from attnstore.errors import ConfigError, NotFoundError, known
from attnstore.plots.data import run_and_analysis
from attnstore.plots.registry import EFFECT_METRICS, HEAD_METRICS, QUERY_KINDS
from attnstore.plots.style import DPI, style
from attnstore.store import Store, open_store


def heads_figure(
    store: str | Path | Store,
    run_id: str | None = None,
    analysis_id: str | None = None,
    metric: str = "mean_silhouette",
    query_kind: str = "x",
    method: str = "zero",
    target: str = "",
) -> Figure:
    """A layer × head map of one ``head_summary`` metric for one query kind, each value
    written in its cell ("–" where the metric is null). An effect metric (``EFFECT_METRICS``)
    maps the run's latest intervention of ``method`` (and knockout ``target``) instead."""
    if metric in EFFECT_METRICS:
        return _effects_figure(open_store(store), run_id, metric, method, target)
    if metric not in HEAD_METRICS:
        known_metrics = known(HEAD_METRICS + EFFECT_METRICS)
        raise ConfigError(f"unknown metric '{metric}'; known: {known_metrics}")
    if query_kind not in QUERY_KINDS:
        raise ConfigError(f"unknown query kind '{query_kind}'; known: {known(QUERY_KINDS)}")
    from attnstore.connection import connect

    s = open_store(store)
    run, analysis = run_and_analysis(s, run_id, analysis_id)
    L, H = int(run["n_layers"]), int(run["n_heads"])
    with connect(s) as con:  # metric is one of HEAD_METRICS: a column name, not a value
        rows = con.execute(
            f"select layer, head, {metric} from head_summary "
            "where analysis_id = $analysis_id and query_kind = $query_kind",
            {"analysis_id": analysis["analysis_id"], "query_kind": query_kind},
        ).fetchall()
    values = _grid(rows, L, H)
    title = (
        f"{metric}, {query_kind} queries\nrun {run['run_id']}, "
        f"analysis {analysis['analysis_id']} ({analysis['view']})"
    )
    return head_map(values, metric, title, integer=metric == "modal_k")


def _effects_figure(s: Store, run_id: str | None, metric: str, method: str, target: str):
    """The map of an effect column of ``head_effect_summary``, for the run's latest
    intervention of ``method`` and ``target`` (newest created_at, the greater id on a tie)."""
    from attnstore.connection import connect

    run = s.run(run_id)
    with connect(s) as con:
        ids = con.execute(
            "select intervention_id from interventions where run_id = $run and method = $method"
            " and target = $target order by created_at desc, intervention_id desc",
            {"run": run["run_id"], "method": method, "target": target},
        ).fetchall()
        if not ids:
            what = f"'{method}'" + (f" ({target})" if target else "")
            flag = f" --target {target}" if target else ""
            raise NotFoundError(
                f"run {run['run_id']} has no intervention {what}; 'attnstore intervene --store "
                f"{s.path} --run {run['run_id']} --method {method}{flag}' makes one"
            )
        rows = con.execute(  # metric is one of EFFECT_METRICS: a column name, not a value
            f"select layer, head, {metric} from head_effect_summary where intervention_id = $id",
            {"id": ids[0][0]},
        ).fetchall()
    values = _grid(rows, int(run["n_layers"]), int(run["n_heads"]))
    what = method + (f" {target}" if target else "")
    title = f"{metric}, {what}\nrun {run['run_id']}, intervention {ids[0][0]}"
    return head_map(values, metric, title)


def _grid(rows: list[tuple], n_layers: int, n_heads: int) -> np.ndarray:
    """(layer, head, value) rows as an (n_layers, n_heads) array, NaN where none or null."""
    values = np.full((n_layers, n_heads), np.nan)
    for layer, head, v in rows:
        values[layer, head] = np.nan if v is None else v
    return values


def head_map(values: np.ndarray, label: str, title: str, integer: bool = False) -> Figure:
    """Values of shape (n_layers, n_heads) as an annotated heat map ("–" where NaN), the
    colour bar named ``label``; ``integer`` writes the values without decimals."""
    L, H = values.shape
    with style():
        fig = Figure(figsize=(1.5 + 1.1 * H, 1.3 + 0.8 * L), dpi=DPI, layout="constrained")
        ax = fig.add_subplot()
        im = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", aspect="auto")
        fig.colorbar(im, ax=ax, label=label)
        fmt = "{:.0f}" if integer else "{:.2f}"
        for (layer, head), v in np.ndenumerate(values):
            shade = im.cmap(im.norm(v)) if np.isfinite(v) else (1, 1, 1, 1)
            dark = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] < 0.5
            text = fmt.format(v) if np.isfinite(v) else "–"
            ax.text(head, layer, text, ha="center", va="center", color="w" if dark else "k")
        ax.set_xticks(range(H))
        ax.set_yticks(range(L))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(title, fontsize="medium")
    return fig


def draw_heads(
    store: Store,
    run: str | None = None,
    analysis: str | None = None,
    *,
    metric: str = "mean_silhouette",
    query_kind: str = "x",
    method: str = "zero",
    target: str = "",
) -> Figure:
    """The registered kind ``heads``: :func:`heads_figure`."""
    return heads_figure(store, run, analysis, metric, query_kind, method, target)
