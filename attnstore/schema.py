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

import numpy as np
import pyarrow as pa

from attnstore.errors import StoreError

SCHEMA_VERSION = 2
# The table whose row makes a run (an analysis, an intervention) be: one row per id.
PRIMARY = {"run": "runs", "analysis": "analyses", "intervention": "interventions"}

i8, i16, i32, i64 = pa.int8(), pa.int16(), pa.int32(), pa.int64()
f32, f64, text, boolean = pa.float32(), pa.float64(), pa.string(), pa.bool_()
utc = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Table:
    """A table: name, partition keys (folders), columns in the files, and grain."""

    name: str
    partition: tuple[tuple[str, pa.DataType], ...]
    schema: pa.Schema  # the columns inside the files (partition keys excluded)
    grain: tuple[str, ...]  # identifies a row; includes partition keys
    doc: str

    @property
    def level(self) -> str:
        """'run', 'analysis' or 'intervention': the id its tables are partitioned by."""
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


def _t(name, partition, fields, grain, doc) -> Table:
    return Table(name, tuple(partition), pa.schema(fields), tuple(grain), doc)


RUN = [("run_id", text)]
ANALYSIS = [("analysis_id", text)]
INTERVENTION = [("intervention_id", text)]
# The identity of one analysis problem, inside every analysis table.
PROBLEM = [("layer", i16), ("head", i16), ("sample", i32), ("query_kind", text)]

TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        _t(
            "runs",
            RUN,
            [
                ("created_at", utc),
                ("checkpoint", text),  # as given: 'default', a path
                ("checkpoint_sha256", text),
                ("checkpoint_source", text),  # 'attnstore' or 'incontext-bool'
                ("card_json", text),  # the checkpoint's card, JSON
                ("n_layers", i16),
                ("n_heads", i16),
                ("d_model", i32),
                ("d_head", i32),
                ("n_dims", i16),
                ("n_ctx", i32),
                ("n_points", i32),
                ("task", text),
                ("task_params_json", text),
                ("seed", i64),
                ("n_samples", i32),
                ("device", text),
                ("accuracy", f64),  # mean over samples and points
                ("precision", text),  # of attention.weights: 'float32' (exact) or 'float16'
                ("max_abs_error", f64),  # largest |stored weight - model's|; 0.0 for float32
                ("train_step", i64),  # the checkpoint's training step; null where unknown
                ("sweep_id", text),  # the sweep that wrote the run (attnstore sweep); else null
                ("attnstore_version", text),
                ("torch_version", text),
                ("python_version", text),
                ("schema_version", i16),
                ("command", text),
            ],
            ["run_id"],
            "One row per extraction: model, checkpoint, task, seed and provenance.",
        ),
        _t(
            "inputs",
            RUN,
            [("sample", i32), ("point", i16), ("x", pa.list_(i8)), ("y", i8)],
            ["run_id", "sample", "point"],
            "Each prompt's points: x (n_dims values in ±1) and its label y.",
        ),
        _t(
            "functions",
            RUN,
            [
                ("sample", i32),
                ("term", i16),  # a DNF term / CNF clause; 0 for single-term functions
                ("literal", i16),  # input index j
                ("weight", i8),  # 0 = absent; ±1 for literals; integer for half-spaces
                ("sign", i8),  # sign(weight): +1 means x_j, -1 means not x_j, 0 absent
                ("threshold", f32),  # label = sign(x·w - threshold); NaN where none
            ],
            ["run_id", "sample", "term", "literal"],
            "Each sample's hidden function, one row per (term, literal), absent ones included.",
        ),
        _t(
            "predictions",
            RUN,
            [
                ("sample", i32),
                ("point", i16),
                ("logit", f32),
                ("pred", i8),  # sign(logit), ±1 (0 counts as -1)
                ("y", i8),
                ("correct", boolean),
            ],
            ["run_id", "sample", "point"],
            "The model's prediction of each y from the x token of the same point.",
        ),
        _t(
            "attention",
            [("run_id", text), ("layer", i16)],
            [
                ("head", i16),
                ("sample", i32),
                ("query_pos", i16),  # 0..2*n_points-1
                ("query_kind", text),  # 'x' (even query_pos) or 'y' (odd)
                ("point", i16),  # query_pos // 2
                # keys 0..query_pos (query_pos + 1 values), bit for bit as the model gave them
                # (runs.precision float32) or rounded to the nearest float16 (float16); the
                # later keys are masked, exactly 0 in the model, and not stored: full_rows()
                # and the SQL macro full_weights(weights, n_keys) give back the 2*n_points keys
                ("weights", pa.list_(f32)),
                # the rest from the model's float32 row, whatever the precision
                ("entropy", f32),  # nats
                ("max_weight", f32),
                ("argmax_key", i16),
                ("mass_x", f32),  # total weight on x keys (even key_pos)
                ("mass_y", f32),  # total weight on y keys (odd key_pos)
                ("mass_y_pos", f32),  # weight on y keys whose label is +1
            ],
            ["run_id", "layer", "head", "sample", "query_pos"],
            "Every attention row of every layer, head and sample.",
        ),
        _t(
            "analyses",
            ANALYSIS,
            [
                ("run_id", text),
                ("created_at", utc),
                ("backend", text),  # 'sklearn' (the reference) or 'torch'
                ("device", text),
                ("view", text),  # row view: raw, shared_keys, per_example
                ("view_params_json", text),
                ("k_min", i16),
                ("k_max", i16),
                ("k_values", pa.list_(i16)),  # the k tried after clipping to n_rows - 1
                ("random_state", i64),
                ("dominance", f64),
                ("top_paths", i16),
                ("params_json", text),  # every parameter, backend-specific ones included
                ("n_problems", i64),
                ("notes_json", text),  # how many problems carry each note
                ("attnstore_version", text),
                ("sklearn_version", text),
                ("torch_version", text),
                ("schema_version", i16),
                ("command", text),
            ],
            ["analysis_id"],
            "One row per analysis of a run: backend, row view, k range, seeds, parameters.",
        ),
        _t(
            "fits",
            ANALYSIS,
            [
                *PROBLEM,
                ("n_rows", i16),  # query rows clustered (points kept by the view)
                ("n_distinct_rows", i16),
                ("best_k", i16),  # 1 where no clustering was possible
                ("best_silhouette", f32),
                ("runner_up_silhouette", f32),  # best silhouette among the other k
                ("svm_accuracy", f32),
                ("nmi_y", f32),  # normalised mutual information of labels with the points' y
                ("eta2_point", f32),  # share of the variance of the point index explained
                ("notes", text),  # comma-separated: k_above_distinct_rows, constant_rows, ...
            ],
            ["analysis_id", "layer", "head", "sample", "query_kind"],
            "One row per problem: the choice of k and how the clusters relate to y and position.",
        ),
        _t(
            "silhouette",
            ANALYSIS,
            [*PROBLEM, ("k", i16), ("silhouette", f32), ("inertia", f32)],
            ["analysis_id", "layer", "head", "sample", "query_kind", "k"],
            "Silhouette score and k-means inertia for every k tried (null where skipped).",
        ),
        _t(
            "clusters",
            ANALYSIS,
            [*PROBLEM, ("point", i16), ("query_pos", i16), ("best_k", i16), ("label", i16)],
            ["analysis_id", "layer", "head", "sample", "query_kind", "point"],
            "The cluster label of every query row at the chosen k.",
        ),
        _t(
            "svm_coefs",
            ANALYSIS,
            [
                *PROBLEM,
                ("class_index", i16),  # row of LinearSVC.coef_
                ("literal", i16),  # input index j
                ("cluster", i16),  # the class the row separates from the rest
                ("coef", f32),
                ("intercept", f32),
                ("n_classes", i16),
                ("accuracy", f32),  # training accuracy of the whole SVM
            ],
            ["analysis_id", "layer", "head", "sample", "query_kind", "class_index", "literal"],
            "LinearSVC coefficients exactly as scikit-learn returns them (one row for k = 2).",
        ),
        _t(
            "dominant_literals",
            ANALYSIS,
            [
                *PROBLEM,
                ("cluster", i16),
                ("literal", i16),
                ("sign", i8),  # +1: x_j, -1: not x_j
                ("svm_score", f32),
                ("data_score", f32),
                ("rank", i16),
                ("is_dominant", boolean),
                ("in_target", boolean),  # null where the task has no literals
                ("cluster_size", i16),
            ],
            ["analysis_id", "layer", "head", "sample", "query_kind", "cluster", "literal", "sign"],
            "Every literal's score for every cluster (see attnstore/analysis/literals.py).",
        ),
        _t(
            "pathways",
            ANALYSIS,
            [
                *PROBLEM,
                ("cluster", i16),
                ("path_rank", i16),
                ("hop", i16),  # 0 at the analysed layer, increasing downwards
                ("hop_layer", i16),
                ("hop_head", i16),  # -1: the layer's heads averaged
                ("src_pos", i16),
                ("dst_pos", i16),
                ("dst_kind", text),
                ("dst_point", i16),
                ("dst_y", i8),
                ("hop_weight", f32),
                ("path_weight", f32),
            ],
            ["analysis_id", "layer", "head", "sample", "query_kind", "cluster", "path_rank", "hop"],
            "Each cluster's heaviest attention paths (see attnstore/analysis/pathways.py).",
        ),
        _t(
            "interventions",
            INTERVENTION,
            [
                ("created_at", utc),
                ("run_id", text),
                ("method", text),  # zero, mean, resample, knockout
                ("target", text),  # 'z' for zero/mean/resample; knockout: the key class
                ("seed", i64),  # of the resample permutation; null for other methods
                ("params_json", text),  # every parameter hashed into the id, JSON
                ("n_samples", i32),  # the run's prompts replayed
                ("kept_rows", i64),  # knockout: query rows left whole (all mass removed)
                ("device", text),
                ("attnstore_version", text),
                ("torch_version", text),
                ("python_version", text),
                ("schema_version", i16),
                ("command", text),
            ],
            ["intervention_id"],
            "One row per intervention: a run's heads changed one at a time (attnstore intervene).",
        ),
        _t(
            "effects",
            INTERVENTION,
            [
                ("layer", i16),
                ("head", i16),
                ("point", i16),
                ("base_accuracy", f64),  # share of prompts predicted right, unchanged model
                ("accuracy", f64),  # the same with the head changed
                ("delta_accuracy", f64),  # accuracy - base_accuracy
                ("base_logit", f64),  # mean of logit * y, unchanged model
                ("logit", f64),  # the same with the head changed
                ("delta_logit", f64),  # logit - base_logit
                ("kept_rows", i32),  # knockout: query rows at the point left whole
            ],
            ["intervention_id", "layer", "head", "point"],
            "Per changed head and point: accuracy and signed logit without and with the change.",
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


def table(name: str) -> Table:
    from attnstore.errors import NotFoundError, known

    if name not in TABLES:
        raise NotFoundError(f"unknown table '{name}'; known: {known(sorted(TABLES))}")
    return TABLES[name]
