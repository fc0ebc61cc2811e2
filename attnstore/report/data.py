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
from attnstore.schema import full_rows
from attnstore.store import Store

DIGITS = 4  # floats in the report's JSON and tables
RANKINGS = (
    "heads_by_cluster_quality",
    "heads_by_literals",
    "heads_by_label_routing",
    "heads_by_xy_difference",
)
N_SAMPLES = 3  # samples a head page offers: without an analysis, the first ones
# Why a head page offers a sample (columns <role>_sample of query head_samples), in the order
# the sample picker lists them; the page opens on the first.
SAMPLE_ROLES = ("typical", "cleanest", "least_clean")
EFFECT_MAP = "late_delta_accuracy"  # the intervention maps' column of intervention_effects
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
    (``analysis_id``, else its latest, else None when it has none), by the store's lookup."""
    if analysis_id is None and not s.ids("analysis", run_id=s.run(run_id)["run_id"]):
        run, analysis = s.run(run_id), None
    else:
        analysis = s.analysis(analysis_id, run_id=run_id)
        run = s.run(analysis["run_id"])
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


def head_maps(c: Context) -> list[dict[str, Any]]:
    """One layer × head map per head metric and query kind of the analysis (query
    head_summary), then one per intervention of the run (:func:`intervention_maps`)."""
    return summary_maps(c) + intervention_maps(c)


def _grid(c: Context, df: pd.DataFrame, column: str) -> list[list[float | None]]:
    """``column`` of rows with layer and head columns as an (n_layers, n_heads) grid, None
    where a head has no row or a null."""
    z = np.full((int(c.run["n_layers"]), int(c.run["n_heads"])), np.nan)
    z[df["layer"].to_numpy(int), df["head"].to_numpy(int)] = df[column].to_numpy(float)
    return clean(z)


def summary_maps(c: Context) -> list[dict[str, Any]]:
    """Per metric of HEAD_METRICS and query kind, its map (none without an analysis)."""
    if c.analysis is None:
        return []
    aid = c.analysis["analysis_id"]
    per_kind = {
        k: query(c.store, "head_summary", analysis_id=aid, query_kind=k) for k in QUERY_KINDS
    }
    return [
        {
            "source": "head_summary",
            "name": f"{metric} ({kind} queries)",
            "signed": False,
            "z": _grid(c, per_kind[kind], metric),
        }
        for metric in HEAD_METRICS
        for kind in QUERY_KINDS
    ]


def intervention_maps(c: Context) -> list[dict[str, Any]]:
    """Per intervention of the run (query run_interventions: by method, target, the latest
    first), the change of accuracy over the late points when each head is changed
    (EFFECT_MAP of query intervention_effects): signed, drawn on a scale centred at 0."""
    runs = query(c.store, "run_interventions", run_id=c.run_id).dropna(subset=["intervention_id"])
    maps = []
    for r in runs.itertuples(index=False):
        df = query(
            c.store, "intervention_effects", run_id=c.run_id, intervention_id=r.intervention_id
        )
        seed = "" if pd.isna(r.resample_seed) else f", seed {int(r.resample_seed)}"
        name = f"{EFFECT_MAP}, {r.method} {r.target}{seed} (intervention {r.intervention_id})"
        maps.append(
            {
                "source": "interventions",
                "intervention_id": r.intervention_id,
                "name": name,
                "signed": True,
                "z": _grid(c, df, EFFECT_MAP),
            }
        )
    return maps


def rankings(c: Context) -> dict[str, dict[str, Any]]:
    """Each ranking query's rows for the run (and the analysis, where it has one)."""
    out = {}
    for name in RANKINGS:
        if name != "heads_by_label_routing" and c.analysis is None:
            continue  # needs an analysis
        params = {"run_id": c.run_id}
        if name != "heads_by_label_routing":
            params["analysis_id"] = c.analysis["analysis_id"]
        df = query(c.store, name, **params)
        drop = ["analysis_id", "run_id", "view", "backend"]
        sort = ["rank", "layer", "head", *(["query_kind"] if "query_kind" in df else [])]
        df = df.sort_values(sort).drop(columns=drop, errors="ignore")
        out[name] = records(df)
    return out


# --- one head ----------------------------------------------------------------------------------


def head_samples(c: Context) -> dict[tuple[int, int], dict[str, Any]] | None:
    """Per (layer, head), its row of query head_samples: its typical, cleanest and least
    clean sample and their silhouettes (None without an analysis)."""
    if c.analysis is None:
        return None
    df = query(c.store, "head_samples", analysis_id=c.analysis["analysis_id"])
    return {(int(r["layer"]), int(r["head"])): r for r in df.to_dict("records")}


def samples_shown(
    c: Context, choices: dict[tuple[int, int], dict[str, Any]] | None, layer: int, head: int
) -> dict[int, str]:
    """The samples a head page offers, each with why, in the order of SAMPLE_ROLES (the page
    opens on the first, the typical one); without an analysis, the first N_SAMPLES."""
    if choices is None:
        return {s: "" for s in range(min(int(c.run["n_samples"]), N_SAMPLES))}
    r = choices[(layer, head)]
    roles: dict[int, list[str]] = {}
    for role in SAMPLE_ROLES:
        roles.setdefault(int(r[f"{role}_sample"]), []).append(role)
    return {
        s: ", ".join(n.replace("_", " ") for n in names)
        + f" (silhouette {r[f'{names[0]}_xy_silhouette']:.2f})"
        for s, names in roles.items()
    }


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
            analysis_id=c.analysis["analysis_id"],
            layer=layer,
            head=head,
            sample=sample,
            query_kind=kind,
        )
        for kind in QUERY_KINDS
    ]
    df = pd.concat(frames, ignore_index=True).sort_values(["query_kind", "cluster"])
    for col in ("points", "dominant"):
        df[col] = [" ".join(map(str, v)) if v is not None else "" for v in df[col]]
    columns = [
        "query_kind",
        "cluster",
        "cluster_size",
        "positive_label_share",
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
