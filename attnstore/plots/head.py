"""One head of one prompt: the seed notebook's head figure and its silhouette curves.

- :func:`head_figure`: the seed's ``analyze_attn_matrix`` figure, redrawn panel for panel: a
  3 × 4 grid of the four attention quadrants (x→x, x→y, y→x, y→y), the cluster labels of the
  x and y query rows, the inputs' literals and the labels y.
- :func:`silhouette_figure`: the seed's silhouette-vs-k curves, x and y queries.

Both draw a :class:`~attnstore.plots.data.HeadFigureData`, from the store or from a live
analysis; :func:`draw_head` and :func:`draw_silhouette` are the registered kinds ``head`` and
``silhouette``, which read it from the store.
"""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from attnstore.plots.data import HeadFigureData, QueryClusters, head_figure_data
from attnstore.plots.registry import QUERY_KINDS
from attnstore.plots.style import DPI, style
from attnstore.store import Store

_NOT_CLUSTERED = "0.85"  # colour of label-strip rows a row view left out


def _image(fig: Figure, cell, data, label: str, xlabel=None, ylabel=None, **kwargs):
    """One panel of the head figure: an image, tick labels hidden except where it has an axis
    label (as in the seed), named ``label`` for whoever inspects the figure."""
    ax = fig.add_subplot(cell, label=label)
    ax.imshow(data, **kwargs)
    ax.grid(False)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.tick_params(labelbottom=bool(xlabel), labelleft=bool(ylabel))
    return ax


def _label_strip(fig: Figure, cell, q: QueryClusters, n_points: int, label: str):
    col = q.label_column(n_points)  # (N,), masked where the view kept no row
    strip = np.ma.array(np.tile(col.data, (10, 1)).T, mask=np.tile(col.mask, (10, 1)).T)
    cmap = mpl.colormaps["viridis"].with_extremes(bad=_NOT_CLUSTERED)  # the default cmap
    ax = _image(fig, cell, strip, label, cmap=cmap, vmin=0, vmax=max(q.best_k - 1, 1))
    left_out = np.flatnonzero(col.mask)
    if len(left_out):
        ax.text(
            4.5,
            (left_out[0] + left_out[-1]) / 2,
            "not clustered",
            rotation=90,
            ha="center",
            va="center",
            fontsize=7,
            color="0.35",
        )
    return ax


def head_figure(data: HeadFigureData) -> Figure:
    """The seed's head figure, panel for panel, from ``data``.

    A 3 × 4 grid (width ratios 0.25, 0.25, 1, 1): the attention quadrants x→x, x→y (middle
    row) and y→x, y→y (bottom row) in ``Purples`` from 0 to 1; left of them, the cluster label
    of each x and y query row (10 wide, the default colour map) and the sample's literals
    ``x >= 0`` (x queries) and labels y (y queries, ``bwr``, 20 wide); above them, the same
    literals and labels across the keys. Title ``layer L, head H, round S``.

    Where the analysis's row view kept only some points (``shared_keys``, ``per_example``:
    points m..N-1), the label strips show labels for those rows only; the others are masked,
    drawn light grey and marked "not clustered". Differences from the seed, none visible on a
    raw analysis: the seed's ``plt.grid(None)`` *toggles* the grid (it hid the grid of the
    notebook's style); here the grid is off. Colour limits are fixed where the seed's
    autoscaling gives the same limits whenever every value occurs (labels 0..best_k-1,
    literals 0..1, y -1..1), so that a sample with one label still reads right.
    """
    with style():
        fig = Figure(figsize=(15, 8), dpi=DPI)
        gs = fig.add_gridspec(
            3,
            4,
            width_ratios=[0.25, 0.25, 1, 1],
            wspace=0.04,
            hspace=0.04,
            top=0.95,
            bottom=0.05,
            left=0.17,
            right=0.845,
        )
        a, N = data.attention, data.n_points
        literals = data.x >= 0  # (N, n_dims)
        y_strip = np.tile(data.y, (20, 1))  # (20, N)
        attn = dict(vmin=0, vmax=1, cmap="Purples")
        _image(fig, gs[1, 2], a[::2, ::2], "attention x→x", **attn)
        _image(fig, gs[1, 3], a[::2, 1::2], "attention x→y", **attn)
        _image(fig, gs[2, 2], a[1::2, ::2], "attention y→x", xlabel="x key", **attn)
        _image(fig, gs[2, 3], a[1::2, 1::2], "attention y→y", xlabel="y key", **attn)
        _label_strip(fig, gs[1, 1], data.queries["x"], N, "clusters x")
        _label_strip(fig, gs[2, 1], data.queries["y"], N, "clusters y")
        lit = dict(cmap="viridis", vmin=0, vmax=1)  # the default cmap
        ys = dict(cmap="bwr", vmin=-1, vmax=1)
        _image(fig, gs[1, 0], literals, "literals x query", ylabel="x query", **lit)
        _image(fig, gs[2, 0], y_strip.T, "labels y query", ylabel="y query", **ys)
        _image(fig, gs[0, 2], literals.T, "literals x key", **lit)
        _image(fig, gs[0, 3], y_strip, "labels y key", **ys)
        fig.suptitle(data.title)
    return fig


def silhouette_figure(data: HeadFigureData) -> Figure:
    """The seed's silhouette-vs-k curves: one line per query kind ("scores x", "scores y"),
    with gaps where a k was skipped."""
    with style():
        fig = Figure(dpi=DPI)
        ax = fig.add_subplot()
        for kind in QUERY_KINDS:
            q = data.queries[kind]
            ax.plot(q.k_values, q.silhouette, label=f"scores {kind}")
        ax.legend()
        ax.set_xlabel("k")
        ax.set_ylabel("silhouette score")
        ax.set_title(data.title)
    return fig


def draw_head(
    store: Store,
    run: str | None = None,
    analysis: str | None = None,
    *,
    layer: int,
    head: int,
    sample: int,
) -> Figure:
    """The registered kind ``head``: :func:`head_figure` of rows read from ``store``."""
    return head_figure(head_figure_data(store, run, analysis, layer, head, sample))


def draw_silhouette(
    store: Store,
    run: str | None = None,
    analysis: str | None = None,
    *,
    layer: int,
    head: int,
    sample: int,
) -> Figure:
    """The registered kind ``silhouette``: :func:`silhouette_figure` of rows read from
    ``store``."""
    return silhouette_figure(head_figure_data(store, run, analysis, layer, head, sample))
