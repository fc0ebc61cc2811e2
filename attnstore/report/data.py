"""What the report shows, read from the store as plain values ready for JSON.

Every row is read through a named query (``queries/*.sql``), all of them on one connection
(:class:`attnstore.queries.Reader`); every float is rounded (:func:`clean`), so the same store
gives the same bytes; nothing here knows about HTML. Which run and analysis are shown is the
store's one lookup (:meth:`Store.run`, :meth:`Store.analysis`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from attnstore.plots.data import HeadFigureData, head_figure_data, rows_of
from attnstore.queries import Reader
from attnstore.store import Store
from attnstore.vocab import HEAD_METRICS, QUERY_KINDS

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
PATCH_MAP = "restored_share"  # the patch maps' column of heads_by_patching_effect
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
    reader: Reader  # every query of the report runs on its connection
    run: dict[str, Any]
    analysis: dict[str, Any] | None
    views: dict[str, str]

    @property
    def run_id(self) -> str:
        return self.run["run_id"]

    def query(self, name: str, /, **params: Any) -> pd.DataFrame:
        """The named query ``name`` on the report's connection."""
        return self.reader.query(name, **params)

    @property
    def analyze_command(self) -> str:
        return f"attnstore analyze --store {self.store.path} --run {self.run_id}"


def context(s: Store, reader: Reader, run_id: str | None, analysis_id: str | None) -> Context:
    """The run (``run_id``, else the analysis's run, else the latest) and its analysis
    (``analysis_id``, else its latest, else None when it has none), by the store's lookup;
    its queries run on ``reader``."""
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
    return Context(s, reader, run, analysis, dict(sorted(views.items())))


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
    acc = c.query("run_overview", run_id=c.run_id).sort_values("point")
    contents = c.query("contents").sort_values(
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


def head_maps(c: Context, causal: Causal) -> list[dict[str, Any]]:
    """One layer × head map per head metric and query kind of the analysis (query
    head_summary), then one per one-at-a-time intervention (:func:`intervention_maps`) and
    one per activation patch (:func:`patch_maps`)."""
    return summary_maps(c) + intervention_maps(c, causal) + patch_maps(c, causal)


def interventions(c: Context) -> pd.DataFrame:
    """The run's interventions (query run_interventions: by method, target, the one-at-a-time
    ones before the joint ones, the latest first)."""
    return c.query("run_interventions", run_id=c.run_id).dropna(subset=["intervention_id"])


@dataclass(frozen=True)
class Causal:
    """What the run's interventions and patches say, each read once: the interventions (query
    run_interventions), per one-at-a-time intervention its heads' effects (query
    intervention_effects, one row per head), the joint ones with their additivity gap (query
    additivity_gap, one row per joint intervention), every head's change of accuracy at
    every point (query effect_by_position), per activation patch its heads' restored
    share (query heads_by_patching_effect, one row per head) and per path patch its paths
    (query path_patching_matrix, one row per sender and receiver)."""

    interventions: pd.DataFrame
    effects: dict[str, pd.DataFrame]
    by_point: pd.DataFrame  # query effect_by_position: every head's change at every point
    joint: pd.DataFrame
    patches: dict[str, pd.DataFrame]
    paths: dict[str, pd.DataFrame]


def causal(c: Context, runs: pd.DataFrame) -> Causal:
    """The run's causal numbers for ``runs`` (:func:`interventions`) and its patches (the
    store's lookup of the run's patch ids, each read through the query of its kind)."""
    alone = runs[runs["heads"].isna()]
    effects = {
        i: c.query("intervention_effects", run_id=c.run_id, intervention_id=i)
        for i in alone["intervention_id"]
    }
    by_point = pd.DataFrame()
    if effects:
        by_point = c.query("effect_by_position", run_id=c.run_id)
    joint = pd.DataFrame()
    if runs["heads"].notna().any():
        joint = c.query("additivity_gap", run_id=c.run_id).dropna(subset=["intervention_id"])
    patches, paths = {}, {}
    for patch_id in sorted(c.store.ids("patch", run_id=c.run_id)):
        heads = c.query("heads_by_patching_effect", run_id=c.run_id, patch_id=patch_id)
        if heads["patch_id"].notna().any():  # an activation patch
            patches[patch_id] = heads.sort_values(["layer", "head"])
            continue
        matrix = c.query("path_patching_matrix", run_id=c.run_id, patch_id=patch_id)
        if matrix["patch_id"].notna().any():
            paths[patch_id] = matrix.dropna(subset=["patch_id"])
    return Causal(runs, effects, by_point, joint, patches, paths)


def _grid(c: Context, df: pd.DataFrame, column: str) -> list[list[float | None]]:
    """``column`` of rows with layer and head columns as an (n_layers, n_heads) grid, None
    where a head has no row or a null."""
    z = np.full((int(c.run["n_layers"]), int(c.run["n_heads"])), np.nan)
    z[df["layer"].to_numpy(int), df["head"].to_numpy(int)] = df[column].to_numpy(float)
    return clean(z)


def _signed_map(c: Context, df: pd.DataFrame, column: str, **fields: Any) -> dict[str, Any]:
    """The map of ``column`` of a per-head query's rows on a scale centred at 0, with the
    grids of its 95% interval (``column``_lower, ``column``_upper) for the hover."""
    return {
        **fields,
        "signed": True,
        "z": _grid(c, df, column),
        "lower": _grid(c, df, f"{column}_lower"),
        "upper": _grid(c, df, f"{column}_upper"),
    }


def summary_maps(c: Context) -> list[dict[str, Any]]:
    """Per metric of HEAD_METRICS and query kind, its map (none without an analysis)."""
    if c.analysis is None:
        return []
    aid = c.analysis["analysis_id"]
    per_kind = {k: c.query("head_summary", analysis_id=aid, query_kind=k) for k in QUERY_KINDS}
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


def positions_label(changed_positions: str) -> str:
    """How a map or table names the query positions an intervention or patch changed: empty
    for all of them."""
    return "" if changed_positions == "all" else f", positions {changed_positions} only"


def intervention_name(r: Any) -> str:
    """An intervention as the report names it: method, target, resample seed, positions."""
    seed = "" if pd.isna(r.resample_seed) else f", seed {int(r.resample_seed)}"
    return f"{r.method} {r.target}{seed}{positions_label(r.changed_positions)}"


def intervention_maps(c: Context, causal: Causal) -> list[dict[str, Any]]:
    """Per one-at-a-time intervention, the change of accuracy over the late points when each
    head is changed (EFFECT_MAP of query intervention_effects) and its interval: signed,
    drawn on a scale centred at 0. A joint intervention has no map (one number for a set of
    heads): :func:`joint_table` lists it."""
    runs = causal.interventions
    return [
        _signed_map(
            c,
            causal.effects[r.intervention_id],
            EFFECT_MAP,
            source="interventions",
            intervention_id=r.intervention_id,
            name=f"{EFFECT_MAP}, {intervention_name(r)} (intervention {r.intervention_id})",
        )
        for r in runs[runs["heads"].isna()].itertuples(index=False)
    ]


def patch_name(r: Any) -> str:
    """An activation patch as the report names it: corruption, target, positions."""
    k = "" if pd.isna(r.corruption_k) else f" k={int(r.corruption_k)}"
    return f"{r.corruption}{k}, {r.patch_target}{positions_label(r.positions)}"


def patch_maps(c: Context, causal: Causal) -> list[dict[str, Any]]:
    """Per activation patch, the share of the corruption's change of logit that patching each
    head restores (PATCH_MAP of query heads_by_patching_effect) and its interval, on a scale
    centred at 0."""
    maps = []
    for patch_id, df in causal.patches.items():
        r = next(df.dropna(subset=["patch_id"]).itertuples(index=False))
        name = f"{PATCH_MAP}, {patch_name(r)} (patch {patch_id})"
        maps.append(_signed_map(c, df, PATCH_MAP, source="patches", patch_id=patch_id, name=name))
    return maps


JOINT_COLUMNS = [
    "intervention_id",
    "method",
    "target",
    "heads",
    "changed_positions",
    "n_prompts",
    "joint_late_delta_accuracy",
    "joint_late_delta_accuracy_lower",
    "joint_late_delta_accuracy_upper",
    "single_late_delta_accuracy_sum",
    "additivity_gap",
    "additivity_gap_lower",
    "additivity_gap_upper",
    "single_intervention_id",
]


def joint_table(causal: Causal) -> dict[str, Any] | None:
    """The joint interventions (heads changed together) with their effect and additivity gap
    (query additivity_gap); None where the run has none."""
    if causal.joint.empty:
        return None
    return records(causal.joint, JOINT_COLUMNS)


BY_POINT = ("delta_accuracy", "delta_accuracy_lower", "delta_accuracy_upper")
HEAD_EFFECT_COLUMNS = [
    "intervention",
    "intervention_id",
    "n_prompts",
    "late_delta_accuracy",
    "late_delta_accuracy_lower",
    "late_delta_accuracy_upper",
    "mean_delta_accuracy",
    "mean_delta_accuracy_lower",
    "mean_delta_accuracy_upper",
    "late_delta_logit",
    "late_delta_logit_lower",
    "late_delta_logit_upper",
]
HEAD_PATCH_COLUMNS = [
    "patch",
    "patch_id",
    "rank",
    "n_moved_prompts",
    PATCH_MAP,
    f"{PATCH_MAP}_lower",
    f"{PATCH_MAP}_upper",
]


def head_by_point(
    causal: Causal, names: dict[str, str], layer: int, head: int
) -> list[dict[str, Any]]:
    """Per one-at-a-time intervention (``names``: id → its name), the head's change of
    accuracy at every point with its 95% interval (query effect_by_position's
    delta_accuracy, delta_accuracy_lower, delta_accuracy_upper), as one series each."""
    if causal.by_point.empty:
        return []
    df = causal.by_point
    mine = df[(df["layer"] == layer) & (df["head"] == head)]
    out = []
    for iid in causal.effects:
        rows = mine[mine["intervention_id"] == iid].sort_values("point")
        out.append(
            {
                "intervention_id": iid,
                "name": names[iid],
                "point": clean(rows["point"].to_numpy(int)),
                **{c: clean(rows[c].to_numpy(float)) for c in BY_POINT},
            }
        )
    return out


def head_causal(c: Context, causal: Causal, layer: int, head: int) -> dict[str, Any]:
    """One head's causal numbers, each with its interval: its row of every one-at-a-time
    intervention (query intervention_effects) and its change at every point
    (:func:`head_by_point`), the joint interventions whose set holds it (query
    additivity_gap) and its row of every activation patch (query heads_by_patching_effect).
    Each is None (the points an empty list) where the run has none."""
    names = {
        r.intervention_id: intervention_name(r)
        for r in causal.interventions.itertuples(index=False)
    }
    rows = []
    for iid, df in causal.effects.items():
        row = df[(df["layer"] == layer) & (df["head"] == head)].iloc[0].to_dict()
        rows.append({**row, "intervention": names[iid]})
    name = f"L{layer}H{head}"
    joint = causal.joint
    if not joint.empty:
        joint = joint[[name in h.split(",") for h in joint["heads"]]]
    patched = []
    for df in causal.patches.values():
        row = df[(df["layer"] == layer) & (df["head"] == head)].iloc[0].to_dict()
        first = next(df.dropna(subset=["patch_id"]).itertuples(index=False))
        patched.append({**row, "patch": patch_name(first)})
    return {
        "by_point": head_by_point(causal, names, layer, head),
        "interventions": records(pd.DataFrame(rows), HEAD_EFFECT_COLUMNS) if rows else None,
        "joint": records(joint, JOINT_COLUMNS) if not joint.empty else None,
        "patches": records(pd.DataFrame(patched), HEAD_PATCH_COLUMNS) if patched else None,
    }


def rankings(c: Context) -> dict[str, dict[str, Any]]:
    """Each ranking query's rows for the run (and the analysis, where it has one)."""
    out = {}
    for name in RANKINGS:
        if name != "heads_by_label_routing" and c.analysis is None:
            continue  # needs an analysis
        params = {"run_id": c.run_id}
        if name != "heads_by_label_routing":
            params["analysis_id"] = c.analysis["analysis_id"]
        df = c.query(name, **params)
        drop = ["analysis_id", "run_id", "view", "backend"]
        sort = ["rank", "layer", "head", *(["query_kind"] if "query_kind" in df else [])]
        df = df.sort_values(sort).drop(columns=drop, errors="ignore")
        out[name] = records(df)
    return out


# --- across training seeds ------------------------------------------------------------------

SEED_METRICS = ("positive_mass_share", "quality")  # the index page's table over training seeds
SEED_COLUMNS = [
    "layer",
    "head",
    "query_kind",
    "metric",
    "train_step",
    "n_seeds",
    "seed_mean",
    "seed_mean_lower",
    "seed_mean_upper",
    "seed_min",
    "seed_max",
    "matched_heads",
]


def _own_heads(matched: Any) -> str:
    """query matched_emergence's matched_heads as text: each training's own head index."""
    return "; ".join(
        f"{m['lineage']} (train_seed {m['train_seed']}): head {m['head']}" for m in matched
    )


def across_seeds(c: Context) -> dict[str, Any] | None:
    """Per reference head, query kind and metric of SEED_METRICS, query matched_emergence's
    row at the last step every training matched to the reference has (its mean over seeds with
    the t interval as ``seed_mean_lower``/``_upper``, min, max and each training's own head
    index), for the run's task and prompt seed; None when the store holds no matching (one
    read of the matchings' ids) or no step has two matched trainings."""
    if not c.store.ids("match"):
        return None
    view = c.analysis["view"] if c.analysis is not None else "shared_keys"
    parts = []
    for metric in SEED_METRICS:
        df = c.query(
            "matched_emergence", metric=metric, view=view, task=c.run["task"], seed=c.run["seed"]
        )
        if df.empty or df.n_seeds.max() < 2:
            continue
        step = df[df.n_seeds == df.n_seeds.max()].train_step.max()  # the last common step
        parts.append(df[df.train_step == step])
    if not parts:
        return None
    df = pd.concat(parts, ignore_index=True)
    df = df.rename(columns={"seed_lower": "seed_mean_lower", "seed_upper": "seed_mean_upper"})
    df["matched_heads"] = [_own_heads(m) for m in df.matched_heads]
    table = records(df.sort_values(["metric", "layer", "head", "query_kind"]), SEED_COLUMNS)
    return {"reference_lineage": str(df.reference_lineage.iloc[0]), "table": table}


# --- one head ----------------------------------------------------------------------------------


def head_samples(c: Context) -> dict[tuple[int, int], dict[str, Any]] | None:
    """Per (layer, head), its row of query head_samples: its typical, cleanest and least
    clean sample and their silhouettes (None without an analysis)."""
    if c.analysis is None:
        return None
    df = c.query("head_samples", analysis_id=c.analysis["analysis_id"])
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


def tokens(c: Context, sample: int) -> list[dict[str, Any]]:
    """The sample's tokens (query sample_inputs), as :func:`tokens_of` gives them."""
    rows = c.query("sample_inputs", run_id=c.run_id, sample=sample)
    return tokens_of(rows["point"], rows["x"], rows["y"])


def tokens_of(points: Any, x: Any, y: Any) -> list[dict[str, Any]]:
    """A sample's tokens in position order, from its points, inputs x (each n_dims values,
    ±1) and labels y: each point's x token, then its y token, each with its kind, point, x as
    signs and label y."""
    toks = []
    for point, xs, label in zip(points, x, y, strict=True):
        signs = "".join("+" if v > 0 else "−" for v in xs)
        common = {"point": int(point), "x": signs, "y": int(label)}
        toks += [{"kind": "x", **common}, {"kind": "y", **common}]
    return toks


def attention(c: Context, layer: int, head: int, sample: int) -> np.ndarray:
    """The head's attention in ``sample`` (query head_attention), of shape (2N, 2N)."""
    T = 2 * int(c.run["n_points"])
    rows = c.query("head_attention", run_id=c.run_id, layer=layer, head=head, sample=sample)
    return rows_of(rows["full_weights"], T)


def thousandths(attention: np.ndarray) -> list[list[int]]:
    """Attention weights as integers in thousandths (WEIGHT_SCALE), as the page carries them."""
    return np.rint(attention * WEIGHT_SCALE).astype(int).tolist()


def head_views(
    c: Context, layer: int, head: int, samples: list[int]
) -> tuple[dict[str, dict[int, list[int | None]]], set[Any]]:
    """Per view (its latest analysis) and sample, the cluster label of each query position
    (query head_cluster_labels; None: not clustered), and the query kinds those rows hold
    (the report checks them before it writes)."""
    T = 2 * int(c.run["n_points"])
    out: dict[str, dict[int, list[int | None]]] = {}
    kinds: set[Any] = set()
    for view, a in c.views.items():
        per: dict[int, list[int | None]] = {}
        for sample in samples:
            rows = c.query(
                "head_cluster_labels", analysis_id=a, layer=layer, head=head, sample=sample
            )
            kinds |= set(rows["query_kind"])
            col: list[int | None] = [None] * T
            for r in rows.itertuples():
                col[2 * int(r.point) + (r.query_kind == "y")] = int(r.cluster)
            per[sample] = col
        out[view] = per
    return out, kinds


@dataclass(frozen=True)
class HeadPage:
    """What one head's page shows: the samples it offers (sample → why, the typical first),
    why (its row of query head_samples), the figure's data on the typical sample and that
    sample's clusters table (these three None without an analysis), per sample its attention
    of shape (2N, 2N) and its tokens, per view and sample the cluster labels, the query
    kinds those labels hold, and its causal numbers (:func:`head_causal`)."""

    layer: int
    head: int
    shown: dict[int, str]
    choice: dict[str, Any] | None
    figure: HeadFigureData | None
    clusters: dict[str, Any] | None
    attention: dict[int, np.ndarray]
    tokens: dict[int, list[dict[str, Any]]]
    labels: dict[str, dict[int, list[int | None]]]
    query_kinds: set[Any]
    causal: dict[str, Any]  # :func:`head_causal`


def head_page(
    c: Context,
    choices: dict[tuple[int, int], dict[str, Any]] | None,
    causal: Causal,
    layer: int,
    head: int,
) -> HeadPage:
    """Everything one head's page shows, read from the store (its causal numbers from
    ``causal``, read once for every head)."""
    shown = samples_shown(c, choices, layer, head)
    samples = list(shown)
    figure = clusters = None
    if c.analysis is not None:
        figure = head_figure_data(
            c.store, c.run_id, c.analysis["analysis_id"], layer, head, samples[0], c.reader
        )
        clusters = head_clusters(c, layer, head, samples[0])
    weights, toks = {}, {}
    for s in samples:
        if figure is not None and s == figure.sample:  # read for the figure already
            weights[s] = figure.attention
            toks[s] = tokens_of(range(figure.n_points), figure.x, figure.y)
        else:
            weights[s], toks[s] = attention(c, layer, head, s), tokens(c, s)
    labels, kinds = head_views(c, layer, head, samples)
    choice = None if choices is None else choices[(layer, head)]
    numbers = head_causal(c, causal, layer, head)
    return HeadPage(
        layer, head, shown, choice, figure, clusters, weights, toks, labels, kinds, numbers
    )


def head_clusters(c: Context, layer: int, head: int, sample: int) -> dict[str, Any]:
    """The clusters of one head and sample, x and y queries in one call (query head_clusters,
    by query kind and cluster)."""
    aid = c.analysis["analysis_id"]
    df = c.query("head_clusters", analysis_id=aid, layer=layer, head=head, sample=sample)
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
