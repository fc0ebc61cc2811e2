"""The tables of an analysis, built from what a backend returns for a chunk of samples.

:func:`analyse_chunk` runs the backend on every problem of a chunk (every layer, head, query kind
and sample) and builds the six per-problem tables (``fits``, ``silhouette``, ``clusters``,
``svm_coefs``, ``dominant_literals``, ``pathways``); :func:`analyses_row` builds the seventh, the
one ``analyses`` row that records how they were made. Each table's columns and types are
declared in ``attnstore.schema``.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa

from attnstore.analysis.backends import FitFunction
from attnstore.analysis.backends.base import ClusterResult
from attnstore.analysis.literals import dominant_literals, target_literals
from attnstore.analysis.metrics import eta2, nmi
from attnstore.analysis.pathways import PATH_COLUMNS, cluster_paths, suffixes
from attnstore.analysis.views import View
from attnstore.schema import SCHEMA_VERSION, TABLES
from attnstore.vocab import QUERY_KINDS


def analyse_chunk(
    attn: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None,
    first_sample: int,
    view: View,
    k_values: np.ndarray,
    fit: FitFunction,
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


def analyses_row(
    run: dict[str, Any], params: dict[str, Any], k_values, notes: Counter, command: str
) -> pa.Table:
    """The ``analyses`` row of an analysis of ``run`` (its ``runs`` row) with ``params`` (as
    hashed into the analysis id), the k tried, the count of each note and the command line."""
    from attnstore.provenance import versions

    v = versions()
    return TABLES["analyses"].row(
        {
            "run_id": run["run_id"],
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
            "n_problems": run["n_layers"] * run["n_heads"] * run["n_samples"] * len(QUERY_KINDS),
            "notes_json": json.dumps(dict(sorted(notes.items()))),
            "attnstore_version": v["attnstore"],
            "sklearn_version": v["scikit-learn"],
            "torch_version": v["torch"],
            "schema_version": SCHEMA_VERSION,
            "command": command,
        },
    )
