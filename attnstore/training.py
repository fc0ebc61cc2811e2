"""Training and evaluating in-context learners, with the baselines they are judged against.

Training follows the incontext-bool recipe without its curriculum: every step draws a fresh
batch of prompts from the task, the loss is sigmoid + binary cross-entropy of every position's
prediction against ``(y + 1) / 2``, and the optimiser is Adam. Accuracy is ``sign(pred) == y``
per position, measured on prompts drawn with a seed the training batches never use.

Baselines, computed on the very same evaluation prompts:

- ``elimination`` (conjunction-like tasks): start with all ``2 * n_dims`` literals, delete every
  literal a positive example falsifies, predict +1 iff every kept literal holds;
- ``majority``: predict the label seen most often among the earlier examples of the prompt
  (-1 on a tie or with none seen).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from attnstore import tasks
from attnstore.checkpoint import (
    CARD_FILE,
    WEIGHTS_FILE,
    LoadedModel,
    card_text,
    load_checkpoint,
    save_checkpoint,
    save_step,
    train_seed,
    weights_bytes,
)
from attnstore.errors import ConfigError
from attnstore.limits import MAX_PROMPT_VALUES, check_at_most
from attnstore.model import InContextModel, ModelConfig, check_device
from attnstore.outputs import check_output_folder, write_output
from attnstore.progress import progress_bar
from attnstore.provenance import versions

# Tasks whose hidden function is a single conjunction, where the elimination algorithm applies.
ELIMINATION_TASKS = ("conjunction", "teach_conjunction")
EVAL_SEED_OFFSET = 1_000_003  # evaluation prompts never share a seed with a training batch
SEED_MAX = tasks.SEED_MAX - EVAL_SEED_OFFSET  # the evaluation's seed is a task seed too


@dataclass
class TrainConfig:
    """Everything that determines a training run; recorded whole in the card."""

    task: str = "conjunction"
    n_dims: int = 10
    n_points: int = 40
    n_layers: int = 3
    n_heads: int = 4
    d_model: int = 64
    steps: int = 5000
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0
    eval_samples: int = 1000
    task_params: dict[str, Any] = field(default_factory=dict)
    save_every: int | None = None  # also keep the model at steps N, 2N, ... and the last

    def validate(self) -> None:
        """ConfigError naming the first value outside what is accepted; nothing is allocated
        and nothing runs before every value is checked, so a training that could not finish
        (or would take days to draw its prompts) is refused at once."""
        for name in (
            "n_dims", "n_points", "n_layers", "n_heads", "d_model", "steps", "batch_size",
            "eval_samples",
        ):  # fmt: skip
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be at least 1")
        if self.save_every is not None and not 1 <= self.save_every <= self.steps:
            raise ConfigError(
                f"save_every={self.save_every} must be between 1 and steps={self.steps}"
            )
        if not 0 <= self.seed <= SEED_MAX:
            raise ConfigError(
                f"seed={self.seed} is not accepted; accepted: 0 <= seed <= {SEED_MAX}"
            )
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr={self.lr} is not accepted; accepted: a finite number above 0")
        for what, n in (("a batch", self.batch_size), ("the evaluation", self.eval_samples)):
            check_at_most(
                f"{what} of {n:,} prompts x {self.n_points} points x {self.n_dims} dims: the "
                "input values drawn at once",
                n * self.n_points * self.n_dims,
                MAX_PROMPT_VALUES,
                "MAX_PROMPT_VALUES",
                "accepted: fewer prompts, points or dims",
            )
        # Fails early, with the task's own message, on an unknown task or parameter.
        self.task_params = tasks.task_params(self.task, **self.task_params)


def _batch_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def _to_torch(batch: tasks.TaskBatch, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(batch.x).to(device), torch.from_numpy(batch.y).to(device)


def init_model(model_cfg: ModelConfig, seed: int) -> InContextModel:
    """The untrained model of a training of this shape and training seed: torch's generator
    seeded with ``seed``, then the model built on the CPU (so its weights are the same
    whatever device trains it). The one definition of a training's step 0: :func:`train`
    starts from it, and :func:`save_untrained` writes it for a training that kept none."""
    torch.manual_seed(seed)
    return InContextModel(model_cfg)


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    command: str | None = None,
    progress: bool = True,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train a model as ``cfg`` says, evaluate it, write checkpoint and card; returns the card.

    With ``cfg.save_every = N`` the model is also kept at step 0 (the untrained weights, the
    null of every structure metric), N, 2N, ... and the last, each in
    ``out_dir/steps/step-<step>/`` (:func:`attnstore.checkpoint.save_step`) with the step and
    the running loss in its card (none at step 0); saving reads the weights only, so the final
    model is the same bytes with or without it."""
    cfg.validate()
    check_device(device)
    model_cfg = ModelConfig(cfg.n_dims, 2 * cfg.n_points, cfg.n_layers, cfg.n_heads, cfg.d_model)
    model = init_model(model_cfg, cfg.seed).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    losses: list[float] = []
    start = time.perf_counter()
    if cfg.save_every:
        save_step(model, step_card(cfg, model_cfg, 0, losses, device, command), out_dir, 0)
    bar = progress_bar(range(cfg.steps), desc="train", unit="step", enabled=progress)
    for step in bar:
        batch = tasks.sample_task(
            cfg.task,
            cfg.batch_size,
            cfg.n_points,
            cfg.n_dims,
            _batch_seed(cfg.seed, step),
            **cfg.task_params,
        )
        x, y = _to_torch(batch, device)
        logits = model(x, y).logits
        loss = F.binary_cross_entropy_with_logits(logits, (y + 1) / 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        done = step + 1
        if cfg.save_every and (done % cfg.save_every == 0 or done == cfg.steps):
            save_step(
                model, step_card(cfg, model_cfg, done, losses, device, command), out_dir, done
            )
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    wall = time.perf_counter() - start
    model.eval()
    report = evaluate(
        model,
        cfg.task,
        cfg.eval_samples,
        cfg.seed + EVAL_SEED_OFFSET,
        cfg.n_points,
        device=device,
        **cfg.task_params,
    )
    card = step_card(cfg, model_cfg, cfg.steps, losses, device, command) | {
        "wall_time_s": round(wall, 2),
        "steps_per_s": round(cfg.steps / wall, 2),
        "final_loss": float(np.mean(losses[-100:])),
        "loss_every_100_steps": [
            round(float(np.mean(losses[i : i + 100])), 5) for i in range(0, len(losses), 100)
        ],
        "eval": report,
    }
    save_checkpoint(model, card, out_dir)
    return card


SEED_FOLDER = "seed-{seed}"  # one training of a grid of seeds (train_seeds), inside its out


def train_seeds(
    cfg: TrainConfig,
    seeds: list[int],
    out_dir: str | Path,
    command: str | None = None,
    progress: bool = True,
    device: str = "cpu",
) -> list[tuple[int, Path, dict[str, Any] | None]]:
    """Train ``cfg`` once per training seed, each into ``out_dir/seed-<seed>/``: a grid of
    models that differ by their seed alone (``cfg.seed`` is replaced). Resumable: a seed whose
    folder holds its finished model (a card with its evaluation, of this very config) is
    skipped; one killed mid-way (no such card) is trained again from step 0, its saved steps
    rewritten. Every seed and every finished folder is checked before anything trains: a seed
    out of range, a seed given twice, or a folder finished with another config is a
    ConfigError, and nothing is written. Returns (seed, folder, card) per seed, card None for
    one skipped."""
    if not seeds:
        raise ConfigError("no training seeds; accepted: one or more, e.g. 1,2,3")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"training seed {repeated[0]} is given twice; give each seed once")
    configs = [replace(cfg, seed=seed) for seed in seeds]
    for c in configs:
        c.validate()
    check_device(device)
    folders = [Path(out_dir) / SEED_FOLDER.format(seed=seed) for seed in seeds]
    finished = [finished_training(c, f) for c, f in zip(configs, folders, strict=True)]
    out = []
    for c, folder, done in zip(configs, folders, finished, strict=True):
        if done:
            out.append((c.seed, folder, None))
            continue
        card = train(c, folder, command=command, progress=progress, device=device)
        out.append((c.seed, folder, card))
    return out


def finished_training(cfg: TrainConfig, folder: Path) -> bool:
    """Whether ``folder`` holds the finished model of ``cfg`` (its final card, with the
    evaluation that is written last); False for a folder with none (never trained, or killed
    before the end). A finished model of another config is a ConfigError naming the first
    field that differs."""
    try:
        card = json.loads((folder / CARD_FILE).read_text())
    except (OSError, ValueError):
        return False
    if not (isinstance(card, dict) and "eval" in card and (folder / WEIGHTS_FILE).is_file()):
        return False
    trained = card.get("train") if isinstance(card.get("train"), dict) else {}
    for name, value in asdict(cfg).items():
        if trained.get(name) != value:
            raise ConfigError(
                f"'{folder}' holds a model trained with {name}={trained.get(name)!r}, not "
                f"{value!r}; give another --out, or the config it was trained with"
            )
    return True


FRESH_INIT = "fresh"  # card["init"] of a model written by save_untrained


def save_untrained(
    checkpoint: str | Path, out_dir: str | Path, command: str | None = None
) -> tuple[dict[str, Any], bool]:
    """Write the untrained model of the training that made ``checkpoint`` into ``out_dir``:
    :func:`init_model` of its shape and training seed, the very bytes ``train --save-every``
    keeps as step 0, for a training that kept none (trained without it, or a single final
    checkpoint). Its card is a step-0 card whose ``train`` entry is the checkpoint card's, so
    the runs extracted from it on a lineage's prompts join that lineage; ``"init": "fresh"``
    and ``init_for_sha256`` (the checkpoint's) say what it is (structure_null's null_source).

    ConfigError, and nothing written: a checkpoint whose card records no training seed (an
    incontext-bool one, a .safetensors without its card), ``out_dir`` inside a store, or one
    that holds another model. One holding this very model already is left as it is. Returns
    the card and whether anything was written."""
    if str(checkpoint).endswith(".pt"):  # incontext-bool's: no card, hence no training seed
        raise _no_seed(checkpoint, "is an incontext-bool .pt: it")
    loaded = load_checkpoint(checkpoint)
    seed = train_seed(loaded)
    if seed is None:
        raise _no_seed(checkpoint)
    kept = {k: loaded.card[k] for k in ("task", "task_params", "steps") if k in loaded.card}
    card = {
        "format": "attnstore-card-v1",
        "model": loaded.config.to_dict(),
        **kept,
        "train": loaded.card["train"],
        "seed": seed,
        "step": 0,
        "running_loss": None,
        "init": FRESH_INIT,
        "init_for_sha256": loaded.sha256,
        "versions": versions(),
        "command": command or "attnstore.training.save_untrained(...)",
    }
    data = weights_bytes(init_model(loaded.config, seed))
    out = check_output_folder(out_dir)
    weights, card_file = out / WEIGHTS_FILE, out / CARD_FILE
    held = weights.read_bytes() if weights.is_file() else None
    held_card = _held_card(card_file)
    if held is not None or card_file.exists():
        same = held == data and (
            held_card is None  # a write killed between the weights and the card: finish it
            or (held_card.get("init") == FRESH_INIT and held_card.get("train") == card["train"])
        )
        if not same:
            raise ConfigError(
                f"'{out_dir}' already holds another model; give a new folder for the "
                "untrained model"
            )
        if held_card is not None:
            return held_card, False
    if held is None:
        write_output(weights, lambda f: f.write(data))
    write_output(card_file, lambda f: f.write(card_text(card).encode()))
    return card, True


def _held_card(path: Path) -> dict[str, Any] | None:
    """The card a folder holds already: None where there is none, {} for one that is no
    readable JSON object (so not this model's)."""
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return card if isinstance(card, dict) else {}


def _no_seed(checkpoint: str | Path, what: str = "") -> ConfigError:
    return ConfigError(
        f"checkpoint '{checkpoint}' {what or '(its card has no train.seed)'} records no "
        "training seed; accepted: a model written by 'attnstore train', or one of its steps"
    )


RUNNING_LOSS_STEPS = 100  # the running loss of a card: the mean over this many last steps


def step_card(
    cfg: TrainConfig,
    model_cfg: ModelConfig,
    step: int,
    losses: list[float],
    device: str,
    command: str | None,
) -> dict[str, Any]:
    """The card of the model after ``step`` optimiser steps: what trained it, the step, and
    the running loss (mean of the last :data:`RUNNING_LOSS_STEPS` steps' losses; None before
    the first step)."""
    return {
        "format": "attnstore-card-v1",
        "model": model_cfg.to_dict(),
        "task": cfg.task,
        "task_params": cfg.task_params,
        "train": asdict(cfg) | {"optimizer": "adam", "loss": "bce_with_logits", "device": device},
        "seed": cfg.seed,
        "steps": cfg.steps,
        "step": step,
        "running_loss": (
            round(float(np.mean(losses[-RUNNING_LOSS_STEPS:])), 6) if losses else None
        ),
        "versions": versions(),
        "command": command or "attnstore.train(...)",
    }


@torch.no_grad()
def evaluate(
    model: InContextModel | LoadedModel,
    task: str,
    n_samples: int,
    seed: int,
    n_points: int | None = None,
    batch_size: int = 500,
    device: str = "cpu",
    **task_params: Any,
) -> dict[str, Any]:
    """Accuracy per position of the model and the baselines on fresh prompts of ``task``."""
    if isinstance(model, LoadedModel):
        model = model.model
    cfg = model.cfg
    n_points = cfg.max_points if n_points is None else n_points
    if n_samples < 1:
        raise ConfigError(f"samples={n_samples} must be at least 1")
    if n_points > cfg.max_points:
        raise ConfigError(
            f"n_points={n_points} exceeds what the checkpoint's positions allow "
            f"({cfg.max_points} points)"
        )
    batch = tasks.sample_task(task, n_samples, n_points, cfg.n_dims, seed, **task_params)
    correct = np.zeros(n_points)
    for lo in range(0, n_samples, batch_size):
        x = torch.from_numpy(batch.x[lo : lo + batch_size]).to(device)
        y = torch.from_numpy(batch.y[lo : lo + batch_size]).to(device)
        pred = torch.where(model(x, y).logits > 0, 1.0, -1.0)
        correct += (pred == y).double().sum(0).cpu().numpy()
    acc = {"model": correct / n_samples}
    acc["majority"] = (majority_baseline(batch.y) == batch.y).mean(0)
    if task in ELIMINATION_TASKS:
        acc["elimination"] = (elimination_baseline(batch.x, batch.y) == batch.y).mean(0)
    tail = min(10, n_points)
    return {
        "task": task,
        "task_params": batch.params,
        "n_samples": n_samples,
        "n_points": n_points,
        "seed": seed,
        "accuracy_per_position": {k: [round(float(v), 5) for v in a] for k, a in acc.items()},
        f"accuracy_last_{tail}": {k: round(float(a[-tail:].mean()), 5) for k, a in acc.items()},
    }


def elimination_baseline(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Predictions of the elimination algorithm, shape (n_samples, n_points), for x of shape
    (n_samples, n_points, n_dims) and y of shape (n_samples, n_points), both in ±1."""
    n_samples, n_points, n_dims = x.shape
    # kept[s, j] / kept_neg[s, j]: literal x_j / not-x_j still in the hypothesis.
    kept = np.ones((n_samples, n_dims), dtype=bool)
    kept_neg = np.ones((n_samples, n_dims), dtype=bool)
    pred = np.empty((n_samples, n_points), dtype=np.float32)
    for i in range(n_points):
        pos, neg = x[:, i] > 0, x[:, i] < 0
        holds = ~(kept & neg).any(1) & ~(kept_neg & pos).any(1)
        pred[:, i] = np.where(holds, 1.0, -1.0)
        positive = (y[:, i] > 0)[:, None]
        kept &= ~(positive & neg)  # a positive example with x_j = -1 falsifies x_j
        kept_neg &= ~(positive & pos)
    return pred


def majority_baseline(y: np.ndarray) -> np.ndarray:
    """Predict the most frequent earlier label (-1 on ties or none), shape (n_samples, n_points)."""
    seen = np.cumsum(y, axis=1) - y  # sum of labels strictly before each position
    return np.where(seen > 0, 1.0, -1.0).astype(np.float32)
