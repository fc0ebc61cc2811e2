"""Metric against training step, one line per head, the model's accuracy beneath:
:func:`emergence_figure`, and :func:`draw_emergence`, the registered kind ``emergence``.

Read through the named queries only, the lineage chosen in SQL (``$lineage``):
``head_emergence`` (the metric of every head at every step, and the step it emerged at) and
``accuracy_over_training`` (the model's accuracy per position at every step, next to the
majority and elimination baselines).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from attnstore.errors import ConfigError, NotFoundError, known
from attnstore.plots.style import DPI, style
from attnstore.store import Store
from attnstore.vocab import DEFAULT_VIEW

# head_emergence's interval of value, where the metric has one (a band around each line)
INTERVAL = ("value_lower", "value_upper")
BASELINES = (  # accuracy_over_training's columns, drawn in the lower panel
    ("model_accuracy", "model", "k", "-"),
    ("majority_accuracy", "majority baseline", "tab:gray", ":"),
    ("elimination_accuracy", "elimination baseline", "tab:gray", "--"),
)


def _one_lineage(store: Store, heads, lineage: str | None, asked: dict[str, Any], what: str):
    """The lineage of ``heads`` (head_emergence's rows for ``asked``, of ``lineage`` where
    given) where they form one; ConfigError naming them where they form several;
    NotFoundError where there are none, naming the lineages there are for ``asked``."""
    found = sorted(heads["lineage"].unique())
    if len(found) == 1:
        return str(found[0])
    if found:
        raise ConfigError(
            f"the runs form several lineages ({known(found)}); choose one with --lineage (or "
            "narrow them with --task and --seed)"
        )
    if lineage is not None:
        from attnstore.queries import run_query

        there = sorted(run_query(store, "head_emergence", asked)["lineage"].unique())
        if there:
            raise NotFoundError(f"no lineage '{lineage}' has {what}; the store's: {known(there)}")
    raise NotFoundError(
        f"no {what}: the store holds no run with a train_step (and an analysis of the view) "
        "that matches; 'attnstore sweep' writes one per checkpoint"
    )


def emergence_figure(
    heads, accuracy, threshold: float | None = None, title: str = "", late_from: int | None = None
) -> Figure:
    """Two panels sharing the training-step axis: above, ``heads`` (``head_emergence``'s
    output for one lineage and one query kind) as one line per head, its 95% interval as a
    band where the query gives one (``value_lower``, ``value_upper``), a marker where it
    emerged and ``threshold`` dashed; beneath, ``accuracy`` (``accuracy_over_training``'s
    output for the same lineage) as the mean over the points from ``late_from`` on (default:
    the second half of the prompt) of the model's accuracy and of the baselines."""
    metric = str(heads["metric"].iloc[0])
    n_points = int(accuracy["point"].max()) + 1
    late_from = n_points // 2 if late_from is None else late_from
    late = accuracy[accuracy["point"] >= late_from]
    with style():
        fig = Figure(figsize=(7.5, 6.0), dpi=DPI, layout="constrained")
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
        for (layer, head), rows in heads.sort_values("train_step").groupby(
            ["layer", "head"], sort=True
        ):
            steps = rows["train_step"].to_numpy(float)
            values = rows["value"].to_numpy(float)
            (line,) = top.plot(steps, values, marker=".", label=f"L{layer} H{head}")
            if INTERVAL[0] in rows and rows[INTERVAL[0]].notna().any():
                lower, upper = (rows[c].to_numpy(float) for c in INTERVAL)
                top.fill_between(steps, lower, upper, color=line.get_color(), alpha=0.2, lw=0)
            emerged = rows["emerged_at"].dropna()
            if len(emerged):
                at = float(emerged.iloc[0])
                top.plot([at], values[steps == at], "o", ms=8, mfc="none", color=line.get_color())
        if threshold is not None:
            top.axhline(threshold, color="0.4", ls="--", lw=1, label=f"threshold {threshold:g}")
        if INTERVAL[0] in heads and heads[INTERVAL[0]].notna().any():
            method = heads["interval_method"].dropna().iloc[0].replace("_", " ")
            title += f"\nbands: 95% interval ({method}); emerged: lower bound above threshold"
        top.set_ylabel(metric)
        top.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
        top.set_title(title, fontsize="medium")
        per_step = late.groupby("train_step", sort=True)
        for column, label, colour, dash in BASELINES:
            means = per_step[column].mean()
            if means.notna().any():
                bottom.plot(
                    means.index.to_numpy(float),
                    means.to_numpy(float),
                    color=colour,
                    ls=dash,
                    marker="." if column == "model_accuracy" else None,
                    label=label,
                )
        bottom.set_ylabel(f"accuracy, points {late_from}..{n_points - 1}")
        bottom.set_xlabel("training step")
        bottom.set_ylim(-0.02, 1.02)
        bottom.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
        steps = np.unique(np.concatenate([heads["train_step"], accuracy["train_step"]]))
        if len(steps) <= 20:
            bottom.set_xticks(steps.astype(float))
    return fig


def draw_emergence(
    store: Store,
    *,
    metric: str,
    query_kind: str = "x",
    view: str = DEFAULT_VIEW,
    threshold: float = 0.5,
    task: str | None = None,
    seed: int | None = None,
    lineage: str | None = None,
) -> Figure:
    """The registered kind ``emergence``: ``head_emergence`` for ``metric`` and
    ``accuracy_over_training`` on ``store``, drawn by :func:`emergence_figure`."""
    from attnstore.queries import run_query

    narrow: dict[str, Any] = {"task": task, "seed": seed}
    asked = {"metric": metric, "view": view, "threshold": threshold, "query_kind": query_kind}
    asked |= narrow
    heads = run_query(store, "head_emergence", asked | {"lineage": lineage})
    chosen = _one_lineage(
        store, heads, lineage, asked, f"'{metric}' of {query_kind} queries ({view})"
    )
    accuracy = run_query(store, "accuracy_over_training", narrow | {"lineage": chosen})
    row = heads.iloc[0]
    title = (
        f"{metric}, {query_kind} queries ({view}) over training\n"
        f"{row['task']}, seed {row['seed']}, lineage {chosen}"
    )
    return emergence_figure(heads, accuracy, threshold, title)
