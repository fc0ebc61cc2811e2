"""Activation and path patching: which heads carry what a corruption changes?

A run's prompts (clean) are paired with corrupted ones (:mod:`attnstore.corruptions`). Each
prompt is run clean and corrupted; then the corrupted run is run again with something of the
clean run patched in, and the logit at every point is kept: clean, corrupted and patched.

- **Activation patching** (``target`` z, q, k or v): one head's z (its attention-weighted
  values), queries, keys or values replaced by the clean run's at some token positions
  (``positions``: all, x, y or one position N), for every layer x head. Heads are batched
  as interventions batch them: the prompts are replicated once per head, copy h patching
  head h, and every layer forks from the corrupted run's residual stream.
- **Path patching** (``paths``: ``SENDER->RECEIVER.q|k|v``, e.g. ``L0H1->L1H0.q``; ``*`` for
  every head, receivers downstream of the sender only): the sender's change of output
  (clean z - corrupted z, through its slice of the output projection, at ``positions``) is
  added to the receiver's input only, read anew as that head's queries (keys, values).
  Everything else runs on the corrupted prompt and sees the receiver's change but not the
  sender's. :func:`path_logits` takes any set of receivers (heads' q, k, v, MLPs, the
  read-out): with every component downstream of the sender, it is the activation patch.

Clean, corrupted and patched runs are computed on the same replicated batch with the same
explicit attention, so a patch that changes nothing (clean into clean) gives exactly the same
logits. The normalised effect at a point is ``(patched - corrupted) / (clean - corrupted)``:
0 where the patch restores nothing, 1 where it restores the clean logit; null where the
corruption did not move the logit. Per head, the views (``queries/views/patch_head_effects``)
pool points and prompts as ``sum (patched - corrupted)(clean - corrupted) / sum (clean -
corrupted)^2`` (the least-squares ratio; the point's ratio for one point) with a paired
bootstrap over prompts (:mod:`attnstore.stats`).

One patch (a corruption, target, positions and paths) is one transaction: tables ``patches``,
``patch_inputs`` (the corrupted prompts) and ``patch_effects``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from attnstore.corruptions import Corrupted, check_corruption, corrupt, functions_of
from attnstore.errors import ConfigError, known
from attnstore.interventions import _load
from attnstore.model import HeadEdit, InContextModel, check_device
from attnstore.progress import progress_bar
from attnstore.provenance import content_id, versions
from attnstore.schema import TABLES, written_by
from attnstore.store import Store, open_store
from attnstore.vocab import PATCH_TARGETS, PATH_INPUTS, QUERY_KINDS

QKV = PATH_INPUTS  # a head's inputs, in the order the layer computes them
_HEAD = r"(?:L(\d+)H(\d+)|(\*))"
_PATH = re.compile(rf"{_HEAD}->{_HEAD}\.(\w+)")


@dataclass(frozen=True)
class PatchResult:
    patch_id: str
    n_changed: int  # prompts the corruption changed
    existed: bool  # already in the store: nothing written


@dataclass(frozen=True)
class PathPatch:
    """One path: the sender head's output reaching the receiver head's ``input`` only."""

    sender: tuple[int, int]  # (layer, head)
    receiver: tuple[int, int]  # (layer, head), in a later layer
    input: str  # q, k or v


# ---- checking what is asked -------------------------------------------------------------------


def parse_positions(spec: str, n_points: int) -> np.ndarray:
    """The token positions ``spec`` names (all, x, y or one position N), as a bool mask of
    shape (2 * n_points,); a ConfigError naming what is accepted else."""
    T = 2 * n_points
    pos = np.arange(T)
    if spec == "all":
        return np.ones(T, dtype=bool)
    if spec in QUERY_KINDS:  # x tokens at even positions, y tokens at odd
        return pos % 2 == (0 if spec == "x" else 1)
    accepted = f"all, x, y or a token position 0..{T - 1}"
    if not re.fullmatch(r"[0-9]{1,9}", str(spec)):
        raise ConfigError(f"positions '{spec}'; accepted: {accepted}")
    if int(spec) >= T:
        raise ConfigError(
            f"position {spec} is outside the prompt: the run's prompts have {T} token "
            f"positions ({n_points} points); accepted: {accepted}"
        )
    return pos == int(spec)


def parse_paths(specs, n_layers: int, n_heads: int) -> list[PathPatch]:
    """The paths ``specs`` name (``LlHh->LlHh.q``, ``*`` for every head), each receiver in a
    later layer than its sender; a ConfigError naming the spec and what is accepted else."""
    out: dict[tuple, PathPatch] = {}
    form = "SENDER->RECEIVER.q|k|v, each head LlHh (e.g. L0H1->L1H0.q) or * (every head)"
    inputs = set()
    for spec in specs:
        m = _PATH.fullmatch(spec.strip())
        if m is None:
            raise ConfigError(f"path '{spec}'; accepted: {form}")
        channel = m.group(7)
        if channel not in PATH_INPUTS:
            raise ConfigError(
                f"path '{spec}': receiver input '{channel}'; accepted: {known(PATH_INPUTS)}"
            )
        inputs.add(channel)
        senders = _heads(spec, m.group(1, 2, 3), n_layers, n_heads)
        receivers = _heads(spec, m.group(4, 5, 6), n_layers, n_heads)
        pairs = [(s, r) for s in senders for r in receivers if r[0] > s[0]]
        if not pairs:
            s, r = senders[0], receivers[0]
            raise ConfigError(
                f"path '{spec}': receiver L{r[0]}H{r[1]} is not downstream of sender "
                f"L{s[0]}H{s[1]}; a receiver's layer must be later than its sender's"
            )
        for s, r in pairs:
            out[s, r] = PathPatch(s, r, channel)
    if len(inputs) > 1:
        raise ConfigError(
            f"paths read by several inputs ({', '.join(sorted(inputs))}); one patch takes one "
            "receiver input: patch each separately"
        )
    return [out[key] for key in sorted(out)]


def _heads(spec: str, groups, n_layers: int, n_heads: int) -> list[tuple[int, int]]:
    layer, head, star = groups
    if star:
        return [(lay, hd) for lay in range(n_layers) for hd in range(n_heads)]
    layer, head = int(layer), int(head)
    if layer >= n_layers or head >= n_heads:
        raise ConfigError(
            f"path '{spec}': head L{layer}H{head} is not in the model; it has layers "
            f"0..{n_layers - 1} and heads 0..{n_heads - 1}"
        )
    return [(layer, head)]


# ---- the passes -------------------------------------------------------------------------------


def _split(block, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """A layer's queries, keys and values from its input h of shape (B, T, d_model), as its
    attention computes them: three tensors of shape (B, H, T, d_head)."""
    attn = block.attn
    B, T, D = h.shape
    qkv = attn.qkv(block.ln_1(h)).split(D, dim=2)
    return tuple(t.view(B, T, attn.n_heads, attn.d_head).transpose(1, 2) for t in qkv)


@dataclass
class Pass:
    """One run of a (replicated) batch with explicit attention: the residual stream entering
    each layer, each layer's z (and q, k, v when asked), and the logits."""

    resid: list[torch.Tensor]  # per layer: (B, T, d_model), entering the layer
    acts: dict[str, list[torch.Tensor]]  # target -> per layer: (B, H, T, d_head)
    logits: torch.Tensor  # (B, N)


@torch.no_grad()
def run_pass(model: InContextModel, x, y, targets=("z",)) -> Pass:
    """The model on prompts x (B, N, n_dims), y (B, N), keeping what patches read."""
    h = model.embed(x, y)
    resid, acts = [], {t: [] for t in targets}
    for block in model.blocks:
        resid.append(h)
        for t, v in zip(QKV, _split(block, h) if set(targets) & set(QKV) else (), strict=False):
            if t in acts:
                acts[t].append(v)
        h, _, z = block(h, False, HeadEdit())
        if "z" in acts:
            acts["z"].append(z)
    return Pass(resid, acts, model.unembed(h))


@torch.no_grad()
def head_logits(
    model: InContextModel, clean: Pass, corrupted: Pass, target: str, positions: torch.Tensor
) -> torch.Tensor:
    """Activation patching of every head: passes of prompts replicated once per head (head
    major, H * B rows, copy h patches head h); the logits of shape (n_layers, H * B, N)."""
    H = model.cfg.n_heads
    C, T = clean.logits.shape[0], positions.shape[0]
    heads = torch.eye(H, dtype=torch.bool, device=positions.device).repeat_interleave(C // H, 0)
    where = positions.expand(C, T)
    out = []
    for layer, block in enumerate(model.blocks):
        edit = HeadEdit(heads, positions=where, **{target: clean.acts[target][layer]})
        g, _, _ = block(corrupted.resid[layer], False, edit)
        for above in model.blocks[layer + 1 :]:
            g, _, _ = above(g, False, HeadEdit())
        out.append(model.unembed(g))
    return torch.stack(out)


@dataclass(frozen=True)
class Receivers:
    """Per copy of a replicated batch (C rows): which components read the sender's change.
    ``heads`` of shape (C, n_layers, n_heads, 3) bool (the head's q, k, v), ``mlp`` of shape
    (C, n_layers) bool, ``out`` of shape (C,) bool (the read-out)."""

    heads: torch.Tensor
    mlp: torch.Tensor
    out: torch.Tensor


@torch.no_grad()
def path_logits(
    model: InContextModel,
    clean: Pass,
    corrupted: Pass,
    senders: list[tuple[int, int]],
    receivers: Receivers,
    positions: torch.Tensor,
) -> torch.Tensor:
    """Path patching on a replicated batch: copy c's sender ``senders[c]`` (layer, head)
    changes by its clean z at ``positions`` (T,), and only ``receivers`` of copy c read that
    change (added to their input); the logits of shape (C, N). ``clean`` and ``corrupted``
    need z."""
    cfg = model.cfg
    C = clean.logits.shape[0]
    H, dh = cfg.n_heads, cfg.d_head
    T = positions.shape[0]
    delta = torch.zeros(C, T, cfg.d_model, device=positions.device)
    rows = torch.arange(C, device=positions.device)
    s_layer = torch.tensor([s[0] for s in senders], device=positions.device)
    s_head = torch.tensor([s[1] for s in senders], device=positions.device)
    for layer, block in enumerate(model.blocks):
        mine = rows[s_layer == layer]
        if len(mine) == 0:
            continue
        hd = s_head[mine]
        dz = clean.acts["z"][layer][mine, hd] - corrupted.acts["z"][layer][mine, hd]  # (c, T, dh)
        dz = dz * positions[None, :, None]
        w_o = block.attn.out.weight.view(cfg.d_model, H, dh)[:, hd]  # (d_model, c, d_head)
        delta[mine] = torch.einsum("ctk,dck->ctd", dz, w_o)
    first = int(s_layer.min())  # below every sender the walk is the corrupted run
    h = corrupted.resid[first]
    for layer, block in enumerate(model.blocks):  # Block.forward, receivers reading h + delta
        if layer < first:
            continue
        inp = block.ln_1(h)
        edit = HeadEdit()
        reads = receivers.heads[:, layer]  # (C, H, 3)
        if reads.any():
            old, new = _split(block, h), _split(block, h + delta)
            swap = {
                t: torch.where(reads[:, :, i, None, None], new[i], old[i])
                for i, t in enumerate(QKV)
            }
            edit = HeadEdit(torch.ones(C, H, dtype=torch.bool, device=h.device), **swap)
        a, _, _ = block.attn(inp, False, edit)
        h = h + a
        m_in = block.ln_2(h)
        if receivers.mlp[:, layer].any():
            m_in = torch.where(receivers.mlp[:, layer, None, None], block.ln_2(h + delta), m_in)
        h = h + block.mlp(m_in)
    return model.unembed(torch.where(receivers.out[:, None, None], h + delta, h))


def receivers_of(paths: list[PathPatch], n_layers: int, n_heads: int, B: int) -> Receivers:
    """The receivers of paths replicated over B prompts each (path major): C = len(paths) *
    B rows."""
    P = len(paths)
    heads = torch.zeros(P, n_layers, n_heads, 3, dtype=torch.bool)
    for i, p in enumerate(paths):
        heads[i, p.receiver[0], p.receiver[1], QKV.index(p.input)] = True
    return Receivers(
        heads.repeat_interleave(B, 0),
        torch.zeros(P * B, n_layers, dtype=torch.bool),
        torch.zeros(P * B, dtype=torch.bool),
    )


# ---- a run's patch ----------------------------------------------------------------------------


def patch_id_for(run_id: str, params: dict[str, Any]) -> str:
    return content_id({"run_id": run_id, "kind": "patch", **params})


def patch(
    store: str | Path | Store,
    run_id: str | None = None,
    corruption: str = "flip_label",
    k: int = 0,
    target: str | None = None,
    positions: str = "all",
    paths: tuple[str, ...] | list[str] = (),
    device: str = "cpu",
    batch_size: int = 64,
    overwrite: bool = False,
    progress: bool = False,
    command: str = "",
) -> PatchResult:
    """Patch the clean run into the corrupted one for every head of a run (the latest if
    ``run_id`` is None) at ``target`` (z, q, k or v; default z), or along ``paths``; one
    transaction. Everything is checked (corruption, target, positions, paths, run, prompts,
    checkpoint) before anything is written."""
    paths = list(paths)
    if paths and target is not None:
        raise ConfigError(
            f"--target {target} is for activation patches; a path names its receiver's input "
            "(L0H0->L1H0.q): drop --target"
        )
    target = target or "z"
    if target not in PATCH_TARGETS:
        raise ConfigError(f"unknown patch target '{target}'; known: {known(PATCH_TARGETS)}")
    check_device(device)
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be at least 1")
    s = open_store(store)
    run = s.run(run_id)
    S, N, L, H = run["n_samples"], run["n_points"], run["n_layers"], run["n_heads"]
    check_corruption(corruption, run["task"], k, S)
    mask = parse_positions(positions, N)
    chosen = parse_paths(paths, L, H) if paths else []
    x, y = s.prompts(run)
    weights = thresholds = None
    if corruption != "flip_label":
        f = s.read("functions", run_id=run["run_id"])
        cols = {c: f.column(c).to_numpy() for c in ("sample", "term", "literal", "weight")}
        cols["threshold"] = f.column("threshold").to_numpy()
        weights, thresholds = functions_of(cols, S, run["n_dims"])
    bad = corrupt(corruption, run["task"], x, y, weights, thresholds, k)
    n_changed = int(bad.changed.any(1).sum())
    if n_changed == 0:
        raise ConfigError(
            f"corruption '{corruption}' with k={k} changes none of run {run['run_id']}'s {S} "
            "prompts (no prompt has that example or literal); try a smaller k"
        )
    kind = "path" if chosen else "activation"
    channel = chosen[0].input if chosen else target
    params = {
        "corruption": corruption,
        "k": k,
        "kind": kind,
        "target": channel,
        "positions": positions,
        "paths": [[*p.sender, *p.receiver] for p in chosen],
        "device": device,
    }
    key = patch_id_for(run["run_id"], params)
    if not overwrite and key in s.keys("patch"):
        return PatchResult(key, n_changed, existed=True)
    model = _load(run, device).model.to(device).eval()
    clean = (x, y.astype(np.float32))
    effects = _measure(model, clean, bad, target, mask, chosen, batch_size, device, progress)
    inputs = _inputs_table(bad)
    with s.transaction("patch", key, overwrite=overwrite) as txn:
        txn.expect_rows(patches=1, patch_inputs=S * N, patch_effects=effects.num_rows)
        txn.write("patch_inputs", inputs)
        txn.write("patch_effects", effects)
        v = versions()
        row = {
            "patch_id": key,
            "created_at": datetime.now(timezone.utc),
            "run_id": run["run_id"],
            "corruption": corruption,
            "corruption_k": k,
            "kind": kind,
            "patch_target": channel,
            "positions": positions,
            "paths": ",".join(paths) if paths else None,
            "n_samples": S,
            "n_changed": n_changed,
            "device": device,
            **written_by(v, command),
        }
        txn.write("patches", TABLES["patches"].row(row))
    return PatchResult(key, n_changed, existed=False)


def _measure(model, clean, bad: Corrupted, target, mask, paths, batch_size, device, progress):
    """The patch_effects table: every head (or every path) over every prompt, in chunks of
    prompts replicated once per head. Paths go in groups of n_heads copies (the last padded
    with its own last path), each group walking from the same clean and corrupted passes."""
    cfg = model.cfg
    L, H = cfg.n_layers, cfg.n_heads
    S, N = bad.y.shape
    positions = torch.from_numpy(mask).to(device)
    groups = [paths[i : i + H] for i in range(0, len(paths), H)]
    chunks = [(lo, min(lo + batch_size, S)) for lo in range(0, S, batch_size)]
    n_units = len(paths) if paths else L * H
    patched = np.zeros((n_units, S, N), dtype=np.float32)
    base = {"clean": np.zeros_like(patched), "corrupted": np.zeros_like(patched)}
    total = len(chunks) * max(1, len(groups))
    bar = progress_bar(total=total, desc="patch", unit="pass", enabled=progress)

    def replicated(x, y, lo, hi):  # prompts lo..hi-1 once per head, head major
        xs = torch.from_numpy(x[lo:hi]).to(device).repeat(H, 1, 1)
        return xs, torch.from_numpy(y[lo:hi]).to(device).repeat(H, 1)

    for lo, hi in chunks:
        B = hi - lo
        wanted = ("z",) if paths else (target,)
        cp = run_pass(model, *replicated(*clean, lo, hi), wanted)
        bp = run_pass(model, *replicated(bad.x, bad.y, lo, hi), wanted)
        clean_logits = cp.logits.view(H, B, N).cpu().numpy()  # copy h's own clean run
        bad_logits = bp.logits.view(H, B, N).cpu().numpy()
        if not paths:
            out = head_logits(model, cp, bp, target, positions).view(L * H, B, N)
            patched[:, lo:hi] = out.cpu().numpy()
            base["clean"][:, lo:hi] = np.tile(clean_logits, (L, 1, 1))  # the same every layer
            base["corrupted"][:, lo:hi] = np.tile(bad_logits, (L, 1, 1))
            bar.update(1)
        for g, group in enumerate(groups):
            n = len(group)
            full = group + [group[-1]] * (H - n)  # H copies, as the passes are replicated
            senders = [p.sender for p in full for _ in range(B)]
            recv = receivers_of(full, L, H, B)
            recv = Receivers(*(t.to(device) for t in (recv.heads, recv.mlp, recv.out)))
            out = path_logits(model, cp, bp, senders, recv, positions).view(H, B, N)
            units = slice(g * H, g * H + n)
            patched[units, lo:hi] = out[:n].cpu().numpy()
            base["clean"][units, lo:hi] = clean_logits[:n]
            base["corrupted"][units, lo:hi] = bad_logits[:n]
            bar.update(1)
    bar.close()
    if paths:
        units = [(*p.sender, *p.receiver) for p in paths]
    else:
        units = [(lay, hd, -1, -1) for lay in range(L) for hd in range(H)]
    return effects_table(units, base["clean"], base["corrupted"], patched)


def effects_table(units, clean, corrupted, patched) -> pa.Table:
    """Rows per (layer, head, receiver_layer, receiver_head, sample, point), in grain order,
    from ``units`` (one (layer, head, receiver_layer, receiver_head) per unit, sorted) and
    logits of shape (n_units, n_samples, n_points)."""
    U, S, N = patched.shape
    gap = clean.astype(np.float64) - corrupted
    moved = gap != 0
    effect = np.where(moved, (patched.astype(np.float64) - corrupted) / np.where(moved, gap, 1), 0)
    unit = np.asarray(units, dtype=np.int16)  # (U, 4)
    n = S * N
    return pa.table(
        {
            "layer": np.repeat(unit[:, 0], n),
            "head": np.repeat(unit[:, 1], n),
            "receiver_layer": np.repeat(unit[:, 2], n),
            "receiver_head": np.repeat(unit[:, 3], n),
            "sample": np.tile(np.repeat(np.arange(S, dtype=np.int32), N), U),
            "point": np.tile(np.arange(N, dtype=np.int16), U * S),
            "clean_logit": clean.reshape(-1),
            "corrupted_logit": corrupted.reshape(-1),
            "patched_logit": patched.reshape(-1),
            "normalised_effect": pa.array(
                effect.reshape(-1).astype(np.float32), mask=~moved.reshape(-1)
            ),
        }
    )


def _inputs_table(bad: Corrupted) -> pa.Table:
    """patch_inputs: the corrupted prompts, rows per (sample, point)."""
    S, N, D = bad.x.shape
    x = bad.x.astype(np.int8).reshape(-1)
    return pa.table(
        {
            "sample": np.repeat(np.arange(S, dtype=np.int32), N),
            "point": np.tile(np.arange(N, dtype=np.int16), S),
            "corrupted_x": pa.ListArray.from_arrays(
                np.arange(0, S * N * D + 1, D, dtype=np.int32), x
            ),
            "corrupted_y": bad.y.astype(np.int8).reshape(-1),
            "differs": bad.changed.reshape(-1),
        }
    )
