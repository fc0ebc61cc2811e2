"""What the head figures show, loaded from the store or analysed in memory.

``head_figure_data`` reads one (layer, head, sample) of an analysis into a
:class:`HeadFigureData`; ``head_figure_data_live`` builds the same object from attention in
memory with an analysis backend, so a figure drawn live and one drawn from the store can be
compared pixel for pixel. Which run and analysis a figure shows is the store's one lookup
(:meth:`Store.run`, :meth:`Store.analysis`). Nothing here imports matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attnstore.errors import ConfigError, NotFoundError
from attnstore.plots.registry import QUERY_KINDS
from attnstore.schema import full_rows
from attnstore.store import Store, open_store


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
    ``queries``: the clustering of the x and y query rows, keyed 'x' and 'y';
    ``hidden_function``: the function the labels follow, as text (named query
    ``hidden_function``), None where unknown.
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
    hidden_function: str | None = None

    @property
    def n_points(self) -> int:
        return len(self.y)

    @property
    def title(self) -> str:
        return f"layer {self.layer}, head {self.head}, sample {self.sample}"


def run_and_analysis(
    store: Store, run_id: str | None = None, analysis_id: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The runs row and analyses row a figure shows, by the store's one lookup
    (:meth:`Store.analysis`): the given ones, else the latest run (or, given only an
    analysis, that analysis's run) and its latest analysis."""
    analysis = store.analysis(analysis_id, run_id=run_id)
    return store.run(analysis["run_id"]), analysis


def _span(name: str, value: int, n: int, run_id: str) -> None:
    if not 0 <= value < n:
        raise NotFoundError(f"{name} {value} not in run {run_id}; {name}s 0..{n - 1}")


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
    s = open_store(store)
    run, analysis = run_and_analysis(s, run_id, analysis_id)
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
    attention = full_rows(att.column("weights"), T)

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
    from attnstore.queries import run_query

    function = run_query(s, "hidden_function", {"run_id": run_id, "sample": sample})
    return HeadFigureData(
        run_id,
        analysis_id,
        analysis["view"],
        layer,
        head,
        sample,
        attention,
        x,
        y,
        queries,
        function["hidden_function"].iloc[0],
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
    hidden_function: str | None = None,
) -> HeadFigureData:
    """Analyse one head and sample in memory, as ``attnstore analyze`` does with ``backend``,
    and return what the figures show: the seed's ``analyze_attn_matrix`` in a call.

    ``attention`` of shape (2N, 2N) (e.g. ``model(x, y, return_attn=True).attention[layer][sample,
    head]``), ``x`` of shape (N, n_dims), ``y`` of shape (N,); ``view``, ``m`` and the k range
    as for ``attnstore analyze``; ``hidden_function`` as text, for the title. Values are kept
    in the store's types, so a figure drawn from this and one drawn from the stored analysis
    of the same rows are pixel-identical.
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
    return HeadFigureData(
        "", "", view, layer, head, sample, attention, x, y, queries, hidden_function
    )
