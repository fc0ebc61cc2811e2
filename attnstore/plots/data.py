"""What the head figures show, read from the store through named queries.

``head_figure_data`` reads one (layer, head, sample) of an analysis into a
:class:`HeadFigureData`; :func:`attnstore.pipeline.head_figure_data_live` builds the same
object from attention in memory with an analysis backend, so a figure drawn live and one
drawn from the store can be compared pixel for pixel. Which run and analysis a figure shows
is the store's one lookup (:meth:`Store.run`, :meth:`Store.analysis`). Nothing here imports
matplotlib, nor the analysis.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from attnstore.errors import NotFoundError
from attnstore.store import Store, open_store
from attnstore.vocab import QUERY_KINDS

if TYPE_CHECKING:
    from attnstore.queries import Reader


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
    reader: Reader | None = None,
) -> HeadFigureData:
    """Read one (layer, head, sample) of an analysis from the store, through the named queries
    head_attention, sample_inputs, head_cluster_labels, head_silhouette and hidden_function
    (on ``reader``'s connection where given: a caller drawing many figures opens one); run
    and analysis default to the latest. A layer, head or sample outside the run raises
    NotFoundError naming the range there is."""
    from attnstore.queries import Reader

    s = open_store(store)
    run, analysis = run_and_analysis(s, run_id, analysis_id)
    run_id, analysis_id = run["run_id"], analysis["analysis_id"]
    _span("layer", layer, run["n_layers"], run_id)
    _span("head", head, run["n_heads"], run_id)
    _span("sample", sample, run["n_samples"], run_id)
    N, D = int(run["n_points"]), int(run["n_dims"])
    T = 2 * N
    with Reader(s) if reader is None else nullcontext(reader) as r:
        one = {"layer": layer, "head": head, "sample": sample}
        att = r.query("head_attention", run_id=run_id, **one)
        inputs = r.query("sample_inputs", run_id=run_id, sample=sample)
        labels = r.query("head_cluster_labels", analysis_id=analysis_id, **one)
        sil = r.query("head_silhouette", analysis_id=analysis_id, **one)
        function = r.query("hidden_function", run_id=run_id, sample=sample)
    if len(att) != T:
        raise NotFoundError(
            f"run {run_id}: layer {layer}, head {head}, sample {sample} has {len(att)} "
            f"attention rows, expected {T}"
        )
    attention = rows_of(att["full_weights"], T)
    x = rows_of(inputs["x"], D).astype(np.int8)  # (N, n_dims)
    y = inputs["y"].to_numpy().astype(np.int8)
    queries = {}
    for kind in QUERY_KINDS:
        c, k = labels[labels.query_kind == kind], sil[sil.query_kind == kind]
        if c.empty:
            raise NotFoundError(
                f"analysis {analysis_id} has no clusters of {kind} queries for layer {layer}, "
                f"head {head}, sample {sample}"
            )
        queries[kind] = QueryClusters(
            points=c.point.to_numpy(np.int16),
            labels=c.cluster.to_numpy(np.int16),
            best_k=int(c.best_k.iloc[0]),
            k_values=k.k.to_numpy(np.int16),
            silhouette=k.silhouette.to_numpy(np.float32, na_value=np.nan),
        )
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


def rows_of(column: Any, width: int) -> np.ndarray:
    """A query's column of equal-length lists (full_weights, x) as float32 of shape
    (n_rows, ``width``)."""
    out = np.zeros((len(column), width), dtype=np.float32)
    for i, row in enumerate(column):
        out[i] = row
    return out
