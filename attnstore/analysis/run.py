"""Analyse every (layer, head, sample, query kind) of a stored run, from stored rows only.

The flow: read the run's row, its inputs and hidden functions from the store; then for each
chunk of samples read their attention rows, apply the row view, hand every problem of the chunk
to the backend (clustering, choice of k, SVM) and build the tables (``analysis.tables``:
dominant literals, pathways, metrics); commit. Nothing is recomputed from the model. The whole
analysis is one store transaction: visible only when complete.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from attnstore import tasks
from attnstore.analysis.backends import get_backend
from attnstore.analysis.backends.base import clip_k_values
from attnstore.analysis.tables import analyse_chunk, analyses_row
from attnstore.analysis.views import make_view
from attnstore.errors import ConfigError, NotFoundError
from attnstore.limits import MAX_SMALLINT
from attnstore.model import check_device
from attnstore.provenance import content_id
from attnstore.schema import full_rows
from attnstore.store import Store, open_store


@dataclass(frozen=True)
class AnalysisResult:
    analysis_id: str
    existed: bool


def analysis_id_for(run_id: str, params: dict[str, Any]) -> str:
    """The id of an analysis: a hash of its run and every parameter that shapes its tables."""
    return content_id({"run_id": run_id, **params})


def analyze(
    store: str | Path | Store,
    run_id: str | None = None,
    backend: str = "torch",
    view: str = "shared_keys",
    m: int | None = None,
    k_min: int = 2,
    k_max: int = 9,
    dominance: float = 0.5,
    top_paths: int = 3,
    device: str = "cpu",
    random_state: int = 0,
    chunk_samples: int = 64,
    overwrite: bool = False,
    progress: bool = False,
    command: str = "",
) -> AnalysisResult:
    """Analyse a run (the latest if ``run_id`` is None); returns the analysis id.

    ``backend``: 'torch' (batched, the default) or 'sklearn' (the seed's calls, one problem at
    a time: the reference the torch backend is tested against);
    ``view``: the row view (see ``attnstore.analysis.views``), ``m`` its first kept point;
    ``k_min..k_max``: the k tried, clipped to what the rows allow; ``dominance``: the share of a
    cluster's top SVM score a literal needs to be dominant; ``top_paths``: pathways per cluster;
    ``random_state``: the seed of k-means (the seed notebook's 0 by default), recorded.
    """
    s = open_store(store)
    run = s.run(run_id)
    fit, v, k_values, params = plan(
        run["n_points"],
        backend,
        view,
        m,
        k_min,
        k_max,
        dominance,
        top_paths,
        device,
        random_state,
        chunk_samples,
    )
    n_samples = run["n_samples"]
    analysis_id = analysis_id_for(run["run_id"], params)
    if analysis_id in s.ids("analysis") and not overwrite:
        return AnalysisResult(analysis_id, existed=True)

    x, y = s.prompts(run)
    weights = _function_weights(s, run)
    notes: Counter[str] = Counter()
    from attnstore.progress import progress_bar

    bar = progress_bar(total=n_samples, desc="analyze", unit="sample", enabled=progress)
    with s.transaction("analysis", analysis_id, overwrite=overwrite) as txn:
        for lo in range(0, n_samples, chunk_samples):
            hi = min(lo + chunk_samples, n_samples)
            tables = analyse_chunk(
                _read_attention(s, run, lo, hi),  # (L, H, S, T, T)
                x[lo:hi],
                y[lo:hi],
                None if weights is None else weights[lo:hi],
                lo,
                v,
                k_values,
                fit,
                dominance,
                top_paths,
            )
            for name, table in tables.items():
                txn.write(name, table)
            notes.update(
                n for ns in tables["fits"].column("notes").to_pylist() for n in ns.split(",") if n
            )
            bar.update(hi - lo)
        bar.close()
        txn.write("analyses", analyses_row(run, params, k_values, notes, command))
    return AnalysisResult(analysis_id, existed=False)


def plan(
    n_points: int,
    backend: str = "torch",
    view: str = "shared_keys",
    m: int | None = None,
    k_min: int = 2,
    k_max: int = 9,
    dominance: float = 0.5,
    top_paths: int = 3,
    device: str = "cpu",
    random_state: int = 0,
    chunk_samples: int = 64,
):
    """Check an analysis's parameters for runs of ``n_points`` points, before anything is read
    or written (``extract_and_analyze`` calls it before extracting); returns the backend's fit
    function, the view, the k tried and the parameters hashed into the analysis id."""
    fit = get_backend(backend, device, random_state)
    check_device(device)
    if not 2 <= k_min <= k_max:
        raise ConfigError(f"k range {k_min}..{k_max} is empty or below 2; need 2 <= k_min <= k_max")
    if k_max > MAX_SMALLINT:  # k is clipped to a problem's rows anyway; the table holds int16
        raise ConfigError(
            f"k_max={k_max} is above {MAX_SMALLINT}; accepted: 2 <= k_max <= {MAX_SMALLINT}"
        )
    if not 0 < dominance <= 1:
        raise ConfigError(f"dominance={dominance} must be in (0, 1]")
    if not 1 <= top_paths <= MAX_SMALLINT:
        raise ConfigError(f"top_paths={top_paths}; accepted: 1 <= top_paths <= {MAX_SMALLINT}")
    if chunk_samples < 1:
        raise ConfigError(f"chunk_samples={chunk_samples} must be at least 1")
    v = make_view(view, m, n_points)
    points = v.points(n_points)
    k_values = clip_k_values(k_min, k_max, len(points))
    if len(k_values) == 0:
        raise ConfigError(
            f"view '{view}' keeps {len(points)} rows per problem of {n_points} points: too few "
            "for any k >= 2 (silhouette needs k <= n_rows - 1); use more points"
        )
    params = {  # hashed into the id: the same keys and values as ever, so that ids stay
        "backend": backend,
        "device": device if backend == "torch" else "cpu",
        "view": view,
        "view_params": v.params(n_points),
        "k_min": k_min,
        "k_max": k_max,
        "random_state": random_state,
        "dominance": dominance,
        "top_paths": top_paths,
    }
    return fit, v, k_values, params


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
