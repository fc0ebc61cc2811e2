"""Does the head matter? Replay a run's prompts with one head changed, for every layer × head.

``intervene`` loads the run's own checkpoint (its bytes checked against the ``runs`` row),
replays the run's prompts (``inputs``) and measures, per head and point, the share of prompts
predicted right and the mean logit × y, without and with the change. The methods:

- ``zero``: the head's z (its attention-weighted values, before the layer's output
  projection: TransformerLens' ``hook_z``) set to 0;
- ``mean``: z replaced by its mean over the run's prompts at the same position;
- ``resample``: z taken from another prompt of the run (a permutation of the prompts drawn with
  ``seed``, recorded);
- ``knockout``: the head's attention from one class of queries to one class of keys removed and
  each touched row renormalised (:data:`TARGETS`). A row that would lose all its mass is kept
  as it is; the rows so kept are counted (``kept_rows``).

Heads are batched: every prompt of a chunk is replicated once per head (B × H prompts), copy h
with head h changed, so one forward pass changes every head of a layer. The unchanged model is
measured on the same replicated batch, with the same explicit attention, so a change that
leaves a head as it is gives exactly zero difference.

Each (method, target) is one intervention: an id hashed from the run, method, target, seed and
parameters, written in one transaction (tables ``interventions`` and ``effects``).
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from attnstore.checkpoint import LoadedModel, load_checkpoint
from attnstore.errors import CheckpointError, ConfigError, known
from attnstore.model import HeadEdit, check_device
from attnstore.progress import progress_bar
from attnstore.provenance import content_id, versions
from attnstore.schema import TABLES, written_by
from attnstore.store import Store, open_store
from attnstore.tasks import SEED_MAX
from attnstore.vocab import INTERVENTION_METHODS as METHODS  # re-exported: the plots use it
from attnstore.vocab import KNOCKOUT_TARGETS as TARGETS
from attnstore.vocab import QUERY_KINDS, Z_TARGET

ALL_POSITIONS = "all"  # --positions: every query position


@dataclass(frozen=True)
class InterventionResult:
    intervention_id: str
    method: str
    target: str
    existed: bool  # already in the store: nothing written


def intervention_id_for(run_id: str, method: str, target: str, params: dict[str, Any]) -> str:
    """The id of an intervention: a hash of its run, method, target and parameters (seed
    included), as ``analysis_id_for`` hashes an analysis."""
    return content_id({"run_id": run_id, "method": method, "target": target, **params})


def plan(methods, targets) -> list[tuple[str, str]]:
    """The (method, target) pairs to measure; a ConfigError naming what is accepted else.
    Knockout takes every target given (at least one); the other methods take target 'z'."""
    methods, targets = list(dict.fromkeys(methods)), list(dict.fromkeys(targets))
    if not methods:
        raise ConfigError(f"no method given; known: {known(METHODS)}")
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"unknown method '{m}'; known: {known(METHODS)}")
    for t in targets:
        if t not in TARGETS:
            raise ConfigError(f"unknown knockout target '{t}'; known: {known(TARGETS)}")
    if targets and "knockout" not in methods:
        raise ConfigError(
            f"targets ({', '.join(targets)}) are for method knockout only; add --method knockout"
        )
    if "knockout" in methods and not targets:
        raise ConfigError(f"method knockout needs a --target; known: {known(TARGETS)}")
    return [(m, t) for m in methods for t in (targets if m == "knockout" else [Z_TARGET])]


def intervene(
    store: str | Path | Store,
    run_id: str | None = None,
    methods: tuple[str, ...] | list[str] = ("zero",),
    targets: tuple[str, ...] | list[str] = (),
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 128,
    overwrite: bool = False,
    progress: bool = False,
    command: str = "",
    heads: str | None = None,
    positions: str = ALL_POSITIONS,
) -> list[InterventionResult]:
    """Measure every layer × head of a run (the latest if ``run_id`` is None) under each method
    (and knockout target); one intervention, one transaction, each. Everything is checked
    (methods, targets, run, heads, positions, prompts, checkpoint) before anything is written.

    ``heads`` ('L1H0,L1H1,L1H2'): change that set of heads together, in one intervention (rows
    with layer and head -1), instead of every head one at a time. ``positions`` ('all', 'x',
    'y', 'N' or 'N..M', query positions counted from 0 over the 2 * n_points tokens): change
    the heads at those query positions only (:func:`query_positions`)."""
    pairs = plan(methods, targets)
    check_device(device)
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be at least 1")
    if not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"seed={seed} is out of range; accepted: 0 <= seed <= {SEED_MAX}")
    s = open_store(store)
    run = s.run(run_id)
    chosen = parse_heads(heads, run["n_layers"], run["n_heads"]) if heads is not None else None
    where = query_positions(positions, run["n_points"])
    x, y = s.prompts(run)
    y = y.astype(np.float32)  # multiplies float logits
    params: dict[str, Any] = {"device": device}
    if chosen is not None:  # only when given: the ids of earlier interventions stay the same
        params["heads"] = ",".join(f"L{layer}H{head}" for layer, head in chosen)
    if positions != ALL_POSITIONS:
        params["positions"] = positions
    ids = {
        (m, t): intervention_id_for(
            run["run_id"], m, t, {**params, "seed": seed if m == "resample" else None}
        )
        for m, t in pairs
    }
    todo = [p for p in pairs if overwrite or not s.has("intervention", ids[p])]
    results = [InterventionResult(ids[p], *p, existed=p not in todo) for p in pairs]
    if not todo:
        return results
    loaded = _load(run, device)
    replay = Replay(loaded, x, y, batch_size, device, seed, where)
    L, S, N = loaded.config.n_layers, x.shape[0], x.shape[1]
    units = 1 if chosen is not None else L * loaded.config.n_heads  # rows per (prompt, point)
    passes = len(todo) * (1 if chosen is not None else L) * len(replay.chunks)
    bar = progress_bar(total=passes, desc="intervene", unit="pass", enabled=progress)
    tables = replay.effects(todo, bar) if chosen is None else replay.joint(todo, chosen, bar)
    for method, target in todo:
        effects, kept = tables[method, target]
        with s.transaction("intervention", ids[method, target], overwrite=overwrite) as txn:
            txn.expect_rows(interventions=1, effects=0, prompt_effects=units * S * N)
            txn.write("effects", TABLES["effects"].schema.empty_table())  # the old per-point rows
            txn.write("prompt_effects", effects)
            row = _interventions_row(
                ids[method, target], run, method, target, seed, params, kept, command
            )
            txn.write("interventions", row)
    bar.close()
    return results


_HEAD = re.compile(r"L(\d+)H(\d+)")


def parse_heads(spec: str, n_layers: int, n_heads: int) -> list[tuple[int, int]]:
    """'L1H0,L1H1' -> [(1, 0), (1, 1)], sorted, each checked against the model's shape; a
    ConfigError naming the first head that is malformed, repeated or not in the model."""
    every = (
        f"L0H0..L{n_layers - 1}H{n_heads - 1} (layers 0..{n_layers - 1}, heads 0..{n_heads - 1})"
    )
    out: list[tuple[int, int]] = []
    for part in spec.split(","):
        m = _HEAD.fullmatch(part.strip())
        if m is None:
            raise ConfigError(
                f"head '{part.strip()}' is not of the form L<layer>H<head>, e.g. L1H0"
            )
        head = (int(m[1]), int(m[2]))
        if not (head[0] < n_layers and head[1] < n_heads):
            raise ConfigError(f"unknown head '{part.strip()}'; the model's heads: {every}")
        if head in out:
            raise ConfigError(f"head '{part.strip()}' is given twice in --heads")
        out.append(head)
    return sorted(out)


def query_positions(spec: str, n_points: int) -> np.ndarray:
    """The query positions an edit is restricted to, bool of shape (2 * n_points,): 'all',
    'x' (even positions: the x tokens), 'y' (odd: the labels), 'N' or 'N..M' (inclusive);
    a ConfigError naming the spec where it is malformed or outside the prompt."""
    T = 2 * n_points
    pos = np.arange(T)
    if spec == ALL_POSITIONS:
        return np.ones(T, dtype=bool)
    if spec in QUERY_KINDS:
        return pos % 2 == (0 if spec == "x" else 1)
    m = re.fullmatch(r"(\d+)(?:\.\.(\d+))?", spec)
    if m is None:
        raise ConfigError(
            f"positions '{spec}' are not all, x, y, N or N..M (query positions, from 0)"
        )
    lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
    if not lo <= hi < T:
        raise ConfigError(
            f"positions '{spec}' are outside the prompt: its query positions are 0..{T - 1} "
            f"({n_points} points), and N..M needs N <= M"
        )
    return (pos >= lo) & (pos <= hi)


# ---- reading the run ------------------------------------------------------------------------


def _load(run: dict[str, Any], device: str) -> LoadedModel:
    """The run's checkpoint, its bytes checked against the sha256 the run recorded."""
    spec, want = run["checkpoint"], run["checkpoint_sha256"]
    where = f"run {run['run_id']}'s checkpoint '{spec}' (sha256 {want})"
    try:
        if run["checkpoint_source"] == "incontext-bool":
            with tempfile.TemporaryDirectory() as tmp:  # the shape the run recorded
                config = Path(tmp) / "config.yaml"
                shape = {
                    "family": "san",
                    "n_dims": run["n_dims"],
                    "n_positions": run["n_ctx"] // 2,
                    "n_embd": run["d_model"],
                    "n_layer": run["n_layers"],
                    "n_head": run["n_heads"],
                }
                config.write_text(json.dumps(shape))  # JSON is YAML
                loaded = load_checkpoint(spec, config, device=device)
        else:
            loaded = load_checkpoint(spec, device=device)
    except CheckpointError as e:
        raise CheckpointError(f"{where} cannot be loaded: {e}") from e
    if loaded.sha256 != want:
        raise CheckpointError(
            f"{where} has changed: its bytes now hash to sha256 {loaded.sha256}; "
            "intervene on the checkpoint the run was extracted from"
        )
    cfg = loaded.config
    for name in ("n_layers", "n_heads", "d_model", "n_dims", "n_ctx"):
        if run[name] != getattr(cfg, name):
            raise CheckpointError(
                f"run {run['run_id']}'s runs row says {name}={run[name]}, but its checkpoint "
                f"'{spec}' has {name}={getattr(cfg, name)}: the row is not the checkpoint's; "
                "extract the run again"
            )
    if not 1 <= run["n_points"] <= cfg.max_points:
        raise CheckpointError(
            f"run {run['run_id']}'s runs row says n_points={run['n_points']}, but its "
            f"checkpoint '{spec}' takes at most {cfg.max_points} points; extract the run again"
        )
    return loaded


# ---- the replay -----------------------------------------------------------------------------


class Replay:
    """A run's prompts replicated once per head (copy h changes head h), swept in chunks.

    Each chunk runs the unchanged model layer by layer on the replicated batch; at each layer
    every (method, target) forks from that same residual stream, changes the layer's heads and
    runs the layers above. So the layers below a change are computed once, and the unchanged
    model a change is compared with is the very computation it forks from."""

    def __init__(
        self,
        loaded: LoadedModel,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        device: str,
        seed: int,
        positions: np.ndarray | None = None,
    ) -> None:
        self.model = loaded.model.to(device).eval()
        cfg = loaded.config
        self.L, self.H, self.d_head = cfg.n_layers, cfg.n_heads, cfg.d_head
        self.S, self.N = y.shape
        self.T = 2 * self.N
        self.device = device
        self.x = torch.from_numpy(x).to(device)
        self.y = torch.from_numpy(y).to(device)
        self.chunks = [(lo, min(lo + batch_size, self.S)) for lo in range(0, self.S, batch_size)]
        self.perm = torch.from_numpy(np.random.default_rng(seed).permutation(self.S)).to(device)
        T = 2 * self.N
        where = np.ones(T, dtype=bool) if positions is None else positions
        self.where = torch.from_numpy(where).to(device)  # (T,): the query positions changed
        self.z: list[torch.Tensor] = []  # per layer: (S, H, T, d_head), for mean and resample
        self.mean_z: list[torch.Tensor] = []  # per layer: (H, T, d_head)

    def _replicate(self, lo: int, hi: int) -> torch.Tensor:
        """The residual stream entering the first block for prompts lo..hi-1, once per head,
        head-major: shape (H * B, T, d_model)."""
        H = self.H
        return self.model.embed(self.x[lo:hi].repeat(H, 1, 1), self.y[lo:hi].repeat(H, 1))

    def _own_heads(self, t: torch.Tensor, B: int) -> torch.Tensor:
        """Copy h's head h of a per-head tensor of shape (H * B, H, ...): shape (B, H, ...)."""
        t = t.view(self.H, B, *t.shape[1:])
        return torch.stack([t[h, :, h] for h in range(self.H)], dim=1)

    @torch.no_grad()
    def _measure_z(self) -> None:
        """Every prompt's z per layer and head, as the unchanged replicated model computes it
        (copy h's head h), and its mean over prompts."""
        zs: list[list[torch.Tensor]] = [[] for _ in range(self.L)]
        for lo, hi in self.chunks:
            h = self._replicate(lo, hi)
            for layer, block in enumerate(self.model.blocks):
                h, _, z = block(h, False, HeadEdit())
                zs[layer].append(self._own_heads(z, hi - lo))
        self.z = [torch.cat(z) for z in zs]
        self.mean_z = [z.mean(0) for z in self.z]

    @torch.no_grad()
    def effects(self, pairs: list[tuple[str, str]], bar=None) -> dict[tuple[str, str], Any]:
        """Per (method, target): its prompt_effects table (rows: layer, head, sample, point)
        and the number of query rows a knockout kept whole."""
        if any(m in ("mean", "resample") for m, _ in pairs) and not self.z:
            self._measure_z()
        L, H, N, S = self.L, self.H, self.N, self.S
        base = Outcomes(1, H, S, N)  # copy h's unchanged model: the same for every layer
        changed = {p: Outcomes(L, H, S, N) for p in pairs}
        blocks = self.model.blocks
        for lo, hi in self.chunks:
            B = hi - lo
            y = self.y[lo:hi]  # (B, N)
            h = self._replicate(lo, hi)
            for layer, block in enumerate(blocks):
                h_next, attn, z0 = block(h, False, HeadEdit())
                heads = torch.eye(H, dtype=torch.bool, device=self.device).repeat_interleave(
                    B, dim=0
                )  # (H * B, H): copy h changes head h
                for p in pairs:
                    edit, kept = self._edit(
                        *p, layer, lo, hi, heads, z0, self._own_heads(attn, B), H
                    )
                    g, _, _ = block(h, False, edit)
                    for above in blocks[layer + 1 :]:
                        g, _, _ = above(g, False, HeadEdit())
                    logits = self.model.unembed(g).view(H, B, N)
                    changed[p].put(layer, lo, hi, logits, y, kept)
                    if bar is not None:
                        bar.update(1)
                h = h_next
            base.put(0, lo, hi, self.model.unembed(h).view(H, B, N), y)
        return {p: (changed[p].table(base), int(changed[p].kept.sum())) for p in pairs}

    @torch.no_grad()
    def joint(
        self, pairs: list[tuple[str, str]], chosen: list[tuple[int, int]], bar=None
    ) -> dict[tuple[str, str], Any]:
        """Per (method, target): its prompt_effects table for the set of heads ``chosen``
        changed together (one row per prompt and point, layer and head -1) and the number of
        query rows a knockout kept whole, summed over the set."""
        if any(m in ("mean", "resample") for m, _ in pairs) and not self.z:
            self._measure_z()
        H, N, S = self.H, self.N, self.S
        by_layer = {layer: [h for (lay, h) in chosen if lay == layer] for layer, _ in chosen}
        base = Outcomes(1, 1, S, N)
        changed = {p: Outcomes(1, 1, S, N) for p in pairs}
        for lo, hi in self.chunks:
            B = hi - lo
            y = self.y[lo:hi]
            h = self.model.embed(self.x[lo:hi], y)
            for block in self.model.blocks:  # explicit attention, as every changed layer
                h, _, _ = block(h, False, HeadEdit())
            base.put(0, lo, hi, self.model.unembed(h).view(1, B, N), y)
            for p in pairs:
                g = self.model.embed(self.x[lo:hi], y)
                kept = torch.zeros(1, B, N, dtype=torch.int64)
                for layer, block in enumerate(self.model.blocks):
                    g_next, attn, z0 = block(g, False, HeadEdit())
                    if layer in by_layer:
                        heads = torch.zeros(B, H, dtype=torch.bool, device=self.device)
                        heads[:, by_layer[layer]] = True
                        edit, k = self._edit(*p, layer, lo, hi, heads, z0, attn, 1)
                        if k is not None:
                            kept += k[by_layer[layer]].sum(0, keepdim=True)
                        g_next, _, _ = block(g, False, edit)
                    g = g_next
                changed[p].put(0, lo, hi, self.model.unembed(g).view(1, B, N), y, kept)
                if bar is not None:
                    bar.update(1)
        out = {}
        for p in pairs:
            t = changed[p].table(base)
            minus = pa.array(np.full(t.num_rows, -1, dtype=np.int16))
            t = t.set_column(0, "layer", minus).set_column(1, "head", minus)
            out[p] = (t, int(changed[p].kept.sum()))
        return out

    def _edit(
        self,
        method: str,
        target: str,
        layer: int,
        lo: int,
        hi: int,
        heads: torch.Tensor,
        z0: torch.Tensor,
        attn: torch.Tensor,
        copies: int,
    ) -> tuple[HeadEdit, torch.Tensor | None]:
        """The edit of the chosen ``heads`` (shape (copies * B, H): which heads each row of the
        batch changes) for prompts lo..hi-1, repeated ``copies`` times (once per head for
        the one-at-a-time sweep), restricted to the query positions of ``self.where``; and per
        (head, prompt, point) the query rows a knockout keeps whole (None for the other
        methods). ``z0`` is the unchanged z of shape (copies * B, H, T, d_head); ``attn`` the
        unchanged attention of shape (B, H, T, T) that each changed head would have."""
        H, B, T, dh = self.H, hi - lo, self.T, self.d_head
        where = self.where[None, :, None]  # (1, T, 1): query rows
        if method == "knockout":
            remove = _remove_mask(target, self.y[lo:hi]) & where  # (B, T, T)
            return HeadEdit(heads, remove=remove.repeat(copies, 1, 1)), _kept_rows(attn, remove)
        if method == "zero":
            z = torch.zeros(copies * B, H, T, dh, device=self.device)
        elif method == "mean":
            z = self.mean_z[layer].unsqueeze(0).expand(copies * B, H, T, dh)
        else:  # resample: prompt b takes the z of prompt perm[b]
            z = self.z[layer][self.perm[lo:hi]].repeat(copies, 1, 1, 1)  # (copies * B, H, T, dh)
        z = torch.where(self.where[None, None, :, None], z, z0)  # unchanged elsewhere
        return HeadEdit(heads, z=z), None


def _kept_rows(attn: torch.Tensor, remove: torch.Tensor) -> torch.Tensor:
    """Per (head, prompt, point): query rows whose every attended key a knockout would remove,
    so that the row is kept whole (0, 1 or 2), from attention of shape (B, H, T, T) and the
    removed entries of shape (B, T, T); shape (H, B, N)."""
    B, H, T, _ = attn.shape
    causal = torch.ones(T, T, dtype=torch.bool, device=attn.device).tril()
    removed = (remove & causal)[:, None]  # (B, 1, T, T)
    whole = removed.any(-1) & (attn.masked_fill(removed, 0.0).sum(-1) == 0)  # (B, H, T)
    return whole.view(B, H, T // 2, 2).sum(3).transpose(0, 1).cpu()  # (H, B, N)


def _remove_mask(target: str, y: torch.Tensor) -> torch.Tensor:
    """The attention entries a knockout removes, shape (B, query_pos, key_pos) bool, for
    labels y of shape (B, N) (see :data:`TARGETS`)."""
    B, N = y.shape
    T = 2 * N
    pos = torch.arange(T, device=y.device)
    is_x = (pos % 2 == 0).expand(B, T)  # (B, T)
    is_y = ~is_x
    label = y.repeat_interleave(2, dim=1)  # (B, T): the label of each token's point
    query, key = target.split("_to_")
    q = is_x if query == "x" else is_y
    k = {
        "y_pos": is_y & (label > 0),
        "y_neg": is_y & (label < 0),
        "y": is_y,
        "x": is_x,
    }[key]
    return q[:, :, None] & k[:, None, :]  # (B, T, T)


class Outcomes:
    """Per (layer, head, prompt, point): whether the model is right, its logit * y, and the
    query rows a knockout kept whole; filled chunk by chunk."""

    def __init__(self, L: int, H: int, S: int, N: int) -> None:
        self.correct = np.zeros((L, H, S, N), dtype=bool)
        self.signed_logit = np.zeros((L, H, S, N), dtype=np.float32)
        self.kept = np.zeros((L, H, S, N), dtype=np.int8)

    def put(self, layer: int, lo: int, hi: int, logits, y, kept=None) -> None:
        """Prompts lo..hi-1 from logits of shape (H, B, N), labels y (B, N) and the kept
        rows of shape (H, B, N) (None: none). The prediction is +1 if logit > 0, else -1;
        logit * y is exact in float32 (y is ±1)."""
        self.correct[layer, :, lo:hi] = (torch.where(logits > 0, 1.0, -1.0) == y).cpu().numpy()
        self.signed_logit[layer, :, lo:hi] = (logits * y).cpu().numpy()
        if kept is not None:
            self.kept[layer, :, lo:hi] = kept.numpy()

    def table(self, base: Outcomes) -> pa.Table:
        """Rows per (layer, head, sample, point), in grain order, next to ``base``'s outcomes
        (the unchanged model: one layer, broadcast to every layer)."""
        L, H, S, N = self.correct.shape
        grid = np.meshgrid(np.arange(L), np.arange(H), np.arange(S), np.arange(N), indexing="ij")
        shape = (L, H, S, N)
        return pa.table(
            {
                "layer": grid[0].reshape(-1).astype(np.int16),
                "head": grid[1].reshape(-1).astype(np.int16),
                "sample": grid[2].reshape(-1).astype(np.int32),
                "point": grid[3].reshape(-1).astype(np.int16),
                "base_correct": np.broadcast_to(base.correct, shape).reshape(-1),
                "correct": self.correct.reshape(-1),
                "base_signed_logit": np.broadcast_to(base.signed_logit, shape).reshape(-1),
                "signed_logit": self.signed_logit.reshape(-1),
                "kept_rows": self.kept.reshape(-1),
            }
        )


def _interventions_row(
    intervention_id: str,
    run: dict[str, Any],
    method: str,
    target: str,
    seed: int,
    params: dict[str, Any],
    kept: int,
    command: str,
) -> pa.Table:
    v = versions()
    row = {
        "intervention_id": intervention_id,
        "created_at": datetime.now(timezone.utc),
        "run_id": run["run_id"],
        "method": method,
        "target": target,
        "seed": seed if method == "resample" else None,
        "params_json": json.dumps(params, sort_keys=True),
        "n_samples": run["n_samples"],
        "kept_rows": kept,
        "device": params["device"],
        **written_by(v, command),
    }
    return TABLES["interventions"].row(row)
