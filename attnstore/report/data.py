"""What the report shows, read from the store as plain values ready for JSON.

Every float is rounded (:func:`clean`), so the same store gives the same bytes; nothing here
knows about HTML. Which run and analysis are shown is the store's one lookup
(:meth:`Store.run`, :meth:`Store.analysis`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from attnstore.plots.registry import HEAD_METRICS, QUERY_KINDS
from attnstore.queries import query
from attnstore.schema import TABLES, full_rows
from attnstore.store import Store

DIGITS = 4  # floats in the report's JSON and tables
RANKINGS = (
    "heads_by_cluster_quality",
    "heads_by_literals",
    "heads_by_label_routing",
    "heads_by_xy_difference",
)
N_CLEANEST = 3  # samples a head page offers besides sample 0: the head's cleanest ones
WEIGHT_SCALE = 1000  # attention weights travel as integers in thousandths


def clean(value: Any) -> Any:
    """``value`` with numpy scalars made Python, floats rounded to DIGITS, NaN as None."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, DIGITS)
    if value is pd.NaT or (not isinstance(value, str | bool | int) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def records(df: pd.DataFrame, columns: list[str] | None = None) -> dict[str, Any]:
    """A table as ``{"columns": [...], "rows": [[...], ...]}``, values cleaned."""
    columns = [c for c in (columns or list(df.columns)) if c in df.columns]
    return {"columns": columns, "rows": clean(df[columns].to_numpy(object).tolist())}


@dataclass(frozen=True)
class Context:
    """The run a report shows, its analysis (None if the run has none) and the latest analysis
    of each of the run's row views (view → analysis id)."""

    store: Store
    run: dict[str, Any]
    analysis: dict[str, Any] | None
    views: dict[str, str]

    @property
    def run_id(self) -> str:
        return self.run["run_id"]

    @property
    def analyze_command(self) -> str:
        return f"attnstore analyze --store {self.store.path} --run {self.run_id}"


def context(s: Store, run_id: str | None, analysis_id: str | None) -> Context:
    """The run (``run_id``, else the analysis's run, else the latest) and its analysis
    (``analysis_id``, else its latest, else None when it has none)."""
    if analysis_id is not None:
        analysis = s.analysis(analysis_id, run_id=run_id)
        run = s.run(analysis["run_id"])
    else:
        run = s.run(run_id)
        ids = s.ids("analysis", run_id=run["run_id"])
        analysis = s.analysis(ids[0]) if ids else None
    views: dict[str, str] = {}
    for a in s.ids("analysis", run_id=run["run_id"]):  # newest first: keep the first per view
        views.setdefault(s.analysis(a)["view"], a)
    if analysis is not None:
        views[analysis["view"]] = analysis["analysis_id"]
    return Context(s, run, analysis, dict(sorted(views.items())))


# --- the overview ---------------------------------------------------------------------------

CARD_FIELDS = (
    "run_id",
    "checkpoint",
    "checkpoint_sha256",
    "task",
    "task_params_json",
    "seed",
    "n_samples",
    "n_points",
    "n_dims",
    "n_layers",
    "n_heads",
    "d_model",
    "accuracy",
    "precision",
    "max_abs_error",
    "attnstore_version",
    "torch_version",
    "python_version",
    "command",
)


def overview(c: Context) -> dict[str, Any]:
    """The run's card, accuracy by point (query run_overview) and the store's contents."""
    acc = query(c.store, "run_overview", run_id=c.run_id).sort_values("point")
    contents = query(c.store, "contents").sort_values(
        ["run_created_at", "run_id", "analysis_created_at", "analysis_id"],
        ascending=False,
        na_position="last",
    )
    contents = contents.drop(columns=["notes_json"], errors="ignore")
    return {
        "card": clean({k: c.run[k] for k in CARD_FIELDS}),
        "accuracy": records(acc),
        "contents": records(contents),
    }


# --- the heads --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricSource:
    """A table of per-head metrics the heads page maps: ``load(context)`` returns a frame
    with columns layer, head, query_kind and the metrics, or None when the store has none."""

    name: str
    metrics: tuple[str, ...]
    load: Any


def _head_summary(c: Context) -> pd.DataFrame | None:
    if c.analysis is None:
        return None
    df = query(c.store, "head_summary")
    return df[df.analysis_id == c.analysis["analysis_id"]]


def _interventions(c: Context) -> pd.DataFrame | None:
    """Per head, the mean change of accuracy over points of each intervention of the run
    (tables ``interventions`` and ``effects``); None where the store has none."""
    need = {
        "interventions": ["intervention_id", "method", "run_id", "target"],
        "effects": ["delta_accuracy", "head", "intervention_id", "layer"],
    }
    for name, cols in need.items():
        if name not in TABLES or not set(cols) <= set(TABLES[name].full_schema.names):
            return None
    runs = c.store.df("interventions", need["interventions"], run_id=c.run_id)
    if runs.empty:
        return None
    frames = []
    for r in runs.sort_values(["method", "target", "intervention_id"]).itertuples():
        e = c.store.df("effects", need["effects"], intervention_id=r.intervention_id)
        mean = e.groupby(["layer", "head"], as_index=False)["delta_accuracy"].mean()
        frames.append(mean.assign(metric=f"delta_accuracy ({r.method}, {r.target})"))
    df = pd.concat(frames).pivot(index=["layer", "head"], columns="metric", values="delta_accuracy")
    return df.reset_index()


# Every source of per-head metrics the heads page offers: add one here to map it too.
METRIC_SOURCES = (
    MetricSource("head_summary", HEAD_METRICS, _head_summary),
    MetricSource("interventions", (), _interventions),  # (): every column it returns
)


def head_maps(c: Context) -> list[dict[str, Any]]:
    """One layer × head map per (source, metric, query kind) the store holds."""
    L, H = int(c.run["n_layers"]), int(c.run["n_heads"])
    maps = []
    for source in METRIC_SOURCES:
        df = source.load(c)
        if df is None:
            continue
        keys = {"layer", "head", "query_kind"}
        for metric in source.metrics or [m for m in df.columns if m not in keys]:
            if metric not in df.columns:
                continue
            for kind in QUERY_KINDS:
                rows = df[df.query_kind == kind] if "query_kind" in df.columns else df
                z = np.full((L, H), np.nan)
                for r in rows.itertuples():
                    z[int(r.layer), int(r.head)] = float(getattr(r, metric))
                name = f"{metric} ({kind} queries)" if "query_kind" in df.columns else metric
                maps.append({"source": source.name, "name": name, "z": clean(z)})
                if "query_kind" not in df.columns:
                    break
    return maps


def rankings(c: Context) -> dict[str, dict[str, Any]]:
    """Each ranking query's rows for the run (and the analysis, where it has one)."""
    out = {}
    for name in RANKINGS:
        if name != "heads_by_label_routing" and c.analysis is None:
            continue  # needs an analysis
        params = {"run_id": c.run_id}
        if name != "heads_by_label_routing":
            params["view"] = c.analysis["view"]
        df = query(c.store, name, **params)
        if "analysis_id" in df.columns:
            df = df[df.analysis_id == c.analysis["analysis_id"]]
        drop = ["analysis_id", "run_id", "view", "backend"]
        sort = ["rank", "layer", "head", *(["query_kind"] if "query_kind" in df else [])]
        df = df.sort_values(sort).drop(columns=drop, errors="ignore")
        out[name] = records(df)
    return out


# --- one head ----------------------------------------------------------------------------------


def cleanest_samples(c: Context) -> pd.DataFrame | None:
    """Per (layer, head) the samples by best silhouette over both query kinds, best first."""
    if c.analysis is None:
        return None
    fits = c.store.df(
        "fits",
        columns=["layer", "head", "sample", "best_silhouette"],
        analysis_id=c.analysis["analysis_id"],
    )
    fits["best_silhouette"] = fits["best_silhouette"].fillna(-2.0)
    best = fits.groupby(["layer", "head", "sample"], as_index=False)["best_silhouette"].max()
    return best.sort_values(
        ["layer", "head", "best_silhouette", "sample"], ascending=[True, True, False, True]
    )


def _of_head(best: pd.DataFrame, layer: int, head: int) -> pd.Series:
    return best[(best["layer"] == layer) & (best["head"] == head)]["sample"]


def cleanest_sample(best: pd.DataFrame, layer: int, head: int) -> int:
    """The sample where the head's clusters are cleanest (its best silhouette highest)."""
    return int(_of_head(best, layer, head).iloc[0])


def samples_shown(c: Context, best: pd.DataFrame | None, layer: int, head: int) -> list[int]:
    """Sample 0 and the head's N_CLEANEST cleanest samples (the first N when no analysis)."""
    n = int(c.run["n_samples"])
    if best is None:
        return list(range(min(n, N_CLEANEST + 1)))
    mine = _of_head(best, layer, head).head(N_CLEANEST)
    return sorted({0, *(int(v) for v in mine)})


def tokens(c: Context, samples: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Per sample, each position's token: kind, point, x as signs, label y."""
    t = c.store.read(
        "inputs",
        columns=["sample", "point", "x", "y"],
        run_id=c.run_id,
        where=pc.field("sample").isin(pa.array(samples, pa.int32())),
    ).to_pandas()
    out: dict[int, list[dict[str, Any]]] = {}
    for sample, rows in t.sort_values(["sample", "point"]).groupby("sample"):
        toks = []
        for r in rows.itertuples():
            x = "".join("+" if v > 0 else "−" for v in r.x)
            common = {"point": int(r.point), "x": x, "y": int(r.y)}
            toks += [{"kind": "x", **common}, {"kind": "y", **common}]
        out[int(sample)] = toks
    return out


def cluster_labels(c: Context, samples: list[int]) -> pd.DataFrame:
    """Cluster labels of every head, for ``samples``, in the latest analysis of each view."""
    frames = []
    for view, a in c.views.items():
        df = c.store.read(
            "clusters",
            columns=["layer", "head", "sample", "query_kind", "point", "label"],
            analysis_id=a,
            where=pc.field("sample").isin(pa.array(samples, pa.int32())),
        ).to_pandas()
        frames.append(df.assign(view=view))
    if not frames:
        return pd.DataFrame(
            columns=["layer", "head", "sample", "query_kind", "point", "label", "view"]
        )
    return pd.concat(frames, ignore_index=True)


def attention(c: Context, layer: int, head: int, samples: list[int]) -> dict[int, np.ndarray]:
    """Per sample, the head's attention of shape (2N, 2N) in thousandths (int)."""
    t = c.store.read(
        "attention",
        columns=["sample", "query_pos", "weights"],
        run_id=c.run_id,
        layer=layer,
        head=head,
        where=pc.field("sample").isin(pa.array(samples, pa.int32())),
    ).sort_by([("sample", "ascending"), ("query_pos", "ascending")])
    T = 2 * int(c.run["n_points"])
    w = full_rows(t.column("weights"), T)
    w = np.rint(w.reshape(-1, T, T) * WEIGHT_SCALE).astype(int)
    order = t.column("sample").to_numpy()[::T]
    return {int(s): w[i] for i, s in enumerate(order)}


def head_views(
    labels: pd.DataFrame, layer: int, head: int, samples: list[int], T: int
) -> dict[str, dict[int, list[int | None]]]:
    """Per view and sample, the cluster label of each query position (None: not clustered)."""
    mine = labels[(labels["layer"] == layer) & (labels["head"] == head)]
    out: dict[str, dict[int, list[int | None]]] = {}
    for view, rows in mine.groupby("view"):
        per: dict[int, list[int | None]] = {}
        for sample in samples:
            col: list[int | None] = [None] * T
            for r in rows[rows["sample"] == sample].itertuples():
                col[2 * int(r.point) + (r.query_kind == "y")] = int(r.label)
            per[sample] = col
        out[str(view)] = per
    return out


def head_clusters(c: Context, layer: int, head: int, sample: int) -> dict[str, Any]:
    """The clusters of one head and sample, x and y queries (query head_clusters)."""
    frames = [
        query(
            c.store,
            "head_clusters",
            run_id=c.run_id,
            view=c.analysis["view"],
            layer=layer,
            head=head,
            sample=sample,
            query_kind=kind,
        )
        for kind in QUERY_KINDS
    ]
    df = pd.concat(frames, ignore_index=True)
    df = df[df.analysis_id == c.analysis["analysis_id"]].sort_values(["query_kind", "cluster"])
    for col in ("points", "dominant"):
        df[col] = [" ".join(map(str, v)) if v is not None else "" for v in df[col]]
    columns = [
        "query_kind",
        "cluster",
        "size",
        "positive_share",
        "points",
        "dominant",
        "n_dominant_in_target",
        "best_k",
        "best_silhouette",
    ]
    return records(df, columns)


def dumps(value: Any) -> str:
    """JSON with sorted keys and no spaces: the same value, the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
