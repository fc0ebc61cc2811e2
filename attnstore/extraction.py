"""Run a model on task prompts and write every attention row, input, function and prediction.

The prompts are drawn once from the task with the run's seed; the model then runs over them in
batches, and each batch's rows are written as soon as they are computed (one row group per
layer and head), so memory holds one batch of attention whatever the number of samples.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from attnstore import tasks
from attnstore.checkpoint import LoadedModel, load_checkpoint
from attnstore.errors import ConfigError
from attnstore.model import check_device
from attnstore.provenance import content_id, versions
from attnstore.schema import SCHEMA_VERSION, TABLES
from attnstore.store import Store


@dataclass(frozen=True)
class ExtractResult:
    run_id: str
    existed: bool  # the run was already in the store and nothing was written


def run_id_for(
    checkpoint_sha256: str, task: str, params: dict, n_points: int, n_samples: int, seed: int
) -> str:
    """Deterministic id of an extraction: the same inputs always give the same id."""
    return content_id(
        {
            "checkpoint": checkpoint_sha256,
            "task": task,
            "params": params,
            "n_points": n_points,
            "n_samples": n_samples,
            "seed": seed,
        }
    )


@dataclass(frozen=True)
class Extraction:
    """An extraction checked and ready to write (:func:`prepare`); nothing is written yet."""

    checkpoint: str
    loaded: LoadedModel
    task: str
    batch: tasks.TaskBatch  # the prompts, drawn up front
    seed: int
    run_id: str

    @property
    def n_points(self) -> int:
        return self.batch.x.shape[1]


def prepare(
    checkpoint: str = "default",
    model_config: str | Path | None = None,
    task: str | None = None,
    samples: int = 1000,
    points: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    task_params: dict[str, Any] | None = None,
    n_dims: int | None = None,
) -> Extraction:
    """Load the checkpoint, check every parameter and draw the prompts; touches no store.

    ``task`` and ``points`` default to those the checkpoint was trained on; ``n_dims``, if
    given, must match the checkpoint's.
    """
    if samples < 1:
        raise ConfigError(f"samples={samples} must be at least 1")
    if points is not None and points < 1:
        raise ConfigError(f"points={points} must be at least 1")
    check_device(device)
    loaded = load_checkpoint(checkpoint, model_config, device=device)
    cfg = loaded.config
    card = loaded.card
    task = task or card.get("task", "conjunction")
    params = dict(card.get("task_params", {})) if task == card.get("task") else {}
    params = tasks.task_params(task, **{**params, **(task_params or {})})
    if n_dims is not None and n_dims != cfg.n_dims:
        raise ConfigError(
            f"n_dims={n_dims} contradicts the checkpoint, whose model reads n_dims={cfg.n_dims}"
        )
    points = points or card.get("train", {}).get("n_points") or cfg.max_points
    if points > cfg.max_points:
        raise ConfigError(
            f"points={points} exceeds what the checkpoint's positions allow ({cfg.max_points})"
        )
    batch = tasks.sample_task(task, samples, points, cfg.n_dims, seed, **params)
    run_id = run_id_for(loaded.sha256, task, batch.params, points, samples, seed)
    return Extraction(str(checkpoint), loaded, task, batch, seed, run_id)


def write(
    store: str | Path,
    extraction: Extraction,
    batch_size: int = 128,
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = False,
    command: str = "",
) -> ExtractResult:
    """Run the model on the prepared prompts and write the run into ``store`` (made if need
    be), in one transaction; a run already there is left as it is unless ``overwrite``."""
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be at least 1")
    e, batch = extraction, extraction.batch
    s = Store(store, create=True)
    s.verify()  # a corrupted store is named before the model runs
    if e.run_id in s.keys("run") and not overwrite:
        return ExtractResult(e.run_id, existed=True)
    cfg = e.loaded.config
    S, N = batch.y.shape
    with s.transaction("run", e.run_id, overwrite=overwrite) as txn:
        txn.expect_rows(
            runs=1,
            inputs=S * N,
            predictions=S * N,
            functions=batch.weights.size,
            attention=cfg.n_layers * cfg.n_heads * S * 2 * N,
        )
        txn.write("inputs", _inputs_table(batch))
        txn.write("functions", _functions_table(batch))
        correct = _write_attention(txn, e.loaded, batch, batch_size, device, progress)
        accuracy = correct / batch.y.size
        txn.write("runs", _runs_row(e, device, accuracy, command))
    return ExtractResult(e.run_id, existed=False)


def extract(
    store: str | Path,
    checkpoint: str = "default",
    model_config: str | Path | None = None,
    task: str | None = None,
    samples: int = 1000,
    points: int | None = None,
    seed: int = 0,
    batch_size: int = 128,
    device: str = "cpu",
    overwrite: bool = False,
    task_params: dict[str, Any] | None = None,
    n_dims: int | None = None,
    progress: bool = False,
    command: str = "",
) -> ExtractResult:
    """Extract a run into ``store`` (made if need be); returns its id and whether it existed.
    :func:`prepare` then :func:`write`: everything is checked before the store is opened, so a
    bad checkpoint, task or size leaves no folder behind."""
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be at least 1")
    e = prepare(checkpoint, model_config, task, samples, points, seed, device, task_params, n_dims)
    return write(store, e, batch_size, device, overwrite, progress, command)


@torch.no_grad()
def _write_attention(
    txn, loaded: LoadedModel, batch: tasks.TaskBatch, batch_size: int, device: str, progress: bool
) -> int:
    from tqdm.auto import tqdm

    model = loaded.model
    n = len(batch.x)
    correct = 0
    bar = tqdm(total=n, desc="extract", unit="sample", disable=not progress, file=sys.stderr)
    for lo in range(0, n, batch_size):
        hi = min(lo + batch_size, n)
        x = torch.from_numpy(batch.x[lo:hi]).to(device)
        y = torch.from_numpy(batch.y[lo:hi]).to(device)
        logits, attns = model(x, y, return_attn=True)
        logits = logits.cpu().numpy()
        pred = np.where(logits > 0, 1, -1).astype(np.int8)
        yb = batch.y[lo:hi].astype(np.int8)
        correct += int((pred == yb).sum())
        txn.write("predictions", _predictions_table(lo, logits, pred, yb))
        for layer, attn in enumerate(attns):
            a = attn.cpu().numpy()  # (B, H, T, T)
            for head in range(a.shape[1]):
                txn.write("attention", attention_table(a[:, head], lo, head, yb), layer=layer)
        bar.update(hi - lo)
    bar.close()
    return correct


def attention_table(a: np.ndarray, first_sample: int, head: int, y: np.ndarray) -> pa.Table:
    """Rows of one head for a batch: attention ``a`` of shape (batch, query_pos, key_pos) and
    labels ``y`` of shape (batch, n_points)."""
    B, T, _ = a.shape
    rows = np.ascontiguousarray(a, dtype=np.float32).reshape(B * T, T)
    offsets = np.arange(0, B * T * T + 1, T, dtype=np.int32)
    weights = pa.ListArray.from_arrays(pa.array(offsets), pa.array(rows.reshape(-1)))
    query_pos = np.tile(np.arange(T, dtype=np.int16), B)
    plogp = np.where(rows > 0, rows * np.log(np.where(rows > 0, rows, 1.0)), 0.0)
    y_pos = np.repeat(y > 0, T, axis=0)  # (B*T, n_points): label of each key's point is +1
    return pa.table(
        {
            "head": np.full(B * T, head, dtype=np.int16),
            "sample": np.repeat(np.arange(first_sample, first_sample + B, dtype=np.int32), T),
            "query_pos": query_pos,
            "query_kind": pa.array(np.where(query_pos % 2 == 0, "x", "y")),
            "point": query_pos // 2,
            "weights": weights,
            "entropy": (-plogp.sum(1)).astype(np.float32),
            "max_weight": rows.max(1),
            "argmax_key": rows.argmax(1).astype(np.int16),
            "mass_x": rows[:, ::2].sum(1),
            "mass_y": rows[:, 1::2].sum(1),
            "mass_y_pos": (rows[:, 1::2] * y_pos).sum(1).astype(np.float32),
        }
    )


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


def _inputs_table(batch: tasks.TaskBatch) -> pa.Table:
    S, N, D = batch.x.shape
    x = batch.x.astype(np.int8).reshape(-1)
    offsets = np.arange(0, S * N * D + 1, D, dtype=np.int32)
    return pa.table(
        {
            "sample": np.repeat(np.arange(S, dtype=np.int32), N),
            "point": np.tile(np.arange(N, dtype=np.int16), S),
            "x": pa.ListArray.from_arrays(pa.array(offsets), pa.array(x)),
            "y": batch.y.astype(np.int8).reshape(-1),
        }
    )


def _functions_table(batch: tasks.TaskBatch) -> pa.Table:
    S, n_terms, D = batch.weights.shape
    w = batch.weights.astype(np.int8).reshape(-1)
    return pa.table(
        {
            "sample": np.repeat(np.arange(S, dtype=np.int32), n_terms * D),
            "term": np.tile(np.repeat(np.arange(n_terms, dtype=np.int16), D), S),
            "literal": np.tile(np.arange(D, dtype=np.int16), S * n_terms),
            "weight": w,
            "sign": np.sign(w).astype(np.int8),
            "threshold": np.repeat(batch.thresholds.astype(np.float32), n_terms * D),
        }
    )


def _runs_row(e: Extraction, device: str, accuracy: float, command: str) -> pa.Table:
    loaded, batch = e.loaded, e.batch
    v = versions()
    cfg = loaded.config
    S, N, _ = batch.x.shape
    row = {
        "run_id": e.run_id,
        "created_at": datetime.now(timezone.utc),
        "checkpoint": e.checkpoint,
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
        "seed": e.seed,
        "n_samples": S,
        "device": device,
        "accuracy": accuracy,
        "attnstore_version": v["attnstore"],
        "torch_version": v["torch"],
        "python_version": v["python"],
        "schema_version": SCHEMA_VERSION,
        "command": command,
    }
    return TABLES["runs"].row(row)
