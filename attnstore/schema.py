"""Every table of the store, declared once: its columns, their Arrow types, its grain.

A store is a folder of Parquet tables in Hive layout, one sub-folder per table::

    STORE/attnstore.json                                   schema version of the store
    STORE/runs/run_id=<id>/part-0.parquet                  one row per run
    STORE/attention/run_id=<id>/layer=<l>/part-0.parquet   row groups of one head each
    STORE/clusters/analysis_id=<id>/part-0.parquet         analysis tables, per analysis

The partition keys (``run_id``, ``layer``, ``analysis_id``) live in the folder names, not in the
files, as Hive layout has it: read with ``hive_partitioning=true`` (DuckDB), ``partitioning=
"hive"`` (pyarrow.dataset), ``hive_partitioning=True`` (Polars) or ``basePath`` (Spark).

The *grain* of a table is the set of columns that identifies one row; writers check it, and the
declared types, on every write. ``SCHEMA_VERSION`` goes into ``attnstore.json`` and into every
file's key-value metadata; it changes whenever a table below changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from attnstore.errors import StoreError

SCHEMA_VERSION = 2
# The table whose row makes a run (an analysis, an intervention) be: one row per id.
PRIMARY = {
    "run": "runs",
    "analysis": "analyses",
    "intervention": "interventions",
    "attribution": "attributions",
    "patch": "patches",
    "match": "matchings",
}

i8, i16, i32, i64 = pa.int8(), pa.int16(), pa.int32(), pa.int64()
f32, f64, text, boolean = pa.float32(), pa.float64(), pa.string(), pa.bool_()
utc = pa.timestamp("us", tz="UTC")


def written_by_columns(activity: str, thing: str) -> list[tuple[str, pa.DataType, str]]:
    """The columns of a primary table that say what wrote its row (the values:
    :func:`written_by`): versions, store format and command line, each documented with the
    ``activity`` that wrote it ('extraction') and the ``thing`` it made ('run')."""
    return [
        ("attnstore_version", text, f"attnstore's version at {activity}"),
        ("torch_version", text, f"torch's version at {activity}"),
        ("python_version", text, f"Python's version at {activity}"),
        ("schema_version", i16, f"the store format the {thing} was written in"),
        ("command", text, f"the command line that made the {thing}"),
    ]


def written_by(versions: dict[str, str], command: str) -> dict[str, Any]:
    """The values of :func:`written_by_columns`, from ``attnstore.provenance.versions()`` and
    the command line."""
    return {
        "attnstore_version": versions["attnstore"],
        "torch_version": versions["torch"],
        "python_version": versions["python"],
        "schema_version": SCHEMA_VERSION,
        "command": command,
    }


@dataclass(frozen=True)
class Table:
    """A table: name, partition keys (folders), columns in the files, and grain."""

    name: str
    partition: tuple[tuple[str, pa.DataType], ...]
    schema: pa.Schema  # the columns inside the files (partition keys excluded)
    grain: tuple[str, ...]  # identifies a row; includes partition keys
    doc: str
    column_docs: dict[str, str]  # every column's meaning, with its unit where it has one

    @property
    def level(self) -> str:
        """'run', 'analysis', 'intervention', ...: the id its tables are partitioned by."""
        return self.partition[0][0].removesuffix("_id")

    @property
    def full_schema(self) -> pa.Schema:
        """Partition keys first, then the columns in the files: the table as readers see it."""
        return pa.schema([pa.field(k, ty) for k, ty in self.partition] + list(self.schema))

    @property
    def columns(self) -> list[str]:
        return [k for k, _ in self.partition] + self.schema.names

    def row(self, values: dict) -> pa.Table:
        """A one-row table of the columns in the files, typed as declared, from a dict that
        may also hold the partition keys (ignored: they live in folder names)."""
        return pa.table({f.name: pa.array([values[f.name]], type=f.type) for f in self.schema})

    def check(self, data: pa.Table) -> pa.Table:
        """Return ``data`` in the declared column order; raise if a column or type differs,
        the grain has nulls or repeats within the batch, or (``attention``) a row's weights
        are not its causal keys (:func:`check_causal_rows`)."""
        if set(data.column_names) != set(self.schema.names):
            raise StoreError(
                f"table {self.name}: columns {sorted(data.column_names)} differ from the "
                f"declared {sorted(self.schema.names)}"
            )
        data = data.select(self.schema.names)
        for field in self.schema:
            got = data.schema.field(field.name).type
            if got != field.type:
                raise StoreError(
                    f"table {self.name}: column {field.name} has type {got}, declared {field.type}"
                )
        in_file = [c for c in self.grain if c in self.schema.names]
        for c in in_file:
            if data.column(c).null_count:
                raise StoreError(f"table {self.name}: grain column {c} has nulls")
        repeats = _grain_repeats(data, in_file)
        if repeats:
            raise StoreError(
                f"table {self.name}: {repeats} rows repeat the grain ({', '.join(self.grain)})"
            )
        if self.name == "attention":
            check_causal_rows(data)
        return data.replace_schema_metadata(None).cast(self.schema)


def _grain_repeats(data: pa.Table, columns: list[str]) -> int:
    """How many rows of ``data`` repeat an earlier row's values of ``columns``. Writers pass
    rows sorted by their grain, which is checked in one vectorised pass (each row strictly
    after the one before, column by column); only unsorted data is grouped."""
    import pyarrow.compute as pc

    n = data.num_rows
    if not columns or n < 2:
        return 0
    after = pa.array(np.zeros(n - 1, dtype=bool))  # strictly after the row before, so far
    same = pa.array(np.ones(n - 1, dtype=bool))  # equal to the row before, so far
    for c in columns:
        col = data.column(c)
        cur, prev = col.slice(1), col.slice(0, n - 1)
        after = pc.or_(after, pc.and_(same, pc.greater(cur, prev)))
        same = pc.and_(same, pc.equal(cur, prev))
    if pc.all(after).as_py():
        return 0
    return n - data.select(columns).group_by(columns).aggregate([]).num_rows


def check_causal_rows(data: pa.Table) -> None:
    """An attention row holds the weights of keys 0..query_pos, no more, no fewer."""
    import pyarrow.compute as pc

    lengths = pc.list_value_length(data.column("weights"))
    bad = pc.sum(pc.not_equal(lengths, pc.add(pc.cast(data.column("query_pos"), i32), 1)))
    if (bad.as_py() or 0) or data.column("weights").null_count:
        raise StoreError(
            f"table attention: {bad.as_py() or 0} rows do not hold exactly the weights of keys "
            "0..query_pos (weights are stored over the causal keys only; see full_rows)"
        )


def full_rows(weights: pa.Array | pa.ChunkedArray, n_keys: int) -> np.ndarray:
    """Attention rows as stored (``weights``: each row the keys 0..query_pos) back to full
    rows over ``n_keys`` keys, float32 of shape (n_rows, n_keys): the keys a causal query
    cannot see are exactly 0 in the model, and 0.0 here. The one way Python readers rebuild
    rows; ``full_weights(weights, n_keys)`` is the same in SQL (queries/macros)."""
    import pyarrow.compute as pc

    if isinstance(weights, pa.ChunkedArray):
        weights = weights.combine_chunks() if weights.num_chunks else pa.array([], weights.type)
    lengths = pc.list_value_length(weights).to_numpy(zero_copy_only=False)
    if weights.null_count or (len(lengths) and lengths.max() > n_keys):
        raise StoreError(
            f"attention rows of up to {int(lengths.max()) if len(lengths) else 0} keys "
            f"(or missing ones) do not fit {n_keys} keys"
        )
    values = weights.flatten().to_numpy(zero_copy_only=False)
    out = np.zeros((len(lengths), n_keys), dtype=np.float32)
    out[np.arange(n_keys)[None, :] < lengths[:, None]] = values
    return out


# Columns added to a table within SCHEMA_VERSION: a file written before one was added lacks
# it, and every reader (Store.read, connect's views) reads it there as null ("unknown"), so
# such a store needs no migration. Writers always write them.
LATER_COLUMNS: dict[str, tuple[str, ...]] = {"runs": ("train_seed",)}


def with_later_columns(t: Table, data: pa.Table) -> pa.Table:
    """``data`` (a file of table ``t``) with every column of :data:`LATER_COLUMNS` it lacks
    added as nulls of the declared type, in the declared column order."""
    for name in LATER_COLUMNS.get(t.name, ()):
        if name not in data.column_names:
            field = t.schema.field(name)
            data = data.append_column(field, pa.nulls(data.num_rows, field.type))
    return data.select([c for c in t.schema.names if c in data.column_names])


def _t(name, partition, fields, grain, doc) -> Table:
    """A table from (name, type, meaning) triples: the meaning, with its unit, is each column's
    one definition (DuckDB's column comments, ``attnstore sql --help``, the report's tooltips)."""
    docs = {n: d for n, _, d in [*partition, *fields]}
    return Table(
        name,
        tuple((n, ty) for n, ty, _ in partition),
        pa.schema([(n, ty) for n, ty, _ in fields]),
        tuple(grain),
        doc,
        docs,
    )


RUN = [("run_id", text, "the run: hash of the model, checkpoint, task, seed and sizes")]
ANALYSIS = [("analysis_id", text, "the analysis: hash of its run and every parameter")]
INTERVENTION = [("intervention_id", text, "the intervention: hash of its run and parameters")]
ATTRIBUTION = [("attribution_id", text, "the attribution: hash of its run and parameters")]
PATCH = [("patch_id", text, "the patch: hash of its run, corruption, target and parameters")]
MATCH = [("match_id", text, "the matching: hash of its two runs, method and samples")]
# The identity of one analysis problem, inside every analysis table.
PROBLEM = [
    ("layer", i16, "the head's layer, from 0"),
    ("head", i16, "the head within its layer, from 0"),
    ("sample", i32, "the prompt, from 0"),
    ("query_kind", text, "the query token's kind: 'x' (even query_pos) or 'y' (odd)"),
]

TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        _t(
            "runs",
            RUN,
            [
                ("created_at", utc, "when the run was committed (UTC)"),
                ("checkpoint", text, "the checkpoint as given: 'default' or a path"),
                ("checkpoint_sha256", text, "SHA-256 of the checkpoint's weights file"),
                ("checkpoint_source", text, "'attnstore' or 'incontext-bool' (who wrote it)"),
                ("card_json", text, "the checkpoint's card (training record), JSON"),
                ("n_layers", i16, "transformer layers of the model"),
                ("n_heads", i16, "attention heads per layer"),
                ("d_model", i32, "width of the residual stream"),
                ("d_head", i32, "width of one head (d_model / n_heads)"),
                ("n_dims", i16, "input dimensions n of x in {±1}^n"),
                ("n_ctx", i32, "the model's context length in tokens"),
                ("n_points", i32, "(x, y) points per prompt; a prompt has 2 * n_points tokens"),
                ("task", text, "the task (boolean function class), e.g. 'conjunction'"),
                ("task_params_json", text, "the task's parameters, JSON"),
                ("seed", i64, "the prompt seed: draws the prompts and hidden functions"),
                ("n_samples", i32, "prompts extracted"),
                ("device", text, "where the model ran: 'cpu', 'cuda', ..."),
                ("accuracy", f64, "share of points predicted right, over samples and points"),
                ("precision", text, "storage of attention.weights: 'float32' (exact) or 'float16'"),
                ("max_abs_error", f64, "largest |stored weight - model's weight|; 0 for float32"),
                ("train_step", i64, "the checkpoint's training step; null where unknown"),
                (
                    "train_seed",
                    i64,
                    "the checkpoint's training seed (its card's train.seed): another training "
                    "seed is another model; null where unknown. Not the prompt seed (seed)",
                ),
                ("sweep_id", text, "the sweep that wrote the run (attnstore sweep); else null"),
                *written_by_columns("extraction", "run"),
            ],
            ["run_id"],
            "One row per extraction: model, checkpoint, task, seed and provenance.",
        ),
        _t(
            "inputs",
            RUN,
            [
                ("sample", i32, "the prompt, from 0"),
                ("point", i16, "the point within the prompt, from 0"),
                ("x", pa.list_(i8), "the point's input: n_dims values, each -1 or +1"),
                ("y", i8, "the point's label f(x): -1 or +1"),
            ],
            ["run_id", "sample", "point"],
            "Each prompt's points: x (n_dims values in ±1) and its label y.",
        ),
        _t(
            "functions",
            RUN,
            [
                ("sample", i32, "the prompt, from 0"),
                ("term", i16, "a DNF term / CNF clause; 0 for single-term functions"),
                ("literal", i16, "input index j of x_j, from 0"),
                ("weight", i8, "0: absent; ±1 for literals; an integer for half-spaces"),
                ("sign", i8, "+1: x_j, -1: not x_j, 0: absent"),
                ("threshold", f32, "label = sign(x·w - threshold); NaN where none"),
            ],
            ["run_id", "sample", "term", "literal"],
            "Each sample's hidden function, one row per (term, literal), absent ones included.",
        ),
        _t(
            "predictions",
            RUN,
            [
                ("sample", i32, "the prompt, from 0"),
                ("point", i16, "the point within the prompt, from 0"),
                ("logit", f32, "the model's output at the point's x token (unitless logit)"),
                ("pred", i8, "sign(logit), ±1 (0 counts as -1)"),
                ("y", i8, "the point's label f(x): -1 or +1"),
                ("correct", boolean, "pred = y"),
            ],
            ["run_id", "sample", "point"],
            "The model's prediction of each y from the x token of the same point.",
        ),
        _t(
            "attention",
            [("run_id", text, RUN[0][2]), ("layer", i16, "the head's layer, from 0")],
            [
                ("head", i16, "the head within its layer, from 0"),
                ("sample", i32, "the prompt, from 0"),
                ("query_pos", i16, "the query token's position, 0..2*n_points-1"),
                ("query_kind", text, "the query token's kind: 'x' (even query_pos) or 'y' (odd)"),
                ("point", i16, "the point within the prompt, from 0"),
                # keys 0..query_pos (query_pos + 1 values), bit for bit as the model gave them
                # (runs.precision float32) or rounded to the nearest float16 (float16); the
                # later keys are masked, exactly 0 in the model, and not stored: full_rows()
                # and the SQL macro full_weights(weights, n_keys) give back the 2*n_points keys
                (
                    "weights",
                    pa.list_(f32),
                    "attention of keys 0..query_pos (masked later keys are 0, not stored; "
                    "full_weights(weights, n_keys) gives the whole row); sums to 1",
                ),
                # the rest from the model's float32 row, whatever the precision
                ("entropy", f32, "row entropy in nats (0: one key; ln(query_pos+1): uniform)"),
                ("max_weight", f32, "the row's largest weight, 0..1"),
                ("argmax_key", i16, "key_pos of the largest weight (the first on ties)"),
                ("mass_x", f32, "total weight on x keys (even key_pos), 0..1"),
                ("mass_y", f32, "total weight on y keys (odd key_pos), 0..1"),
                ("mass_y_pos", f32, "weight on y keys whose label is +1, 0..mass_y"),
            ],
            ["run_id", "layer", "head", "sample", "query_pos"],
            "Every attention row of every layer, head and sample.",
        ),
        _t(
            "analyses",
            ANALYSIS,
            [
                ("run_id", text, RUN[0][2]),
                ("created_at", utc, "when the analysis was committed (UTC)"),
                ("backend", text, "'sklearn' (the reference) or 'torch'"),
                ("device", text, "where the backend ran"),
                ("view", text, "row view: raw, shared_keys or per_example (docs/analysis.md)"),
                ("view_params_json", text, "the row view's parameters, JSON"),
                ("k_min", i16, "smallest number of clusters tried"),
                ("k_max", i16, "largest number of clusters tried"),
                ("k_values", pa.list_(i16), "the k tried after clipping to n_rows - 1"),
                ("random_state", i64, "seed of k-means and the SVM"),
                ("dominance", f64, "score share above which a literal is dominant"),
                ("top_paths", i16, "heaviest attention paths kept per cluster"),
                ("params_json", text, "every parameter, backend-specific ones included, JSON"),
                ("n_problems", i64, "problems analysed (layer x head x sample x query kind)"),
                ("notes_json", text, "how many problems carry each note, JSON"),
                ("attnstore_version", text, "attnstore's version at analysis"),
                ("sklearn_version", text, "scikit-learn's version at analysis"),
                ("torch_version", text, "torch's version at analysis"),
                ("schema_version", i16, "the store format the analysis was written in"),
                ("command", text, "the command line that made the analysis"),
            ],
            ["analysis_id"],
            "One row per analysis of a run: backend, row view, k range, seeds, parameters.",
        ),
        _t(
            "fits",
            ANALYSIS,
            [
                *PROBLEM,
                ("n_rows", i16, "query rows clustered (points kept by the view)"),
                ("n_distinct_rows", i16, "distinct rows among them"),
                ("best_k", i16, "the number of clusters chosen; 1 where none was possible"),
                ("best_silhouette", f32, "silhouette at best_k, -1..1 (null where not clustered)"),
                ("runner_up_silhouette", f32, "best silhouette among the other k, -1..1"),
                ("svm_accuracy", f32, "training accuracy of the linear SVM from x to the clusters"),
                ("nmi_y", f32, "normalised mutual information of the clusters with y, 0..1"),
                ("eta2_point", f32, "share of the point index's variance explained, 0..1"),
                ("notes", text, "comma-separated notes: k_above_distinct_rows, constant_rows, ..."),
            ],
            ["analysis_id", "layer", "head", "sample", "query_kind"],
            "One row per problem: the choice of k and how the clusters relate to y and position.",
        ),
        _t(
            "silhouette",
            ANALYSIS,
            [
                *PROBLEM,
                ("k", i16, "number of clusters tried"),
                ("silhouette", f32, "silhouette score at k, -1..1 (null where skipped)"),
                ("inertia", f32, "k-means inertia at k: summed squared distance to centres"),
            ],
            ["analysis_id", "layer", "head", "sample", "query_kind", "k"],
            "Silhouette score and k-means inertia for every k tried (null where skipped).",
        ),
        _t(
            "clusters",
            ANALYSIS,
            [
                *PROBLEM,
                ("point", i16, "the point within the prompt, from 0"),
                ("query_pos", i16, "the query token's position, 0..2*n_points-1"),
                ("best_k", i16, "the number of clusters chosen; 1 where none was possible"),
                ("label", i16, "the row's cluster, 0..best_k-1"),
            ],
            ["analysis_id", "layer", "head", "sample", "query_kind", "point"],
            "The cluster label of every query row at the chosen k.",
        ),
        _t(
            "svm_coefs",
            ANALYSIS,
            [
                *PROBLEM,
                ("class_index", i16, "row of LinearSVC.coef_"),
                ("literal", i16, "input index j of x_j, from 0"),
                (
                    "cluster",
                    i16,
                    "the cluster (svm_coefs: the one the row separates from the rest)",
                ),
                ("coef", f32, "the SVM coefficient of x_j"),
                ("intercept", f32, "the row's intercept"),
                ("n_classes", i16, "clusters the SVM separates"),
                ("accuracy", f32, "training accuracy of the whole SVM, 0..1"),
            ],
            ["analysis_id", "layer", "head", "sample", "query_kind", "class_index", "literal"],
            "LinearSVC coefficients exactly as scikit-learn returns them (one row for k = 2).",
        ),
        _t(
            "dominant_literals",
            ANALYSIS,
            [
                *PROBLEM,
                (
                    "cluster",
                    i16,
                    "the cluster (svm_coefs: the one the row separates from the rest)",
                ),
                ("literal", i16, "input index j of x_j, from 0"),
                ("sign", i8, "+1: x_j, -1: not x_j, 0: absent"),
                ("svm_score", f32, "the literal's SVM score for the cluster"),
                ("data_score", f32, "the literal's score from the cluster's inputs"),
                ("rank", i16, "rank of the literal within the cluster, from 1"),
                ("is_dominant", boolean, "the literal dominates the cluster"),
                ("in_target", boolean, "the literal is in the hidden function; null: no literals"),
                ("cluster_size", i16, "query rows in the cluster"),
            ],
            ["analysis_id", "layer", "head", "sample", "query_kind", "cluster", "literal", "sign"],
            "Every literal's score for every cluster (see attnstore/analysis/literals.py).",
        ),
        _t(
            "pathways",
            ANALYSIS,
            [
                *PROBLEM,
                (
                    "cluster",
                    i16,
                    "the cluster (svm_coefs: the one the row separates from the rest)",
                ),
                ("path_rank", i16, "rank of the path by weight, from 0"),
                ("hop", i16, "0 at the analysed layer, increasing downwards"),
                ("hop_layer", i16, "the layer of this hop"),
                ("hop_head", i16, "the head of this hop; -1: the layer's heads averaged"),
                ("src_pos", i16, "the hop's query position"),
                ("dst_pos", i16, "the hop's key position"),
                ("dst_kind", text, "the key token's kind: 'x' or 'y'"),
                ("dst_point", i16, "the key token's point"),
                ("dst_y", i8, "the key point's label, ±1"),
                ("hop_weight", f32, "attention weight of this hop, 0..1"),
                ("path_weight", f32, "product of the hop weights so far, 0..1"),
            ],
            ["analysis_id", "layer", "head", "sample", "query_kind", "cluster", "path_rank", "hop"],
            "Each cluster's heaviest attention paths (see attnstore/analysis/pathways.py).",
        ),
        _t(
            "interventions",
            INTERVENTION,
            [
                ("created_at", utc, "when the intervention was committed (UTC)"),
                ("run_id", text, RUN[0][2]),
                ("method", text, "zero, mean, resample or knockout"),
                ("target", text, "'z' (head output): zero/mean/resample; knockout: key class"),
                ("seed", i64, "seed of the resample permutation; null for other methods"),
                ("params_json", text, "every parameter hashed into the id, JSON"),
                ("n_samples", i32, "the run's prompts replayed"),
                ("kept_rows", i64, "knockout: query rows left whole (all their mass removed)"),
                ("device", text, "where the model ran"),
                *written_by_columns("intervention", "intervention"),
            ],
            ["intervention_id"],
            "One row per intervention: a run's heads changed one at a time (attnstore intervene).",
        ),
        _t(
            "effects",
            INTERVENTION,
            [
                ("layer", i16, "the head's layer, from 0"),
                ("head", i16, "the head within its layer, from 0"),
                ("point", i16, "the point within the prompt, from 0"),
                ("base_accuracy", f64, "share of prompts predicted right, unchanged model"),
                ("accuracy", f64, "the same with the head changed"),
                ("delta_accuracy", f64, "accuracy - base_accuracy (share of prompts)"),
                ("base_logit", f64, "mean over prompts of logit * y, unchanged model"),
                ("logit", f64, "the same with the head changed"),
                ("delta_logit", f64, "logit - base_logit"),
                ("kept_rows", i32, "knockout: query rows at the point left whole"),
            ],
            ["intervention_id", "layer", "head", "point"],
            "Per changed head and point, means over prompts: written by attnstore before "
            "prompt_effects (no longer written; an intervention with these rows only is "
            "measured again with attnstore intervene --overwrite).",
        ),
        _t(
            "prompt_effects",
            INTERVENTION,
            [
                ("layer", i16, "the head's layer, from 0"),
                ("head", i16, "the head within its layer, from 0"),
                ("sample", i32, "the prompt, from 0"),
                ("point", i16, "the point within the prompt, from 0"),
                ("base_correct", boolean, "the unchanged model predicts the point's y"),
                ("correct", boolean, "the model with the change predicts the point's y"),
                (
                    "base_signed_logit",
                    f32,
                    "logit * y at the point, unchanged model (positive: right)",
                ),
                ("signed_logit", f32, "logit * y at the point with the change"),
                ("kept_rows", i8, "knockout: the prompt's query rows at the point left whole"),
            ],
            ["intervention_id", "layer", "head", "sample", "point"],
            "Per changed head, prompt and point: the prediction's correctness and logit * y "
            "without and with the change (the grain of paired intervals); layer and head -1: "
            "the set of heads of the intervention (--heads), changed together.",
        ),
        _t(
            "attributions",
            ATTRIBUTION,
            [
                ("created_at", utc, "when the attribution was committed (UTC)"),
                ("run_id", text, RUN[0][2]),
                ("n_samples", i32, "the run's prompts attributed"),
                ("n_components", i32, "components per prompt and point (logit_attribution)"),
                (
                    "max_abs_error",
                    f64,
                    "largest |sum of the components - (logit - read-out bias)| over every "
                    "prompt and point (completeness; float rounding only)",
                ),
                ("device", text, "where the model ran"),
                *written_by_columns("attribution", "attribution"),
            ],
            ["attribution_id"],
            "One row per direct logit attribution of a run (attnstore attribute).",
        ),
        _t(
            "logit_attribution",
            ATTRIBUTION,
            [
                (
                    "component",
                    text,
                    "what writes into the residual stream: token, position, embed_bias, head, "
                    "attn_bias, mlp, mlp_bias, final_norm_bias (docs/store.md)",
                ),
                ("layer", i16, "the head's layer, from 0"),
                ("head", i16, "the head within its layer, from 0"),
                ("sample", i32, "the prompt, from 0"),
                ("point", i16, "the point within the prompt, from 0"),
                (
                    "attribution",
                    f32,
                    "the component's share of the logit at the point's x token, read through "
                    "the final LayerNorm with its scale frozen (unitless logit)",
                ),
            ],
            ["attribution_id", "component", "layer", "head", "sample", "point"],
            "Per component, prompt and point: what it writes toward the logit (direct logit "
            "attribution); the components of a point sum to its logit less the read-out bias. "
            "layer is the component's (attn_bias, mlp, mlp_bias too), -1 for the embeddings "
            "and the final norm; head is -1 but for a head.",
        ),
        _t(
            "patches",
            PATCH,
            [
                ("created_at", utc, "when the patch was committed (UTC)"),
                ("run_id", text, RUN[0][2]),
                ("corruption", text, "how the corrupted prompts differ (attnstore patch --help)"),
                ("corruption_k", i32, "the corruption's k: which positive example or literal"),
                ("kind", text, "'activation' (every head) or 'path' (sender -> receiver)"),
                (
                    "patch_target",
                    text,
                    "what is patched: activation z, q, k or v of the head; path: the "
                    "receiver's input q, k or v",
                ),
                ("positions", text, "the token positions patched: all, x, y or one position N"),
                ("paths", text, "path patches: the paths as given, comma-separated; else null"),
                ("n_samples", i32, "the run's prompts replayed"),
                ("n_changed", i32, "prompts the corruption changed (the others differ nowhere)"),
                ("device", text, "where the model ran"),
                *written_by_columns("patching", "patch"),
            ],
            ["patch_id"],
            "One row per patch: a run's clean activations patched into its corrupted prompts.",
        ),
        _t(
            "patch_inputs",
            PATCH,
            [
                ("sample", i32, "the prompt, from 0"),
                ("point", i16, "the point within the prompt, from 0"),
                (
                    "corrupted_x",
                    pa.list_(i8),
                    "the corrupted point's input: n_dims values, each -1 or +1",
                ),
                ("corrupted_y", i8, "the corrupted point's label: -1 or +1"),
                ("differs", boolean, "x or y differs from the clean point (inputs, same sample)"),
            ],
            ["patch_id", "sample", "point"],
            "The corrupted prompts, each paired with the clean prompt of the same run and "
            "sample in inputs; differs marks the points where they differ.",
        ),
        _t(
            "patch_effects",
            PATCH,
            [
                ("layer", i16, "the head's layer, from 0"),
                ("head", i16, "the head within its layer, from 0"),
                ("receiver_layer", i16, "path: the receiver head's layer; -1: activation patch"),
                ("receiver_head", i16, "path: the receiver head; -1: activation patch"),
                ("sample", i32, "the prompt, from 0"),
                ("point", i16, "the point within the prompt, from 0"),
                ("clean_logit", f32, "the logit at the point, clean prompt"),
                ("corrupted_logit", f32, "the logit at the point, corrupted prompt"),
                ("patched_logit", f32, "the logit at the point, corrupted prompt with the patch"),
                (
                    "normalised_effect",
                    f32,
                    "(patched - corrupted) / (clean - corrupted) logit: 0 nothing restored, "
                    "1 all; null where clean = corrupted",
                ),
            ],
            ["patch_id", "layer", "head", "receiver_layer", "receiver_head", "sample", "point"],
            "Per patched head (or path), prompt and point: the clean, corrupted and patched "
            "logits (the grain of paired intervals); layer and head are the patched head, a "
            "path's sender.",
        ),
        _t(
            "matchings",
            MATCH,
            [
                ("created_at", utc, "when the matching was committed (UTC)"),
                ("run_a", text, "the reference run, whose head indices are kept"),
                ("run_b", text, "the run whose heads are matched to run_a's"),
                (
                    "match_method",
                    text,
                    "how heads are paired: 'hungarian' (per layer, least total cost)",
                ),
                (
                    "cost_name",
                    text,
                    "what a pair of heads costs: 'total_variation', the mean over samples and "
                    "query positions of the total variation distance between their rows",
                ),
                ("n_samples", i32, "prompts compared (samples 0..n_samples-1 of both runs)"),
                ("n_layers", i16, "transformer layers of the model"),
                ("n_heads", i16, "attention heads per layer"),
                *written_by_columns("matching", "matching"),
            ],
            ["match_id"],
            "One row per matching of two runs' heads (attnstore match): head indices are "
            "arbitrary across trainings, so run_b's heads are paired with run_a's by behaviour.",
        ),
        _t(
            "head_matches",
            MATCH,
            [
                ("layer", i16, "the head's layer, from 0"),
                ("head_a", i16, "a head of run_a within the layer, from 0"),
                ("head_b", i16, "a head of run_b within the layer, from 0"),
                (
                    "cost",
                    f64,
                    "mean total variation distance between the two heads' attention rows on "
                    "the same prompts, 0 (identical) .. 1 (disjoint keys)",
                ),
                ("matched", boolean, "the matching pairs head_b with head_a"),
                (
                    "margin",
                    f64,
                    "matched pairs: the least cost of head_a or head_b with any other head of "
                    "the layer, minus cost (positive: each prefers its partner); else null",
                ),
                (
                    "null_cost",
                    f64,
                    "matched pairs: the mean cost of the layer's unmatched pairs, what a "
                    "pairing that means nothing costs; else null",
                ),
            ],
            ["match_id", "layer", "head_a", "head_b"],
            "Every pair of a layer's heads of the two runs with its cost; matched marks the "
            "pairs of the matching (one per head), each with its margin and the layer's null.",
        ),
    ]
}


def parquet_options(t: Table) -> dict:
    """The keyword arguments of ``pyarrow.parquet.ParquetWriter`` for a table's files: the
    one place the store's encoding (compression, dictionaries, float encodings) is chosen.

    Float columns (``attention.weights`` included) are BYTE_STREAM_SPLIT with no dictionary:
    softmax outputs and their summaries hardly ever repeat, so a dictionary only costs, and
    splitting the bytes lets zstd squeeze the exponents while the mantissas stay as they are
    (docs/measurements.md compares the encodings). Every other column keeps its dictionary.
    Every column but a list of floats has min/max statistics (row groups are skipped on
    ``head``, ``sample``, ...); no reader filters on a list's elements, and their statistics
    would cost a quarter of the attention's encoding time. Pages of up to 4 MiB written 64 Ki
    values at a time: one page per column of an attention row group, 10% less encoding time."""
    paths = _leaf_paths(t.schema)
    floats = float_columns(t.schema)
    return {
        "compression": "zstd",
        "write_statistics": [c for c in paths if not (c in floats and c.endswith(".element"))],
        "use_dictionary": [c for c in paths if c not in floats],
        "column_encoding": {c: "BYTE_STREAM_SPLIT" for c in floats},
        "data_page_size": 4 << 20,
        "write_batch_size": 1 << 16,
    }


def _leaf_paths(schema: pa.Schema) -> list[str]:
    """Parquet's column paths: ``name``, or ``name.list.element`` for a list."""
    return [f"{f.name}.list.element" if pa.types.is_list(f.type) else f.name for f in schema]


def float_columns(schema: pa.Schema) -> list[str]:
    """The Parquet column paths of a schema's float32/float64 columns and lists of them."""
    out = []
    for f, path in zip(schema, _leaf_paths(schema), strict=True):
        ty = f.type.value_type if pa.types.is_list(f.type) else f.type
        if pa.types.is_float32(ty) or pa.types.is_float64(ty):
            out.append(path)
    return out
