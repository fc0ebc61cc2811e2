"""Run a model on task prompts and write every attention row, input, function and prediction.

The prompts are drawn once from the task with the run's seed; the model then runs over them in
batches, and each batch's rows are written as soon as they are computed (one row group per
layer and head) by one writer thread while the model computes the next batch, so memory holds
a few batches of attention whatever the number of samples.

An attention row stores the weights of the keys its query sees, 0..query_pos: the model's
later keys are masked, exactly 0, and :func:`attnstore.schema.full_rows` (SQL:
``full_weights``) gives them back. ``precision='float16'`` rounds the stored weights to the
nearest float16 (half the bytes); the run's ``max_abs_error`` says how far they are from the
model's.
"""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from attnstore import tasks
from attnstore.checkpoint import LoadedModel, load_checkpoint, train_seed, train_step
from attnstore.errors import CommitConflict, ConfigError
from attnstore.model import check_device
from attnstore.provenance import content_id, versions
from attnstore.schema import TABLES, written_by
from attnstore.store import Store
from attnstore.vocab import PRECISIONS, QUERY_KINDS


@dataclass(frozen=True)
class ExtractResult:
    run_id: str
    existed: bool  # the run was already in the store and nothing was written


def run_id_for(
    checkpoint_sha256: str,
    task: str,
    params: dict,
    n_points: int,
    n_samples: int,
    seed: int,
    precision: str = "float32",
) -> str:
    """Deterministic id of an extraction: the same inputs always give the same id. The
    precision is hashed only when it is not float32, so float32 runs keep the ids they always
    had, and a float16 run is another run."""
    fields = {
        "checkpoint": checkpoint_sha256,
        "task": task,
        "params": params,
        "n_points": n_points,
        "n_samples": n_samples,
        "seed": seed,
    }
    if precision != "float32":
        fields["precision"] = precision
    return content_id(fields)


@dataclass(frozen=True)
class ExtractConfig:
    """What an extraction runs, checked once, when it is made (a ConfigError names the value).

    ``checkpoint``: what :func:`attnstore.checkpoint.load_checkpoint` takes ('default', a folder,
    a file), with ``model_config`` for incontext-bool .pt files; ``task`` and ``points``: those
    the checkpoint was trained on when None; ``task_params`` override the task's; ``samples``
    prompts drawn from ``seed``; ``n_dims``, if given, must match the checkpoint's;
    ``precision`` of the stored weights (float32 or float16); ``batch_size`` prompts per
    forward pass on ``device``; ``sweep_id``, the sweep the run belongs to (``attnstore
    sweep``), recorded in its ``runs`` row.
    """

    checkpoint: str | Path = "default"
    model_config: str | Path | None = None
    task: str | None = None
    task_params: dict[str, Any] | None = None
    samples: int = 1000
    points: int | None = None
    seed: int = 0
    n_dims: int | None = None
    precision: str = "float32"
    batch_size: int = 128
    device: str = "cpu"
    sweep_id: str | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"precision '{self.precision}' is not one of {', '.join(PRECISIONS)} (float32 "
                "stores the weights exactly, float16 rounds them)"
            )
        if self.samples < 1:
            raise ConfigError(f"samples={self.samples} must be at least 1")
        if self.points is not None and self.points < 1:
            raise ConfigError(f"points={self.points} must be at least 1")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} must be at least 1")
        check_device(self.device)


@dataclass(frozen=True)
class Extraction:
    """An extraction checked and ready to write (:func:`prepare`); nothing is written yet."""

    config: ExtractConfig
    loaded: LoadedModel
    task: str
    batch: tasks.TaskBatch  # the prompts, drawn up front
    run_id: str

    @property
    def n_points(self) -> int:
        return self.batch.x.shape[1]


def prepare(config: ExtractConfig) -> Extraction:
    """Load the checkpoint and draw the prompts of ``config``; touches no store."""
    c = config
    loaded = load_checkpoint(c.checkpoint, c.model_config, device=c.device)
    cfg = loaded.config
    card = loaded.card
    task = c.task or card.get("task", "conjunction")
    params = dict(card.get("task_params", {})) if task == card.get("task") else {}
    params = tasks.task_params(task, **{**params, **(c.task_params or {})})
    if c.n_dims is not None and c.n_dims != cfg.n_dims:
        raise ConfigError(
            f"n_dims={c.n_dims} contradicts the checkpoint, whose model reads n_dims={cfg.n_dims}"
        )
    points = c.points or card.get("train", {}).get("n_points") or cfg.max_points
    if points > cfg.max_points:
        raise ConfigError(
            f"points={points} exceeds what the checkpoint's positions allow ({cfg.max_points})"
        )
    batch = tasks.sample_task(task, c.samples, points, cfg.n_dims, c.seed, **params)
    run_id = run_id_for(loaded.sha256, task, batch.params, points, c.samples, c.seed, c.precision)
    return Extraction(c, loaded, task, batch, run_id)


def write(
    store: str | Path,
    extraction: Extraction,
    overwrite: bool = False,
    progress: bool = False,
    command: str = "",
) -> ExtractResult:
    """Run the model on the prepared prompts and write the run into ``store`` (made if need
    be), in one transaction; a run already there is left as it is unless ``overwrite``."""
    e = extraction
    s = Store(store, create=True)
    if s.has("run", e.run_id) and not overwrite:  # its record alone: any store size
        return ExtractResult(e.run_id, existed=True)
    try:
        _write_run(s, e, overwrite, progress, command)
    except CommitConflict:
        if overwrite:
            raise
        # Another writer committed this run id first (an object store has no locks to keep
        # it out): ids are content hashes, so the run kept is this one.
        return ExtractResult(e.run_id, existed=True)
    return ExtractResult(e.run_id, existed=False)


def _write_run(s: Store, e: Extraction, overwrite, progress, command):
    cfg, batch = e.loaded.config, e.batch
    S, N = batch.y.shape
    with s.transaction("run", e.run_id, overwrite=overwrite) as txn:
        txn.expect_rows(
            runs=1,
            inputs=S * N,
            predictions=S * N,
            functions=batch.weights.size,
            attention=cfg.n_layers * cfg.n_heads * S * 2 * N,
        )
        _write_rows(txn, e, progress, command)


def extract(
    store: str | Path,
    config: ExtractConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = False,
    command: str = "",
    **params: Any,
) -> ExtractResult:
    """Extract a run into ``store`` (made if need be); returns its id and whether it existed.

    ``config`` says what to extract; keywords (``checkpoint=..., samples=...``) are its fields,
    given instead of it or changing it. :func:`prepare` then :func:`write`: everything is
    checked before the store is opened, so a bad checkpoint, task or size leaves no folder
    behind."""
    config = ExtractConfig(**params) if config is None else replace(config, **params)
    return write(store, prepare(config), overwrite, progress, command)


class _Writer:
    """The transaction's one writing thread: jobs (callables) run in order from a bounded queue,
    so the model computes the next batch while Parquet encodes this one (pyarrow and most of
    numpy release the GIL). While it runs no other thread writes. The first error stops it: the
    jobs left are skipped, and the error is raised again in the caller's thread, at the next
    :meth:`submit` or on leaving the ``with`` block, where the transaction aborts."""

    def __init__(self, depth: int = 2) -> None:
        self._jobs: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="attnstore-writer", daemon=True)

    def __enter__(self) -> _Writer:
        self._thread.start()
        return self

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self._error is None:
                try:
                    job()
                except BaseException as e:  # raised again in the caller's thread
                    self._error = e

    def submit(self, job) -> None:
        self._raise()
        self._jobs.put(job)

    def _raise(self) -> None:
        if self._error is not None and not isinstance(self._error, _Cancelled):
            raise self._error

    def __exit__(self, kind, exc, tb) -> None:
        if exc is not None and self._error is None:
            self._error = _Cancelled()  # the caller failed: skip what is queued
        self._jobs.put(None)
        self._thread.join()
        if exc is None:
            self._raise()


class _Cancelled(Exception):
    pass


@dataclass
class _Totals:
    correct: int = 0  # predictions equal to y
    max_abs_error: float = 0.0  # of the stored weights, over the whole run


@torch.no_grad()
def _write_rows(txn, e: Extraction, progress: bool, command: str):
    """Every table of the run: the model runs batch after batch in this thread (with one CPU
    thread fewer for torch, left to the writer); the writer thread builds and writes the rows,
    the ``runs`` row last."""
    from attnstore.progress import progress_bar

    model, batch = e.loaded.model, e.batch
    batch_size, device = e.config.batch_size, e.config.device
    n = len(batch.x)
    bar = progress_bar(total=n, desc="extract", unit="sample", enabled=progress)
    totals, shapes = _Totals(), {}
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads - 1))
    try:
        with _Writer() as writer:
            for lo in range(0, n, batch_size):
                hi = min(lo + batch_size, n)
                x = torch.from_numpy(batch.x[lo:hi]).to(device)
                y = torch.from_numpy(batch.y[lo:hi]).to(device)
                out = model(x, y, return_attn=True)
                logits, attns = out.logits, out.attention
                attns = [a.cpu().numpy() for a in attns]
                job = _BatchJob(txn, e, totals, shapes, bar, lo, logits.cpu().numpy(), attns)
                writer.submit(job.run)
            writer.submit(lambda: txn.write("runs", _runs_row(e, totals, command)))
    finally:
        torch.set_num_threads(threads)
        bar.close()


@dataclass
class _BatchJob:
    """One batch's prompts, functions, predictions and attention rows, written from the writer
    thread; ``totals`` and ``shapes`` are shared by the jobs of a run, which run one by one."""

    txn: Any
    e: Extraction
    totals: _Totals
    shapes: dict  # (B, T) -> _RowIds
    bar: Any
    lo: int  # the batch's first sample
    logits: np.ndarray  # (B, n_points)
    attns: list[np.ndarray]  # per layer, (B, H, T, T)

    def run(self) -> None:
        batch, precision = self.e.batch, self.e.config.precision
        B, H, T, _ = self.attns[0].shape
        lo, hi = self.lo, self.lo + B
        self.txn.write("inputs", _inputs_table(batch, lo, hi))
        self.txn.write("functions", _functions_table(batch, lo, hi))
        y = batch.y[lo:hi].astype(np.int8)
        pred = np.where(self.logits > 0, 1, -1).astype(np.int8)
        self.totals.correct += int((pred == y).sum())
        self.txn.write("predictions", _predictions_table(self.lo, self.logits, pred, y))
        rows = self.shapes.setdefault((B, T), _RowIds(B, T))
        batch_ids = rows.batch(lo, y)
        for layer, attn in enumerate(self.attns):
            for head in range(H):
                table, err = _attention_rows(attn[:, head], rows, batch_ids, head, precision)
                self.totals.max_abs_error = max(self.totals.max_abs_error, err)
                self.txn.write("attention", table, layer=layer)
        self.bar.update(B)


class _RowIds:
    """What every head of every batch of B prompts shares, built once: the columns query_pos,
    query_kind and point, the list offsets of the causal rows and their mask, and scratch
    space for the entropy (whose masked keys stay 0). One thread uses it at a time."""

    def __init__(self, B: int, T: int) -> None:
        qp = np.arange(T, dtype=np.int16)
        self.query_pos = pa.array(np.tile(qp, B))
        self.query_kind = pa.array(QUERY_KINDS).take(pa.array(np.tile(qp % 2, B)))
        self.point = pa.array(np.tile(qp // 2, B))
        lengths = np.tile(qp.astype(np.int32) + 1, B)
        self.offsets = pa.array(np.concatenate([[0], np.cumsum(lengths, dtype=np.int32)]))
        self.causal = np.tile(np.tri(T, dtype=bool), (B, 1, 1))  # (B, T, T): key <= query_pos
        self.plogp = np.zeros((B, T, T), dtype=np.float32)  # p log p; 0 where masked
        self.logs = np.empty(int(lengths.sum()), dtype=np.float32)

    def batch(self, first_sample: int, y: np.ndarray) -> tuple[pa.Array, np.ndarray]:
        """The batch's sample column, and which keys are y tokens of positive examples
        (B, 1, n_points), from its first sample and labels y (B, n_points)."""
        B, T = len(y), len(self.causal[0])
        samples = np.arange(first_sample, first_sample + B, dtype=np.int32)
        return pa.array(np.repeat(samples, T)), (y > 0)[:, None, :]


def attention_table(
    a: np.ndarray, first_sample: int, head: int, y: np.ndarray, precision: str = "float32"
) -> pa.Table:
    """Rows of one head for a batch: attention ``a`` of shape (batch, query_pos, key_pos) and
    labels ``y`` of shape (batch, n_points); ``weights`` keeps keys 0..query_pos (the later
    ones are masked), at ``precision``."""
    B, T, _ = a.shape
    ids = _RowIds(B, T)
    return _attention_rows(a, ids, ids.batch(first_sample, y), head, precision)[0]


def _attention_rows(
    a: np.ndarray,
    ids: _RowIds,
    batch: tuple[pa.Array, np.ndarray],
    head: int,
    precision: str,
) -> tuple[pa.Table, float]:
    """:func:`attention_table` (``a``: (B, T, T), a view is fine; ``batch`` from
    :meth:`_RowIds.batch`) and the largest absolute error of its stored weights."""
    B, T, _ = a.shape
    sample, y_pos = batch
    kept = a[ids.causal]  # row after row, keys 0..query_pos
    stored, err = kept, 0.0
    if precision == "float16":
        stored = torch.from_numpy(kept).to(torch.float16).to(torch.float32).numpy()
        if kept.size:  # |x - fl16(x)| is exact in float32 (Sterbenz, or x itself below 2^-24)
            err = float(np.abs(stored - kept).max())
    # The summaries, from the model's rows as they are and in the same order of operations as
    # ever (bit for bit the values of format 1), the logarithm taken of visible keys only.
    if kept.size and kept.min() > 0:
        plogp = np.multiply(kept, np.log(kept, out=ids.logs), out=ids.logs)
    else:
        positive = kept > 0
        plogp = np.where(positive, kept * np.log(np.where(positive, kept, 1.0)), 0.0)
    ids.plogp[ids.causal] = plogp
    argmax = a.argmax(-1)
    table = pa.table(
        {
            "head": np.full(B * T, head, dtype=np.int16),
            "sample": sample,
            "query_pos": ids.query_pos,
            "query_kind": ids.query_kind,
            "point": ids.point,
            "weights": pa.ListArray.from_arrays(ids.offsets, pa.array(stored)),
            "entropy": (-ids.plogp.sum(-1)).astype(np.float32).reshape(-1),
            "max_weight": np.take_along_axis(a, argmax[..., None], -1).reshape(-1),
            "argmax_key": argmax.astype(np.int16).reshape(-1),
            "mass_x": a[..., ::2].sum(-1).reshape(-1),
            "mass_y": a[..., 1::2].sum(-1).reshape(-1),
            "mass_y_pos": (a[..., 1::2] * y_pos).sum(-1).astype(np.float32).reshape(-1),
        }
    )
    return table, err


def _predictions_table(lo: int, logits: np.ndarray, pred: np.ndarray, y: np.ndarray) -> pa.Table:
    B, N = logits.shape
    return pa.table(
        {
            "sample": np.repeat(np.arange(lo, lo + B, dtype=np.int32), N),
            "point": np.tile(np.arange(N, dtype=np.int16), B),
            "logit": logits.reshape(-1).astype(np.float32),
            "pred": pred.reshape(-1),
            "y": y.reshape(-1),
            "correct": (pred == y).reshape(-1),
        }
    )


def _inputs_table(batch: tasks.TaskBatch, lo: int, hi: int) -> pa.Table:
    """The prompts of samples lo..hi-1."""
    S, (_, N, D) = hi - lo, batch.x.shape
    x = batch.x[lo:hi].astype(np.int8).reshape(-1)
    offsets = np.arange(0, S * N * D + 1, D, dtype=np.int32)
    return pa.table(
        {
            "sample": np.repeat(np.arange(lo, hi, dtype=np.int32), N),
            "point": np.tile(np.arange(N, dtype=np.int16), S),
            "x": pa.ListArray.from_arrays(pa.array(offsets), pa.array(x)),
            "y": batch.y[lo:hi].astype(np.int8).reshape(-1),
        }
    )


def _functions_table(batch: tasks.TaskBatch, lo: int, hi: int) -> pa.Table:
    """The hidden functions of samples lo..hi-1."""
    S, (_, n_terms, D) = hi - lo, batch.weights.shape
    w = batch.weights[lo:hi].astype(np.int8).reshape(-1)
    return pa.table(
        {
            "sample": np.repeat(np.arange(lo, hi, dtype=np.int32), n_terms * D),
            "term": np.tile(np.repeat(np.arange(n_terms, dtype=np.int16), D), S),
            "literal": np.tile(np.arange(D, dtype=np.int16), S * n_terms),
            "weight": w,
            "sign": np.sign(w).astype(np.int8),
            "threshold": np.repeat(batch.thresholds[lo:hi].astype(np.float32), n_terms * D),
        }
    )


def _runs_row(e: Extraction, totals: _Totals, command: str) -> pa.Table:
    loaded, batch, c = e.loaded, e.batch, e.config
    v = versions()
    cfg = loaded.config
    S, N, _ = batch.x.shape
    row = {
        "run_id": e.run_id,
        "created_at": datetime.now(timezone.utc),
        "checkpoint": str(c.checkpoint),
        "checkpoint_sha256": loaded.sha256,
        "checkpoint_source": loaded.source,
        "card_json": json.dumps(loaded.card, sort_keys=True),
        "n_layers": cfg.n_layers,
        "n_heads": cfg.n_heads,
        "d_model": cfg.d_model,
        "d_head": cfg.d_head,
        "n_dims": cfg.n_dims,
        "n_ctx": cfg.n_ctx,
        "n_points": N,
        "task": e.task,
        "task_params_json": json.dumps(batch.params, sort_keys=True),
        "seed": c.seed,
        "n_samples": S,
        "device": c.device,
        "accuracy": totals.correct / batch.y.size,
        "precision": c.precision,
        "max_abs_error": totals.max_abs_error,
        "train_step": train_step(loaded),
        "train_seed": train_seed(loaded),
        "sweep_id": c.sweep_id,
        **written_by(v, command),
    }
    return TABLES["runs"].row(row)
