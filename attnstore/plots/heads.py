"""Every head at once: a layer × head map of one metric, values written in.

:func:`head_map` draws any (n_layers, n_heads) array that way; :func:`heads_figure` and
:func:`~attnstore.plots.query.query_figure` both use it. :func:`draw_heads` is the registered
kind ``heads``. Rows come through named queries only: ``head_summary`` for the cluster and
literal metrics, ``run_interventions`` and ``intervention_effects`` for what a head carries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from attnstore.errors import ConfigError, NotFoundError, known
from attnstore.plots.data import run_and_analysis
from attnstore.plots.style import DPI, style
from attnstore.store import Store, open_store
from attnstore.vocab import EFFECT_METRICS, HEAD_METRICS, QUERY_KINDS


def heads_figure(
    store: str | Path | Store,
    run_id: str | None = None,
    analysis_id: str | None = None,
    metric: str = "mean_silhouette",
    query_kind: str = "x",
    method: str = "zero",
    target: str | None = None,
) -> Figure:
    """A layer × head map of one ``head_summary`` metric for one query kind, each value
    written in its cell ("–" where the metric is null). An effect metric (``EFFECT_METRICS``)
    maps the run's latest intervention of ``method`` and ``target`` instead (no target: the
    one ``attnstore intervene`` gives the method), in a diverging colour map centred at 0."""
    if metric in EFFECT_METRICS:
        return effects_figure(store, run_id, metric, method, target)
    if metric not in HEAD_METRICS:
        known_metrics = known(HEAD_METRICS + EFFECT_METRICS)
        raise ConfigError(f"unknown metric '{metric}'; known: {known_metrics}")
    if query_kind not in QUERY_KINDS:
        raise ConfigError(f"unknown query kind '{query_kind}'; known: {known(QUERY_KINDS)}")
    from attnstore.queries import run_query

    s = open_store(store)
    run, analysis = run_and_analysis(s, run_id, analysis_id)
    asked = {"analysis_id": analysis["analysis_id"], "query_kind": query_kind}
    frame = run_query(s, "head_summary", asked)
    values = _grid(frame, metric, int(run["n_layers"]), int(run["n_heads"]))
    title = (
        f"{metric}, {query_kind} queries\nrun {run['run_id']}, "
        f"analysis {analysis['analysis_id']} ({analysis['view']})"
    )
    return head_map(values, metric, title, integer=metric == "modal_k")


def intervention_kind(method: str, target: str | None = None) -> tuple[str, str]:
    """``(method, target)`` as ``attnstore intervene`` names them: without a target, the one
    intervene gives ``method`` (zero, mean and resample: z); ConfigError naming what is
    accepted for an unknown method, or for knockout without a target."""
    from attnstore.interventions import METHODS, plan  # their one declaration

    if not target:
        ((method, target),) = plan([method], [])
    elif method not in METHODS:
        raise ConfigError(f"unknown method '{method}'; known: {known(METHODS)}")
    return method, target


def latest_intervention(store: Store, run_id: str, method: str, target: str) -> dict[str, Any]:
    """The run's latest intervention of ``method`` and ``target`` that changed each head
    alone, at every query position where there is one (query ``run_interventions``, which
    orders them so): its row. NotFoundError naming those the run has where there is none
    (a joint intervention, which changes a set of heads at once, has no map), and the
    command that makes it."""
    from attnstore.queries import run_query

    asked = {"run_id": run_id, "method": method, "target": target}
    found = run_query(store, "run_interventions", asked).dropna(subset="intervention_id")
    alone = found[found["heads"].isna()]
    if len(alone):
        return alone.iloc[0].to_dict()  # the latest first, all positions first
    has = run_query(store, "run_interventions", {"run_id": run_id}).dropna(subset="method")
    kinds = sorted({f"{m}/{t}" for m, t in zip(has["method"], has["target"], strict=True)})
    has = f"the run has: {', '.join(kinds)}" if kinds else "the run has none"
    if len(found):
        sets = ", ".join(sorted(found["heads"]))
        has = (
            f"the run's change sets of heads together ({sets}), which a map cannot show: it "
            "needs one that changes each head alone"
        )
    flags = _intervene_flags(method, target)
    make = f"; 'attnstore intervene --store {store.path} --run {run_id} {flags}' makes one"
    raise NotFoundError(
        f"no intervention ({method}, {target}) of run {run_id}; {has}{make if flags else ''}"
    )


def _intervene_flags(method: str, target: str) -> str | None:
    """The ``attnstore intervene`` flags that make ``(method, target)``; None if none do."""
    from attnstore.interventions import plan

    for targets in ([], [target]):
        try:
            if plan([method], targets) == [(method, target)]:
                return f"--method {method}" + "".join(f" --target {t}" for t in targets)
        except ConfigError:
            pass
    return None


def effects_figure(
    store: str | Path | Store,
    run_id: str | None,
    metric: str,
    method: str = "zero",
    target: str | None = None,
) -> Figure:
    """The map of an effect column of ``head_effect_summary`` (query
    ``intervention_effects``) for the run's latest intervention of ``method`` and
    ``target``, in a diverging colour map centred at 0."""
    from attnstore.queries import run_query

    if metric not in EFFECT_METRICS:
        raise ConfigError(f"unknown effect metric '{metric}'; known: {known(EFFECT_METRICS)}")
    method, target = intervention_kind(method, target)
    s = open_store(store)
    run = s.run(run_id)
    chosen = latest_intervention(s, run["run_id"], method, target)
    iid = chosen["intervention_id"]
    frame = run_query(s, "intervention_effects", {"run_id": run["run_id"], "intervention_id": iid})
    L, H = int(run["n_layers"]), int(run["n_heads"])
    values = _grid(frame, metric, L, H)
    bounds = None
    if f"{metric}_lower" in frame:  # worst_delta_accuracy has no interval
        bounds = (_grid(frame, f"{metric}_lower", L, H), _grid(frame, f"{metric}_upper", L, H))
    where = chosen["changed_positions"]
    where = "" if where == "all" else f", query positions {where} only"
    title = f"{metric}, {method} ({target}){where}\nrun {run['run_id']}, intervention {iid}"
    if bounds is not None:
        title += "\n95% interval beneath each value (paired bootstrap over prompts)"
    return head_map(values, metric, title, signed=True, bounds=bounds)


def _grid(frame, column: str, n_layers: int, n_heads: int) -> np.ndarray:
    """A frame's (layer, head, column) rows as an (n_layers, n_heads) array, NaN where none
    or null."""
    values = np.full((n_layers, n_heads), np.nan)
    values[frame["layer"].astype(int), frame["head"].astype(int)] = frame[column].astype(float)
    return values


MIN_WIDTH = 6.0  # inches: a map with intervals, whose title says what they are, is never narrower


def head_map(
    values: np.ndarray,
    label: str,
    title: str,
    integer: bool = False,
    signed: bool = False,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> Figure:
    """Values of shape (n_layers, n_heads) as an annotated heat map ("–" where NaN), the
    colour bar named ``label``; ``integer`` writes the values without decimals. ``signed``
    values (a change, such as an intervention's delta) are drawn in a diverging colour map
    centred at 0, its limits symmetric (±the largest magnitude), so that white is no change.
    ``bounds``, the lower and upper ends of each value's interval (each of the shape of
    ``values``), are written beneath it as ``[lower, upper]`` where both are finite."""
    L, H = values.shape
    if signed:
        finite = np.abs(values[np.isfinite(values)])
        limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        cmap, norm = "RdBu", Normalize(-limit, limit)
    else:
        cmap, norm = "viridis", None
    with style():
        cell = (1.1, 0.8) if bounds is None else (1.4, 1.0)  # inches: a value, its interval
        width = 1.5 + cell[0] * H if bounds is None else max(1.5 + cell[0] * H, MIN_WIDTH)
        fig = Figure(figsize=(width, 1.3 + cell[1] * L), dpi=DPI, layout="constrained")
        ax = fig.add_subplot()
        im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
        fig.colorbar(im, ax=ax, label=label)
        fmt = "{:.0f}" if integer else "{:.2f}"
        for (layer, head), v in np.ndenumerate(values):
            shade = im.cmap(im.norm(v)) if np.isfinite(v) else (1, 1, 1, 1)
            dark = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] < 0.5
            text = fmt.format(v) if np.isfinite(v) else "–"
            if bounds is not None and np.isfinite(bounds[0][layer, head] + bounds[1][layer, head]):
                lo, hi = (fmt.format(b[layer, head]) for b in bounds)
                text += f"\n[{lo}, {hi}]"
            size = "medium" if bounds is None else "small"
            ax.text(
                head, layer, text, ha="center", va="center", color="w" if dark else "k",
                fontsize=size,
            )  # fmt: skip
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
    target: str | None = None,
) -> Figure:
    """The registered kind ``heads``: :func:`heads_figure`."""
    return heads_figure(store, run, analysis, metric, query_kind, method, target)
