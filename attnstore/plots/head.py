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
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from attnstore.plots.data import HeadFigureData, QueryClusters, head_figure_data
from attnstore.plots.style import DPI, style
from attnstore.store import Store
from attnstore.vocab import QUERY_KINDS

_NOT_CLUSTERED = "0.85"  # colour of label-strip rows a row view left out
_CLUSTERS = mpl.colormaps["viridis"]  # cluster labels 0..best_k-1 (the default cmap)


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


def _cluster_norm(best_k: int) -> Normalize:
    """Cluster labels 0..best_k-1 onto the colour map (0..1 where there is one cluster)."""
    return Normalize(0, max(best_k - 1, 1))


def _label_strip(fig: Figure, cell, q: QueryClusters, n_points: int, label: str):
    col = q.label_column(n_points)  # (N,), masked where the view kept no row
    strip = np.ma.array(np.tile(col.data, (10, 1)).T, mask=np.tile(col.mask, (10, 1)).T)
    cmap = _CLUSTERS.with_extremes(bad=_NOT_CLUSTERED)
    ax = _image(fig, cell, strip, label, cmap=cmap, norm=_cluster_norm(q.best_k))
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
    """The seed's head figure, panel for panel, from ``data``, with what it needs to be read.

    A 3 × 4 grid (width ratios 0.25, 0.25, 1, 1): the attention quadrants x→x, x→y (middle
    row) and y→x, y→y (bottom row) in ``Purples`` from 0 to 1, a colour bar beside them; left
    of them, the cluster label of each x and y query row (10 wide, the default colour map)
    and the sample's literals ``x >= 0`` (x queries) and labels y (y queries, ``bwr``, 20
    wide); above them, the same literals (one row per input x_j, named) and labels across the
    keys. Top left, the legend of the strips: which colour is x_j = +1 and -1, y = +1 and -1,
    and each cluster. Title ``layer L, head H, sample S``, and beneath it the hidden function
    the labels follow (``target: x1 ∧ ¬x4``) where it is known.

    Where the analysis's row view kept only some points (``shared_keys``, ``per_example``:
    points m..N-1), the label strips show labels for those rows only; the others are masked,
    drawn light grey and marked "not clustered". Differences from the seed, beyond the colour
    bar, the legend, the named inputs and the hidden function: the seed's ``plt.grid(None)``
    *toggles* the grid (it hid the grid of the notebook's style); here the grid is off. The
    margins leave room for the axis labels and the two-line title (the seed's clip them).
    Colour limits are fixed where the seed's autoscaling gives the same limits whenever every
    value occurs (labels 0..best_k-1, literals 0..1, y -1..1), so that a sample with one
    label still reads right.
    """
    with style():
        fig = Figure(figsize=(15, 8), dpi=DPI)
        gs = fig.add_gridspec(3, 4, **_GRID)
        a, N = data.attention, data.n_points
        literals = data.x >= 0  # (N, n_dims)
        y_strip = np.tile(data.y, (20, 1))  # (20, N)
        attn = dict(vmin=0, vmax=1, cmap="Purples")
        _image(fig, gs[1, 2], a[::2, ::2], "attention x→x", **attn)
        xy = _image(fig, gs[1, 3], a[::2, 1::2], "attention x→y", **attn)
        _image(fig, gs[2, 2], a[1::2, ::2], "attention y→x", xlabel="x key", **attn)
        yy = _image(fig, gs[2, 3], a[1::2, 1::2], "attention y→y", xlabel="y key", **attn)
        _label_strip(fig, gs[1, 1], data.queries["x"], N, "clusters x")
        _label_strip(fig, gs[2, 1], data.queries["y"], N, "clusters y")
        _image(fig, gs[1, 0], literals, "literals x query", ylabel="x query", **_LITERALS)
        _image(fig, gs[2, 0], y_strip.T, "labels y query", ylabel="y query", **_LABELS)
        top = _image(fig, gs[0, 2], literals.T, "literals x key", **_LITERALS)
        _image(fig, gs[0, 3], y_strip, "labels y key", **_LABELS)
        n_dims = literals.shape[1]
        top.set_yticks(range(n_dims), [f"x{j}" for j in range(n_dims)], fontsize=7)
        top.tick_params(labelleft=True)
        _attention_colour_bar(fig, yy, xy)
        _legend(fig, data)
        title = data.title
        if data.hidden_function:
            title += f"\ntarget: {data.hidden_function}"
        fig.suptitle(title, y=0.985, va="top")
    return fig


# The seed's grid, its margins widened so that the axis labels and a two-line title fit.
_GRID = dict(
    width_ratios=[0.25, 0.25, 1, 1],
    wspace=0.04,
    hspace=0.04,
    top=0.88,
    bottom=0.09,
    left=0.17,
    right=0.845,
)
_LITERALS = dict(cmap="viridis", vmin=0, vmax=1)  # x >= 0: 1 where x_j = +1
_LABELS = dict(cmap="bwr", vmin=-1, vmax=1)


def _attention_colour_bar(fig: Figure, low, high) -> None:
    """A colour bar for the attention quadrants, beside the right column, from the bottom of
    ``low`` to the top of ``high`` (their places once their aspect is applied)."""
    for ax in (low, high):
        ax.apply_aspect()
    y0, y1 = low.get_position().y0, high.get_position().y1
    cax = fig.add_axes((low.get_position().x1 + 0.012, y0, 0.01, y1 - y0), label="colour bar")
    fig.colorbar(low.get_images()[0], cax=cax, label="attention weight")


def _legend(fig: Figure, data: HeadFigureData) -> None:
    """The legend of the strips, top left: one row each for the inputs, the labels, each
    kind's clusters and, where the view left rows out, those rows."""
    ax = fig.add_axes((0.01, 0.6, 0.27, 0.28), label="legend")
    ax.axis("off")
    lit, lab = mpl.colormaps[_LITERALS["cmap"]], mpl.colormaps[_LABELS["cmap"]]
    entries = [
        ("inputs", [(lit(1.0), "x_j = +1"), (lit(0.0), "x_j = −1")]),
        ("labels", [(lab(1.0), "y = +1"), (lab(0.0), "y = −1")]),
    ]
    left_out = False
    for kind in QUERY_KINDS:
        q = data.queries[kind]
        norm = _cluster_norm(q.best_k)
        swatches = [(_CLUSTERS(norm(c)), str(c)) for c in range(q.best_k)]
        entries.append((f"clusters of {kind} queries (k = {q.best_k})", swatches))
        left_out |= bool(np.ma.getmaskarray(q.label_column(data.n_points)).any())
    if left_out:
        entries.append(
            (f"rows the {data.view} view leaves out", [(_NOT_CLUSTERED, "not clustered")])
        )
    for i, (title, swatches) in enumerate(entries):
        handles = [Patch(facecolor=c, edgecolor="0.5", label=t) for c, t in swatches]
        legend = ax.legend(
            handles=handles,
            title=title,
            loc="upper left",
            bbox_to_anchor=(0, 1 - i / len(entries)),
            ncols=len(handles),
            fontsize="small",
            title_fontsize="small",
            frameon=False,
            alignment="left",
            handlelength=1.2,
            handletextpad=0.4,
            columnspacing=0.9,
            borderaxespad=0,
        )
        ax.add_artist(legend)


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
