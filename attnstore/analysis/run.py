"""Analyse every (layer, head, sample, query kind) of a stored run, from stored rows only.

The flow: read the run's row, its inputs and hidden functions from the store; then for each
chunk of samples read their attention rows, apply the row view, hand every problem of the chunk
to the backend (clustering, choice of k, SVM) and build the tables (``analysis.tables``:
dominant literals, pathways, metrics); commit. Nothing is recomputed from the model. The whole
analysis is one store transaction: visible only when complete.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from attnstore import tasks
from attnstore.analysis.backends import get_backend
from attnstore.analysis.tables import analyse_chunk, analyses_row
from attnstore.analysis.views import View, make_view
from attnstore.errors import ConfigError, NotFoundError
from attnstore.limits import MAX_SMALLINT
from attnstore.model import check_device
from attnstore.provenance import content_id
from attnstore.schema import full_rows
from attnstore.store import Store, open_store
from attnstore.vocab import DEFAULT_BACKEND, DEFAULT_VIEW


@dataclass(frozen=True)
class AnalysisResult:
    analysis_id: str
    existed: bool


def analysis_id_for(run_id: str, params: dict[str, Any]) -> str:
    """The id of an analysis: a hash of its run and every parameter that shapes its tables."""
    return content_id({"run_id": run_id, **params})


@dataclass(frozen=True)
class AnalysisConfig:
    """How an analysis runs, checked once, when it is made (a ConfigError names the value).

    ``backend``: 'torch' (batched, the default) or 'sklearn' (the seed's calls, one problem at
    a time: the reference the torch backend is tested against), on ``device``;
    ``view``: the row view (see ``attnstore.analysis.views``), ``m`` its first kept point;
    ``k_min..k_max``: the k tried, clipped to what the rows allow; ``dominance``: the share of a
    cluster's top SVM score a literal needs to be dominant; ``top_paths``: pathways per cluster;
    ``random_state``: the seed of k-means (the seed notebook's 0 by default), recorded;
    ``chunk_samples``: samples whose attention is read and analysed at once.
    What depends on the run's number of points (``m``, the k that fit) is checked by
    :meth:`plan`.
    """

    backend: str = DEFAULT_BACKEND
    view: str = DEFAULT_VIEW
    m: int | None = None
    k_min: int = 2
    k_max: int = 9
    dominance: float = 0.5
    top_paths: int = 3
    device: str = "cpu"
    random_state: int = 0
    chunk_samples: int = 64

    def __post_init__(self) -> None:
        get_backend(self.backend, self.device, self.random_state)
        check_device(self.device)
        k_min, k_max = self.k_min, self.k_max
        if not 2 <= k_min <= k_max:
            raise ConfigError(
                f"k range {k_min}..{k_max} is empty or below 2; need 2 <= k_min <= k_max"
            )
        if k_max > MAX_SMALLINT:  # k is clipped to a problem's rows anyway; the table holds int16
            raise ConfigError(
                f"k_max={k_max} is above {MAX_SMALLINT}; accepted: 2 <= k_max <= {MAX_SMALLINT}"
            )
        if not 0 < self.dominance <= 1:
            raise ConfigError(f"dominance={self.dominance} must be in (0, 1]")
        if not 1 <= self.top_paths <= MAX_SMALLINT:
            raise ConfigError(
                f"top_paths={self.top_paths}; accepted: 1 <= top_paths <= {MAX_SMALLINT}"
            )
        if self.chunk_samples < 1:
            raise ConfigError(f"chunk_samples={self.chunk_samples} must be at least 1")
        make_view(self.view, self.m)

    def plan(self, n_points: int) -> AnalysisPlan:
        """This analysis for runs of ``n_points`` points, checked against them before anything
        is read or written (``extract_and_analyze`` plans before it extracts)."""
        v = make_view(self.view, self.m, n_points)
        k_values = v.k_values(n_points, self.k_min, self.k_max)
        params = {  # hashed into the id: the same keys and values as ever, so that ids stay
            "backend": self.backend,
            "device": self.device if self.backend == "torch" else "cpu",
            "view": self.view,
            "view_params": v.params(n_points),
            "k_min": self.k_min,
            "k_max": self.k_max,
            "random_state": self.random_state,
            "dominance": self.dominance,
            "top_paths": self.top_paths,
        }
        return AnalysisPlan(self, n_points, v, k_values, params)


@dataclass(frozen=True)
class AnalysisPlan:
    """An :class:`AnalysisConfig` checked against runs of ``n_points`` points: the view, the
    k tried and the parameters hashed into the analysis id."""

    config: AnalysisConfig
    n_points: int
    view: View
    k_values: np.ndarray
    params: dict[str, Any]


def analyze(
    store: str | Path | Store,
    run_id: str | None = None,
    config: AnalysisConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = False,
    command: str = "",
    **params: Any,
) -> AnalysisResult:
    """Analyse a run (the latest if ``run_id`` is None) as ``config`` says; keywords
    (``view="raw", k_max=5``) are its fields, given instead of it or changing it. Returns the
    analysis id and whether it was already stored (then nothing is written unless
    ``overwrite``)."""
    config = AnalysisConfig(**params) if config is None else replace(config, **params)
    s = open_store(store)
    run = s.run(run_id)
    plan = config.plan(run["n_points"])
    return analyze_run(s, run, plan, overwrite=overwrite, progress=progress, command=command)


def analyze_run(
    s: Store,
    run: dict[str, Any],
    plan: AnalysisPlan,
    *,
    overwrite: bool = False,
    progress: bool = False,
    command: str = "",
) -> AnalysisResult:
    """:func:`analyze` of the run ``run`` (its row, :meth:`Store.run`) with a plan made for
    its number of points."""
    if plan.n_points != run["n_points"]:
        raise ConfigError(
            f"the analysis was planned for runs of {plan.n_points} points; run "
            f"{run['run_id']} has {run['n_points']}"
        )
    c = plan.config
    n_samples = run["n_samples"]
    analysis_id = analysis_id_for(run["run_id"], plan.params)
    if s.has("analysis", analysis_id) and not overwrite:  # its record alone: any store size
        return AnalysisResult(analysis_id, existed=True)

    fit = get_backend(c.backend, c.device, c.random_state)
    x, y = s.prompts(run)
    weights = _function_weights(s, run)
    notes: Counter[str] = Counter()
    from attnstore.progress import progress_bar

    bar = progress_bar(total=n_samples, desc="analyze", unit="sample", enabled=progress)
    with s.transaction("analysis", analysis_id, overwrite=overwrite) as txn:
        for lo in range(0, n_samples, c.chunk_samples):
            hi = min(lo + c.chunk_samples, n_samples)
            tables = analyse_chunk(
                _read_attention(s, run, lo, hi),  # (L, H, S, T, T)
                x[lo:hi],
                y[lo:hi],
                None if weights is None else weights[lo:hi],
                lo,
                plan.view,
                plan.k_values,
                fit,
                c.dominance,
                c.top_paths,
            )
            for name, table in tables.items():
                txn.write(name, table)
            notes.update(
                n for ns in tables["fits"].column("notes").to_pylist() for n in ns.split(",") if n
            )
            bar.update(hi - lo)
        bar.close()
        txn.write("analyses", analyses_row(run, plan.params, plan.k_values, notes, command))
    return AnalysisResult(analysis_id, existed=False)


# ---- reading the run ------------------------------------------------------------------------


def _function_weights(s: Store, run: dict[str, Any]) -> np.ndarray | None:
    """Each sample's literal weights (n_samples, n_terms, n_dims), None if not literals."""
    if not tasks.has_literals(run["task"]):
        return None
    t = s.read("functions", run_id=run["run_id"]).sort_by(
        [("sample", "ascending"), ("term", "ascending"), ("literal", "ascending")]
    )
    w = t.column("weight").to_numpy()
    return w.reshape(run["n_samples"], -1, run["n_dims"])


def _read_attention(s: Store, run: dict[str, Any], lo: int, hi: int) -> np.ndarray:
    """Attention of samples lo..hi-1, shape (n_layers, n_heads, hi - lo, 2 N, 2 N) float32."""
    L, H, T = run["n_layers"], run["n_heads"], 2 * run["n_points"]
    out = np.zeros((L, H, hi - lo, T, T), dtype=np.float32)
    where = (pc.field("sample") >= lo) & (pc.field("sample") < hi)
    t = s.read(
        "attention",
        columns=["layer", "head", "sample", "query_pos", "weights"],
        where=where,
        run_id=run["run_id"],
    )
    expected = L * H * (hi - lo) * T
    if t.num_rows != expected:
        raise NotFoundError(
            f"run {run['run_id']}: samples {lo}..{hi - 1} have {t.num_rows} "
            f"attention rows, expected {expected}"
        )
    w = full_rows(t.column("weights"), T)
    idx = (
        t.column("layer").to_numpy(),
        t.column("head").to_numpy(),
        t.column("sample").to_numpy() - lo,
        t.column("query_pos").to_numpy(),
    )
    out[idx] = w
    return out
