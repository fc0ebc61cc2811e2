"""Analyse every (layer, head, sample, query kind) of a stored run, from stored rows only.

For each chunk of samples: read their attention rows from the store, apply the row view, hand
all problems of the chunk to the backend (clustering, choice of k, SVM), then derive dominant
literals and pathways and write every table. Nothing is recomputed from the model. The whole
analysis is one store transaction: visible only when complete.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from attnstore import tasks
from attnstore.analysis.literals import dominant_literals, target_literals
from attnstore.analysis.pathways import PATH_COLUMNS, cluster_paths, suffixes
from attnstore.analysis.result import ClusterResult, clip_k_values
from attnstore.analysis.views import QUERY_KINDS, View, make_view
from attnstore.errors import ConfigError, NotFoundError, known
from attnstore.model import check_device
from attnstore.schema import SCHEMA_VERSION, TABLES
from attnstore.store import Store

BACKENDS = ("sklearn", "torch")
RANDOM_STATE = 0  # the seed's KMeans(random_state=0)


@dataclass(frozen=True)
class AnalysisResult:
    analysis_id: str
    existed: bool


@dataclass(frozen=True)
class _Run:
    run_id: str
    task: str
    n_layers: int
    n_heads: int
    n_points: int
    n_samples: int
    n_dims: int


def latest_run(store: Store) -> str:
    runs = store.runs()
    if runs.empty:
        raise NotFoundError(f"store '{store.path}' holds no run; 'attnstore extract' makes one")
    return str(runs.run_id.iloc[-1])


def _load_run(store: Store, run_id: str | None) -> _Run:
    run_id = run_id or latest_run(store)
    rows = store.read("runs", run_id=run_id).to_pylist()
    if not rows:
        raise NotFoundError(f"unknown run '{run_id}'; in the store: {known(store.keys('run'))}")
    r = rows[0]
    return _Run(
        run_id, r["task"], r["n_layers"], r["n_heads"], r["n_points"], r["n_samples"], r["n_dims"]
    )


def analysis_id_for(run_id: str, params: dict[str, Any]) -> str:
    key = json.dumps({"run_id": run_id, **params}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


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
    cluster's top SVM score a literal needs to be dominant; ``top_paths``: pathways per cluster.
    """
    s = store if isinstance(store, Store) else Store(store)
    run = _load_run(s, run_id)
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend '{backend}'; known: {known(BACKENDS)}")
    if backend == "sklearn" and device != "cpu":
        raise ConfigError(f"backend 'sklearn' runs on the cpu only (got device '{device}')")
    check_device(device)
    if not 2 <= k_min <= k_max:
        raise ConfigError(f"k range {k_min}..{k_max} is empty or below 2; need 2 <= k_min <= k_max")
    if not 0 < dominance <= 1:
        raise ConfigError(f"dominance={dominance} must be in (0, 1]")
    if top_paths < 1 or chunk_samples < 1:
        raise ConfigError(f"top_paths={top_paths} and chunk_samples={chunk_samples} must be >= 1")
    v = make_view(view, m, run.n_points)
    points = v.points(run.n_points)
    k_values = clip_k_values(k_min, k_max, len(points))
    if len(k_values) == 0:
        raise ConfigError(
            f"view '{view}' keeps {len(points)} rows per problem: too few for any k >= 2 "
            "(silhouette needs k <= n_rows - 1)"
        )
    params = {
        "backend": backend,
        "device": device if backend == "torch" else "cpu",
        "view": view,
        "view_params": v.params(run.n_points),
        "k_min": k_min,
        "k_max": k_max,
        "random_state": RANDOM_STATE,
        "dominance": dominance,
        "top_paths": top_paths,
    }
    analysis_id = analysis_id_for(run.run_id, params)
    if analysis_id in s.keys("analysis") and not overwrite:
        return AnalysisResult(analysis_id, existed=True)

    fit = get_backend(backend, device)
    inputs = _inputs(s, run)
    weights = _function_weights(s, run)
    notes: Counter[str] = Counter()
    from tqdm.auto import tqdm

    bar = tqdm(
        total=run.n_samples, desc="analyze", unit="sample", disable=not progress, file=sys.stderr
    )
    with s.transaction("analysis", analysis_id, overwrite=overwrite) as txn:
        for lo in range(0, run.n_samples, chunk_samples):
            hi = min(lo + chunk_samples, run.n_samples)
            attn = _read_attention(s, run, lo, hi)  # (L, H, S, T, T)
            tables = analyse_chunk(
                attn,
                inputs[0][lo:hi],
                inputs[1][lo:hi],
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
        txn.write("analyses", _analyses_row(run, params, k_values, notes, command))
    return AnalysisResult(analysis_id, existed=False)


def get_backend(backend: str, device: str = "cpu"):
    """The fit function of a backend: ``fit(rows, x, k_values) -> ClusterResult``."""
    if backend == "sklearn":
        from attnstore.analysis.sklearn_backend import fit_sklearn

        return fit_sklearn
    from attnstore.analysis.torch_backend import fit_torch

    def fit(rows, x, k_values):
        return fit_torch(rows, x, k_values, device=device, seed=RANDOM_STATE)

    return fit


def _inputs(s: Store, run: _Run) -> tuple[np.ndarray, np.ndarray]:
    t = s.read("inputs", run_id=run.run_id).sort_by(
        [("sample", "ascending"), ("point", "ascending")]
    )
    x = t.column("x").combine_chunks().flatten().to_numpy().astype(np.float32)
    x = x.reshape(run.n_samples, run.n_points, run.n_dims)
    y = t.column("y").to_numpy().astype(np.int8).reshape(run.n_samples, run.n_points)
    return x, y


def _function_weights(s: Store, run: _Run) -> np.ndarray | None:
    """Each sample's literal weights (n_samples, n_terms, n_dims), None if not literals."""
    if not tasks.has_literals(run.task):
        return None
    t = s.read("functions", run_id=run.run_id).sort_by(
        [("sample", "ascending"), ("term", "ascending"), ("literal", "ascending")]
    )
    w = t.column("weight").to_numpy()
    return w.reshape(run.n_samples, -1, run.n_dims)


def _read_attention(s: Store, run: _Run, lo: int, hi: int) -> np.ndarray:
    T = 2 * run.n_points
    out = np.zeros((run.n_layers, run.n_heads, hi - lo, T, T), dtype=np.float32)
    where = (pc.field("sample") >= lo) & (pc.field("sample") < hi)
    t = s.read(
        "attention",
        columns=["layer", "head", "sample", "query_pos", "weights"],
        where=where,
        run_id=run.run_id,
    )
    w = t.column("weights").combine_chunks().flatten().to_numpy().reshape(-1, T)
    idx = (
        t.column("layer").to_numpy(),
        t.column("head").to_numpy(),
        t.column("sample").to_numpy() - lo,
        t.column("query_pos").to_numpy(),
    )
    out[idx] = w
    expected = run.n_layers * run.n_heads * (hi - lo) * T
    if t.num_rows != expected:
        raise NotFoundError(
            f"run {run.run_id}: samples {lo}..{hi - 1} have {t.num_rows} "
            f"attention rows, expected {expected}"
        )
    return out


def analyse_chunk(
    attn: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None,
    first_sample: int,
    view: View,
    k_values: np.ndarray,
    fit,
    dominance: float,
    top_paths: int,
) -> dict[str, pa.Table]:
    """All tables for a chunk: attention of shape (n_layers, n_heads, S, T, T), inputs x of shape
    (S, n_points, n_dims), labels y of shape (S, n_points), literal weights or None."""
    L, H, S, T, _ = attn.shape
    points = view.points(T // 2)
    # Problems in (layer, head, kind, sample) order.
    keys = [(layer, head, kind) for layer in range(L) for head in range(H) for kind in QUERY_KINDS]
    rows = np.concatenate([view.apply(attn[layer, head], kind) for layer, head, kind in keys])
    feats = np.tile(x[:, points], (len(keys), 1, 1))
    result = fit(rows, feats, k_values)
    ids = {
        "layer": np.repeat([k[0] for k in keys], S).astype(np.int16),
        "head": np.repeat([k[1] for k in keys], S).astype(np.int16),
        "query_kind": np.repeat([k[2] for k in keys], S),
        "sample": np.tile(np.arange(first_sample, first_sample + S, dtype=np.int32), len(keys)),
    }
    sample_idx = ids["sample"] - first_sample
    mean_attn = attn.mean(axis=1)  # (L, S, T, T): heads averaged
    suf = suffixes(mean_attn, top_paths)
    return {
        "fits": _fits_table(ids, rows, result, y[:, points][sample_idx], points),
        "silhouette": _silhouette_table(ids, result),
        "clusters": _clusters_table(ids, result, points),
        "svm_coefs": _svm_table(ids, result),
        "dominant_literals": _literals_table(ids, result, feats, weights, sample_idx, dominance),
        "pathways": _pathways_table(ids, result, attn, suf, sample_idx, points, y, top_paths),
    }


def _repeat_ids(ids: dict[str, np.ndarray], counts: np.ndarray) -> dict[str, Any]:
    return {k: np.repeat(v, counts) for k, v in ids.items()}


def _fits_table(ids, rows, r: ClusterResult, y_rows, points) -> pa.Table:
    P, N, _ = rows.shape
    sil = np.where(np.isnan(r.silhouette_), -np.inf, r.silhouette_)
    order = np.sort(sil, axis=1)
    best = order[:, -1] if sil.shape[1] else np.full(P, -np.inf)
    runner = order[:, -2] if sil.shape[1] > 1 else np.full(P, -np.inf)
    clustered = r.best_k_ >= 2

    def nullable(v: np.ndarray) -> pa.Array:  # NaN (no clustering, no SVM) is stored as null
        return pa.array(np.asarray(v, dtype=np.float32), from_pandas=True)

    return pa.table(
        {
            **ids,
            "n_rows": np.full(P, N, dtype=np.int16),
            "n_distinct_rows": r.n_distinct_rows_.astype(np.int16),
            "best_k": r.best_k_.astype(np.int16),
            "best_silhouette": nullable(np.where(np.isfinite(best), best, np.nan)),
            "runner_up_silhouette": nullable(np.where(np.isfinite(runner), runner, np.nan)),
            "svm_accuracy": nullable(r.svm_accuracy_),
            "nmi_y": nullable(np.where(clustered, nmi(r.labels_, y_rows > 0), np.nan)),
            "eta2_point": nullable(np.where(clustered, eta2(r.labels_, points), np.nan)),
            "notes": pa.array(r.notes_.astype(str)),
        }
    )


def _one_hot(labels: np.ndarray) -> np.ndarray:
    """(P, N) non-negative ints -> (P, N, max + 1) float64 indicators."""
    return (labels[..., None] == np.arange(labels.max() + 1)).astype(np.float64)


def nmi(labels: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Normalised mutual information (arithmetic mean of the entropies, as scikit-learn's
    ``normalized_mutual_info_score``) between two labellings of shape (P, N), per problem."""
    a, b = _one_hot(labels), _one_hot(other.astype(np.int64))
    joint = np.einsum("pnk,pnc->pkc", a, b) / labels.shape[1]  # (P, Ka, Kb)
    pa, pb = joint.sum(2), joint.sum(1)

    def xlogx(v):
        return np.where(v > 0, v * np.log(np.where(v > 0, v, 1)), 0.0)

    outer = pa[:, :, None] * pb[:, None, :]
    mi = np.where(
        joint > 0, joint * np.log(np.where(joint > 0, joint, 1) / np.where(outer > 0, outer, 1)), 0
    ).sum((1, 2))
    h_a, h_b = -xlogx(pa).sum(1), -xlogx(pb).sum(1)
    single = ((pa > 0).sum(1) == 1) & ((pb > 0).sum(1) == 1)
    norm = np.maximum((h_a + h_b) / 2, np.finfo(np.float64).eps)
    return np.where(single, 1.0, np.where(mi <= 0, 0.0, np.maximum(mi, 0) / norm))


def eta2(labels: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Share of the variance of ``points`` (N,) explained by each problem's clusters (P, N)."""
    var = points.var()
    if var == 0:
        return np.full(len(labels), np.nan)
    onehot = _one_hot(labels)  # (P, N, K)
    counts = onehot.sum(1)  # (P, K)
    means = np.einsum("pnk,n->pk", onehot, points) / np.maximum(counts, 1)
    between = (counts * (means - points.mean()) ** 2).sum(1) / len(points)
    return between / var


def _silhouette_table(ids, r: ClusterResult) -> pa.Table:
    P, K = r.silhouette_.shape
    return pa.table(
        {
            **_repeat_ids(ids, np.full(P, K)),
            "k": np.tile(r.k_values.astype(np.int16), P),
            "silhouette": pa.array(r.silhouette_.reshape(-1).astype(np.float32), from_pandas=True),
            "inertia": pa.array(r.inertia_.reshape(-1).astype(np.float32), from_pandas=True),
        }
    )


def _clusters_table(ids, r: ClusterResult, points) -> pa.Table:
    P, N = r.labels_.shape
    return pa.table(
        {
            **_repeat_ids(ids, np.full(P, N)),
            "point": np.tile(points.astype(np.int16), P),
            "query_pos": np.zeros(P * N, dtype=np.int16)
            + (  # x rows at 2i, y rows at 2i + 1
                2 * np.tile(points, P) + (np.repeat(ids["query_kind"], N) == "y")
            ).astype(np.int16),
            "best_k": np.repeat(r.best_k_, N).astype(np.int16),
            "label": r.labels_.reshape(-1).astype(np.int16),
        }
    )


def _svm_table(ids, r: ClusterResult) -> pa.Table:
    P, C, F = r.coef_.shape
    counts = r.n_coef_rows_ * F
    cols: dict[str, list] = {
        "class_index": [],
        "literal": [],
        "cluster": [],
        "coef": [],
        "intercept": [],
        "n_classes": [],
    }
    for p in np.flatnonzero(r.n_coef_rows_):
        n = int(r.n_coef_rows_[p])
        classes = np.unique(r.labels_[p])
        clusters = classes[1:] if n == 1 else classes
        cols["class_index"].append(np.repeat(np.arange(n), F))
        cols["literal"].append(np.tile(np.arange(F), n))
        cols["cluster"].append(np.repeat(clusters, F))
        cols["coef"].append(r.coef_[p, :n].reshape(-1))
        cols["intercept"].append(np.repeat(r.intercept_[p, :n], F))
        cols["n_classes"].append(np.full(n * F, len(classes)))
    cat = {k: (np.concatenate(v) if v else np.array([])) for k, v in cols.items()}
    return pa.table(
        {
            **_repeat_ids(ids, counts),
            "class_index": cat["class_index"].astype(np.int16),
            "literal": cat["literal"].astype(np.int16),
            "cluster": cat["cluster"].astype(np.int16),
            "coef": cat["coef"].astype(np.float32),
            "intercept": cat["intercept"].astype(np.float32),
            "n_classes": cat["n_classes"].astype(np.int16),
            "accuracy": pa.array(
                np.repeat(r.svm_accuracy_, counts).astype(np.float32), from_pandas=True
            ),
        }
    )


def _literals_table(ids, r: ClusterResult, feats, weights, sample_idx, dominance) -> pa.Table:
    d = dominant_literals(r.labels_, feats, r.coef_, r.n_coef_rows_, dominance)
    problem = d.pop("problem")
    if weights is None:
        in_target = pa.nulls(len(problem), pa.bool_())
    else:
        target = target_literals(weights)  # (S, 2, n_dims)
        in_target = target[sample_idx[problem], (d["sign"] < 0).astype(int), d["literal"]]
    return pa.table({**{k: v[problem] for k, v in ids.items()}, **d, "in_target": in_target})


def _pathways_table(ids, r: ClusterResult, attn, suf, sample_idx, points, y, top_paths) -> pa.Table:
    clustered = np.flatnonzero(r.best_k_ >= 2)
    qpos = 2 * points[None, :] + (ids["query_kind"][clustered] == "y")[:, None]  # (P', n_rows)
    d = cluster_paths(
        attn,
        suf,
        ids["layer"][clustered],
        ids["head"][clustered],
        sample_idx[clustered],
        qpos,
        r.labels_[clustered],
        top_paths,
    )
    problem = clustered[d.pop("problem")]
    types = TABLES["pathways"].schema
    dst = d["dst_pos"].astype(np.int64)
    cols = {c: pa.array(d[c], type=types.field(c).type) for c in PATH_COLUMNS}
    return pa.table(
        {
            **{k: v[problem] for k, v in ids.items()},
            **cols,
            "dst_kind": pa.array(np.where(dst % 2 == 0, "x", "y").astype(str)),
            "dst_point": (dst // 2).astype(np.int16),
            "dst_y": y[sample_idx[problem], dst // 2].astype(np.int8),
        }
    )


def _analyses_row(run: _Run, params: dict, k_values, notes: Counter, command: str) -> pa.Table:
    from attnstore.provenance import versions

    v = versions()

    row = {
        "run_id": run.run_id,
        "created_at": datetime.now(timezone.utc),
        "backend": params["backend"],
        "device": params["device"],
        "view": params["view"],
        "view_params_json": json.dumps(params["view_params"], sort_keys=True),
        "k_min": params["k_min"],
        "k_max": params["k_max"],
        "k_values": [int(k) for k in k_values],
        "random_state": params["random_state"],
        "dominance": params["dominance"],
        "top_paths": params["top_paths"],
        "params_json": json.dumps(params, sort_keys=True),
        "n_problems": run.n_layers * run.n_heads * run.n_samples * len(QUERY_KINDS),
        "notes_json": json.dumps(dict(sorted(notes.items()))),
        "attnstore_version": v["attnstore"],
        "sklearn_version": v["scikit-learn"],
        "torch_version": v["torch"],
        "schema_version": SCHEMA_VERSION,
        "command": command,
    }
    schema = TABLES["analyses"].schema
    return pa.table({k: pa.array([v], type=schema.field(k).type) for k, v in row.items()})
