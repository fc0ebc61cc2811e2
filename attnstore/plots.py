"""Figures drawn from stored rows only: no model, no recomputation.

- :func:`head_figure`: the seed notebook's head figure (``analyze_attn_matrix``), redrawn
  panel for panel: a 3 × 4 grid of the four attention quadrants (x→x, x→y, y→x, y→y), the
  cluster labels of the x and y query rows, the inputs' literals and the labels y.
- :func:`silhouette_figure`: the seed's silhouette-vs-k curves, x and y queries.
- :func:`heads_figure`: a layer × head map of one ``head_summary`` metric, values written in.
- :func:`plot_manifest`: every figure a ``figures.toml`` lists, rebuilt from the store.

Loading and drawing are separate: ``head_figure_data`` reads one (layer, head, sample) of an
analysis into a :class:`HeadFigureData`; ``head_figure_data_live`` builds the same object from
attention in memory with the reference backend, so a figure drawn live and one drawn from the
store can be compared pixel for pixel. Drawing uses ``matplotlib.figure.Figure`` (no pyplot, no
global backend) under matplotlib's default style, whatever style the caller has set, and
:func:`save_figure` writes PNG, SVG and PDF files that are byte-identical from run to run.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib as mpl
import matplotlib.style
import numpy as np
from matplotlib.figure import Figure

from attnstore.errors import ConfigError, NotFoundError, known
from attnstore.store import Store

QUERY_KINDS = ("x", "y")
HEAD_METRICS = (
    "mean_silhouette",
    "median_silhouette",
    "modal_k",
    "modal_k_share",
    "mean_svm_accuracy",
    "mean_nmi_y",
    "mean_eta2_point",
    "literal_precision",
    "literal_recall",
    "chance_precision",
    "precision_lift",
)
FORMATS = (".pdf", ".png", ".svg")
FIGURE_KINDS = ("head", "heads", "silhouette")
DPI = 100
# Fixed metadata: no dates, no version strings, so the same figure always has the same bytes.
_METADATA = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None},
}
_RC = {"svg.hashsalt": "attnstore", "figure.dpi": DPI, "savefig.dpi": DPI}
_NOT_CLUSTERED = "0.85"  # colour of label-strip rows a row view left out


@contextlib.contextmanager
def _style() -> Iterator[None]:
    """matplotlib's default style plus fixed hashing and dpi, whatever the caller has set."""
    with mpl.style.context("default"), mpl.rc_context(_RC):
        yield


# --- data ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryClusters:
    """One query kind's clustering of one head and sample.

    ``points``: the points whose rows were clustered, shape (n_rows,) (all points for the raw
    view, points m..N-1 for shared_keys and per_example); ``labels``: their cluster labels,
    shape (n_rows,); ``best_k``: the chosen k (1 where no clustering was possible);
    ``k_values``: the k tried, shape (K,); ``silhouette``: the score of each, shape (K,), NaN
    where skipped.
    """

    points: np.ndarray
    labels: np.ndarray
    best_k: int
    k_values: np.ndarray
    silhouette: np.ndarray

    def label_column(self, n_points: int) -> np.ma.MaskedArray:
        """Labels of all ``n_points`` points, shape (n_points,), masked where not clustered."""
        out = np.ma.masked_all(n_points, dtype=np.int16)
        out[self.points] = self.labels
        return out


@dataclass(frozen=True)
class HeadFigureData:
    """Everything the head and silhouette figures show for one (layer, head, sample).

    ``attention``: shape (2N, 2N), query_pos × key_pos over ``x1, y1, ..., xN, yN``;
    ``x``: the sample's inputs, shape (N, n_dims), ±1; ``y``: its labels, shape (N,), ±1;
    ``queries``: the clustering of the x and y query rows, keyed 'x' and 'y'.
    """

    run_id: str
    analysis_id: str
    view: str
    layer: int
    head: int
    sample: int
    attention: np.ndarray
    x: np.ndarray
    y: np.ndarray
    queries: dict[str, QueryClusters]

    @property
    def n_points(self) -> int:
        return len(self.y)

    @property
    def title(self) -> str:
        return f"layer {self.layer}, head {self.head}, round {self.sample}"


def _open(store: str | Path | Store) -> Store:
    return store if isinstance(store, Store) else Store(store)


def _span(name: str, value: int, n: int, run_id: str) -> None:
    if not 0 <= value < n:
        raise NotFoundError(f"{name} {value} not in run {run_id}; {name}s 0..{n - 1}")


def resolve(
    store: str | Path | Store, run_id: str | None = None, analysis_id: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The runs row and analyses row a figure shows: the given ones, else the latest run (or
    the run of the given analysis) and its latest analysis."""
    s = _open(store)
    analyses = s.read("analyses").to_pandas().sort_values("created_at", ignore_index=True)
    if analysis_id is not None and run_id is None:
        mine = analyses[analyses.analysis_id == analysis_id]
        if mine.empty:
            raise NotFoundError(
                f"unknown analysis '{analysis_id}'; in the store: {known(s.keys('analysis'))}"
            )
        run_id = str(mine.run_id.iloc[0])
    runs = s.runs()
    if runs.empty:
        raise NotFoundError(f"store '{s.path}' holds no run; 'attnstore extract' makes one")
    run_id = run_id or str(runs.run_id.iloc[-1])
    run = runs[runs.run_id == run_id]
    if run.empty:
        raise NotFoundError(f"unknown run '{run_id}'; in the store: {known(list(runs.run_id))}")
    mine = analyses[analyses.run_id == run_id]
    if mine.empty:
        raise NotFoundError(
            f"run {run_id} has no analysis; 'attnstore analyze --store {s.path} --run {run_id}' "
            "makes one"
        )
    analysis_id = analysis_id or str(mine.analysis_id.iloc[-1])
    chosen = mine[mine.analysis_id == analysis_id]
    if chosen.empty:
        listed = [f"{a} ({v})" for a, v in zip(mine.analysis_id, mine.view, strict=True)]
        raise NotFoundError(
            f"analysis '{analysis_id}' not in run {run_id}; its analyses: {known(listed)}"
        )
    return run.iloc[0].to_dict(), chosen.iloc[0].to_dict()


def head_figure_data(
    store: str | Path | Store,
    run_id: str | None,
    analysis_id: str | None,
    layer: int,
    head: int,
    sample: int,
) -> HeadFigureData:
    """Read one (layer, head, sample) of an analysis from the store; run and analysis default
    to the latest. A layer, head or sample outside the run raises NotFoundError naming the
    range there is."""
    s = _open(store)
    run, analysis = resolve(s, run_id, analysis_id)
    run_id, analysis_id = run["run_id"], analysis["analysis_id"]
    _span("layer", layer, run["n_layers"], run_id)
    _span("head", head, run["n_heads"], run_id)
    _span("sample", sample, run["n_samples"], run_id)
    N, D = int(run["n_points"]), int(run["n_dims"])
    T = 2 * N

    att = s.read(
        "attention",
        columns=["query_pos", "weights"],
        run_id=run_id,
        layer=layer,
        head=head,
        sample=sample,
    ).sort_by("query_pos")
    if att.num_rows != T:
        raise NotFoundError(
            f"run {run_id}: layer {layer}, head {head}, sample {sample} has {att.num_rows} "
            f"attention rows, expected {T}"
        )
    attention = att.column("weights").combine_chunks().flatten().to_numpy().reshape(T, T)

    inp = s.read("inputs", columns=["point", "x", "y"], run_id=run_id, sample=sample)
    inp = inp.sort_by("point")
    x = inp.column("x").combine_chunks().flatten().to_numpy().reshape(N, D).astype(np.int8)
    y = inp.column("y").to_numpy().astype(np.int8)

    problem = dict(analysis_id=analysis_id, layer=layer, head=head, sample=sample)
    clusters = s.read("clusters", columns=["query_kind", "point", "best_k", "label"], **problem)
    sil = s.read("silhouette", columns=["query_kind", "k", "silhouette"], **problem)
    clusters = clusters.to_pandas().sort_values(["query_kind", "point"])
    sil = sil.to_pandas().sort_values(["query_kind", "k"])
    queries = {}
    for kind in QUERY_KINDS:
        c, k = clusters[clusters.query_kind == kind], sil[sil.query_kind == kind]
        if c.empty:
            raise NotFoundError(
                f"analysis {analysis_id} has no clusters of {kind} queries for layer {layer}, "
                f"head {head}, sample {sample}"
            )
        queries[kind] = QueryClusters(
            points=c.point.to_numpy(np.int16),
            labels=c.label.to_numpy(np.int16),
            best_k=int(c.best_k.iloc[0]),
            k_values=k.k.to_numpy(np.int16),
            silhouette=k.silhouette.to_numpy(np.float32, na_value=np.nan),
        )
    return HeadFigureData(
        run_id, analysis_id, analysis["view"], layer, head, sample, attention, x, y, queries
    )


def head_figure_data_live(
    attention: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    layer: int,
    head: int,
    sample: int,
    view: str = "raw",
    m: int | None = None,
    k_min: int = 2,
    k_max: int = 9,
    backend: str = "torch",
) -> HeadFigureData:
    """Analyse one head and sample in memory, as ``attnstore analyze`` does with ``backend``,
    and return what the figures show: the seed's ``analyze_attn_matrix`` in a call.

    ``attention`` of shape (2N, 2N) (e.g. ``model(x, y, return_attn=True)[1][layer][sample,
    head]``), ``x`` of shape (N, n_dims), ``y`` of shape (N,); ``view``, ``m`` and the k range
    as for ``attnstore analyze``. Values are kept in the store's types, so a figure drawn from
    this and one drawn from the stored analysis of the same rows are pixel-identical.
    """
    from attnstore.analysis.backends import get_backend
    from attnstore.analysis.backends.base import clip_k_values
    from attnstore.analysis.views import make_view

    attention = np.asarray(attention, dtype=np.float32)
    x, y = np.asarray(x).astype(np.int8), np.asarray(y).astype(np.int8)
    N = len(y)
    if attention.shape != (2 * N, 2 * N) or x.shape[0] != N:
        raise ConfigError(
            f"attention of shape {attention.shape} and x of shape {x.shape} do not fit "
            f"y of {N} points; need ({2 * N}, {2 * N}) and ({N}, n_dims)"
        )
    v = make_view(view, m, N)
    points = v.points(N)
    k_values = clip_k_values(k_min, k_max, len(points))
    if len(k_values) == 0:
        raise ConfigError(f"view '{view}' keeps {len(points)} rows: too few for any k >= 2")
    fit = get_backend(backend)
    queries = {}
    for kind in QUERY_KINDS:
        rows = v.apply(attention[None], kind)  # (1, n_rows, n_keys)
        r = fit(rows, x[None, points].astype(np.float32), k_values)
        queries[kind] = QueryClusters(
            points=points.astype(np.int16),
            labels=r.labels_[0].astype(np.int16),
            best_k=int(r.best_k_[0]),
            k_values=k_values.astype(np.int16),
            silhouette=r.silhouette_[0].astype(np.float32),
        )
    return HeadFigureData("", "", view, layer, head, sample, attention, x, y, queries)


# --- drawing ---------------------------------------------------------------------------------


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
    with _style():
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
    with _style():
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


def heads_figure(
    store: str | Path | Store,
    run_id: str | None = None,
    analysis_id: str | None = None,
    metric: str = "mean_silhouette",
    query_kind: str = "x",
) -> Figure:
    """A layer × head map of one ``head_summary`` metric for one query kind, each value
    written in its cell ("–" where the metric is null)."""
    if metric not in HEAD_METRICS:
        raise ConfigError(f"unknown metric '{metric}'; known: {known(HEAD_METRICS)}")
    if query_kind not in QUERY_KINDS:
        raise ConfigError(f"unknown query kind '{query_kind}'; known: {known(QUERY_KINDS)}")
    from attnstore.connection import connect

    s = _open(store)
    run, analysis = resolve(s, run_id, analysis_id)
    L, H = int(run["n_layers"]), int(run["n_heads"])
    with connect(s) as con:  # metric is one of HEAD_METRICS: a column name, not a value
        rows = con.execute(
            f"select layer, head, {metric} from head_summary "
            "where analysis_id = $analysis_id and query_kind = $query_kind",
            {"analysis_id": analysis["analysis_id"], "query_kind": query_kind},
        ).fetchall()
    values = np.full((L, H), np.nan)
    for layer, head, v in rows:
        values[layer, head] = np.nan if v is None else v
    title = (
        f"{metric}, {query_kind} queries\nrun {run['run_id']}, "
        f"analysis {analysis['analysis_id']} ({analysis['view']})"
    )
    return _head_map(values, metric, title, integer=metric == "modal_k")


def query_figure(frame, column: str, query_kind: str | None = None, title: str = "") -> Figure:
    """A layer × head map of one numeric column of a query's output (a DataFrame with
    ``layer`` and ``head`` columns, e.g. ``attnstore.query(store, "heads_by_literals")``).
    ``query_kind`` keeps the rows of one query kind where the output has that column; each
    (layer, head) must then occur once (narrow the query with its parameters otherwise)."""
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
    return _head_map(values, column, title or f"{column}{kind}", integer=False)


def _head_map(values: np.ndarray, label: str, title: str, integer: bool) -> Figure:
    """Values of shape (n_layers, n_heads) as an annotated heat map ("–" where NaN)."""
    L, H = values.shape
    with _style():
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


# --- files -----------------------------------------------------------------------------------


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as .png, .svg or .pdf (from the suffix), byte-identical from run to run:
    fixed dpi, no dates or version strings in the metadata, a fixed SVG id salt. The file is
    written beside its destination and moved into place, so it is never seen half-written."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(f"figure file '{path}' must end in one of: {known(FORMATS)}")
    fmt = path.suffix.lower()[1:]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with _style():
            fig.savefig(tmp, format=fmt, dpi=DPI, metadata=_METADATA[fmt])
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# --- manifest --------------------------------------------------------------------------------

_KEYS = {
    "head": ({"layer", "head", "sample", "out"}, {"kind", "run", "analysis"}),
    "silhouette": ({"layer", "head", "sample", "out"}, {"kind", "run", "analysis"}),
    "heads": ({"out"}, {"kind", "run", "analysis", "metric", "query_kind"}),
}


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - the tomli backport, a dependency on Python 3.10 only
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise NotFoundError(f"figure manifest '{path}' does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"figure manifest '{path}' is not valid TOML: {e}") from None


def read_manifest(path: str | Path) -> tuple[str | None, list[dict[str, Any]]]:
    """The manifest's store (or None) and its checked ``[[figure]]`` entries, each with its
    ``out`` resolved against the manifest's folder.

    A manifest::

        store = "store"            # optional; relative to this file; --store overrides it

        [[figure]]
        kind = "head"              # head | silhouette | heads
        run = "0f3c..."            # optional: the latest run
        analysis = "9ab1..."       # optional: the run's latest analysis
        layer = 1
        head = 0
        sample = 3
        out = "figures/head.png"   # .png, .svg or .pdf; relative to this file

        [[figure]]
        kind = "heads"
        metric = "mean_silhouette" # a head_summary column (default mean_silhouette)
        query_kind = "x"           # x (default) or y
        out = "figures/heads.pdf"
    """
    path = Path(path)
    doc = _read_toml(path)
    unknown = set(doc) - {"store", "figure"}
    if unknown:
        raise ConfigError(
            f"figure manifest '{path}': unknown keys {known(sorted(unknown))}; known: figure, store"
        )
    figures = doc.get("figure", [])
    if not isinstance(figures, list) or not figures:
        raise ConfigError(f"figure manifest '{path}' lists no [[figure]]")
    entries = []
    for i, f in enumerate(figures, 1):
        kind = f.get("kind")
        if kind not in _KEYS:
            raise ConfigError(
                f"figure {i} of '{path}': unknown kind '{kind}'; known: {known(FIGURE_KINDS)}"
            )
        required, optional = _KEYS[kind]
        if missing := required - set(f):
            raise ConfigError(f"figure {i} of '{path}' ({kind}): missing {known(sorted(missing))}")
        if extra := set(f) - required - optional:
            raise ConfigError(
                f"figure {i} of '{path}' ({kind}): unknown keys {known(sorted(extra))}; "
                f"known: {known(sorted(required | optional))}"
            )
        entries.append({**f, "out": path.parent / f["out"]})
    store = doc.get("store")
    return (None if store is None else str(path.parent / store)), entries


def plot_manifest(
    store: str | Path | Store | None, manifest: str | Path, progress: bool = False
) -> list[Path]:
    """Rebuild every figure of ``manifest`` from ``store`` (None: the manifest's ``store``);
    returns the files written. Every entry's rows are read before any file is written, so a
    manifest naming something not in the store writes nothing."""
    from tqdm.auto import tqdm

    from_file, entries = read_manifest(manifest)
    if store is None and from_file is None:
        raise ConfigError(f"figure manifest '{manifest}' names no store; give one (--store)")
    s = _open(store if store is not None else from_file)
    jobs = []
    for i, e in enumerate(entries, 1):
        try:
            if e["kind"] == "heads":
                opts = {k: e[k] for k in ("metric", "query_kind") if k in e}
                jobs.append((heads_figure(s, e.get("run"), e.get("analysis"), **opts), e["out"]))
                continue
            data = head_figure_data(
                s, e.get("run"), e.get("analysis"), e["layer"], e["head"], e["sample"]
            )
        except NotFoundError as err:
            raise NotFoundError(f"figure {i} ({e['out'].name}): {err}") from None
        draw = head_figure if e["kind"] == "head" else silhouette_figure
        jobs.append((draw(data), e["out"]))
    bar = tqdm(jobs, desc="plot", unit="figure", disable=not progress, file=sys.stderr)
    return [save_figure(fig, out) for fig, out in bar]
