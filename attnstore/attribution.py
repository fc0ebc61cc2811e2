"""Direct logit attribution: what each component writes toward the logit, per prompt and point.

The residual stream at the last layer is a sum of what every component wrote into it::

    h = token + position + embed_bias + sum_l (sum_h head_lh + attn_bias_l + mlp_l + mlp_bias_l)

- ``token``: the read-in's weights times the token (``read_in.weight @ token``);
  ``position``: the learned position vector; ``embed_bias``: the read-in's bias;
- ``head`` (layer l, head h): the head's z through its slice of the output projection;
  ``attn_bias``: the output projection's bias (one per layer);
- ``mlp``: the layer's MLP output less its output bias; ``mlp_bias``: that bias.

The logit is ``w · LayerNorm(h) + b`` (``w``, ``b``: the read-out). With the LayerNorm's scale
``sigma = sqrt(var(h) + eps)`` frozen at its value in the clean run, the norm is linear in h:
``LayerNorm(h) = gamma * (h - mean(h)) / sigma + beta``. So each component c contributes
``(w * gamma) · (c - mean(c)) / sigma`` and the norm's own bias contributes ``w · beta``
(``final_norm_bias``); these sum to ``logit - b`` exactly in real arithmetic, and to float
rounding in float32 (the projection is done in float64; the largest gap over every prompt and
point is stored as ``attributions.max_abs_error``, and the tests hold it below 1e-4).

Only x tokens are read (the prediction of y_i is read at x_i), so each (prompt, point) has
``4 + 3 * n_layers + n_layers * n_heads`` components. One attribution is one transaction
(tables ``attributions`` and ``logit_attribution``), its id a hash of the run and device.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from attnstore.errors import ConfigError
from attnstore.interventions import _load
from attnstore.model import HeadEdit, InContextModel, check_device
from attnstore.progress import progress_bar
from attnstore.provenance import content_id, versions
from attnstore.schema import TABLES, written_by
from attnstore.store import Store, open_store


@dataclass(frozen=True)
class AttributionResult:
    attribution_id: str
    max_abs_error: float  # the largest |sum of components - (logit - read-out bias)|
    existed: bool  # already in the store: nothing written


@dataclass(frozen=True)
class Attribution:
    """The components' contributions at the x tokens of a batch, float64.

    ``heads`` of shape (n_layers, n_heads, batch, n_points); ``mlp``, ``attn_bias`` and
    ``mlp_bias`` of shape (n_layers, batch, n_points); ``token``, ``position``, ``embed_bias``
    and ``final_norm_bias`` of shape (batch, n_points); ``logit`` the model's logit less the
    read-out bias, as this pass computed it, of shape (batch, n_points)."""

    heads: torch.Tensor
    mlp: torch.Tensor
    attn_bias: torch.Tensor
    mlp_bias: torch.Tensor
    token: torch.Tensor
    position: torch.Tensor
    embed_bias: torch.Tensor
    final_norm_bias: torch.Tensor
    logit: torch.Tensor

    def total(self) -> torch.Tensor:
        """The sum of every component, shape (batch, n_points)."""
        layered = self.heads.sum((0, 1)) + (self.mlp + self.attn_bias + self.mlp_bias).sum(0)
        return layered + self.token + self.position + self.embed_bias + self.final_norm_bias


@torch.no_grad()
def attribute_batch(model: InContextModel, x: torch.Tensor, y: torch.Tensor) -> Attribution:
    """Direct logit attribution of prompts x of shape (batch, n_points, n_dims) and labels y
    of shape (batch, n_points), the final LayerNorm's scale frozen from this (clean) pass."""
    B, N, _ = x.shape
    h = model.embed(x, y)  # (B, T, d_model)
    zs, mlps = [], []
    for block in model.blocks:  # Block.forward, keeping each part
        a, _, z = block.attn(block.ln_1(h), False, HeadEdit())
        h = h + a
        m = block.mlp(block.ln_2(h))
        h = h + m
        zs.append(z[:, :, ::2])  # (B, H, N, d_head): x tokens only
        mlps.append(m[:, ::2])  # (B, N, d_model)
    ln = model.ln_f
    w = model.read_out.weight[0].double()  # (d_model,)
    u = w * ln.weight.double()
    u = u - u.mean()  # (w * gamma) · (c - mean(c)) = (u - mean(u)) · c
    h_x = h[:, ::2].double()  # (B, N, d_model)
    sigma = torch.sqrt(h_x.var(-1, unbiased=False) + ln.eps)  # (B, N): frozen
    logit = model.read_out(ln(h[:, ::2]))[..., 0].double() - model.read_out.bias.double()

    def read(c: torch.Tensor) -> torch.Tensor:  # (..., d_model) -> (...) / sigma
        return (c.double() @ u) / sigma

    H, dh = model.cfg.n_heads, model.cfg.d_head
    heads, attn_bias, mlp, mlp_bias = [], [], [], []
    for block, z, m in zip(model.blocks, zs, mlps, strict=True):
        w_o = block.attn.out.weight.double().view(-1, H, dh)  # (d_model, H, d_head)
        along = torch.einsum("dhk,d->hk", w_o, u)  # (H, d_head): each head's read-out
        heads.append(torch.einsum("bhnk,hk->hbn", z.double(), along) / sigma)  # (H, B, N)
        attn_bias.append(read(block.attn.out.bias).expand(B, N))
        mlp_bias.append(read(block.mlp.proj.bias).expand(B, N))
        mlp.append(read(m - block.mlp.proj.bias))
    tokens = model.interleave(x, y)[:, ::2]  # (B, N, n_dims)
    positions = model.wpe.weight[: 2 * N : 2]  # (N, d_model)
    return Attribution(
        heads=torch.stack(heads),
        mlp=torch.stack(mlp),
        attn_bias=torch.stack(attn_bias),
        mlp_bias=torch.stack(mlp_bias),
        token=read(tokens @ model.read_in.weight.T),
        position=read(positions.expand(B, N, -1)),
        embed_bias=read(model.read_in.bias).expand(B, N),
        final_norm_bias=(w @ ln.bias.double()).expand(B, N),
        logit=logit,
    )


def attribution_id_for(run_id: str, params: dict[str, Any]) -> str:
    return content_id({"run_id": run_id, "kind": "direct_logit_attribution", **params})


def attribute(
    store: str | Path | Store,
    run_id: str | None = None,
    device: str = "cpu",
    batch_size: int = 256,
    overwrite: bool = False,
    progress: bool = False,
    command: str = "",
) -> AttributionResult:
    """Attribute the logit of every prompt and point of a run (the latest if ``run_id`` is
    None) to its components; one transaction (tables attributions, logit_attribution).
    Everything is checked (device, run, prompts, checkpoint) before anything is written."""
    check_device(device)
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be at least 1")
    s = open_store(store)
    run = s.run(run_id)
    params = {"device": device}
    key = attribution_id_for(run["run_id"], params)
    if not overwrite and key in s.keys("attribution"):
        return AttributionResult(key, float("nan"), existed=True)
    x, y = s.prompts(run)
    model = _load(run, device).model.to(device).eval()
    S, N = y.shape
    chunks = [(lo, min(lo + batch_size, S)) for lo in range(0, S, batch_size)]
    parts: list[Attribution] = []
    for lo, hi in progress_bar(chunks, desc="attribute", unit="batch", enabled=progress):
        xb = torch.from_numpy(x[lo:hi]).to(device)
        yb = torch.from_numpy(y[lo:hi].astype(np.float32)).to(device)
        parts.append(attribute_batch(model, xb, yb))
    error = max(float((p.total() - p.logit).abs().max()) for p in parts)
    table = _table(parts, model.cfg.n_layers, model.cfg.n_heads, S, N)
    n_components = table.num_rows // (S * N)
    with s.transaction("attribution", key, overwrite=overwrite) as txn:
        txn.expect_rows(attributions=1, logit_attribution=table.num_rows)
        txn.write("logit_attribution", table)
        v = versions()
        row = {
            "attribution_id": key,
            "created_at": datetime.now(timezone.utc),
            "run_id": run["run_id"],
            "n_samples": S,
            "n_components": n_components,
            "max_abs_error": error,
            "device": device,
            **written_by(v, command),
        }
        txn.write("attributions", TABLES["attributions"].row(row))
    return AttributionResult(key, error, existed=False)


def _table(parts: list[Attribution], L: int, H: int, S: int, N: int) -> pa.Table:
    """Rows per (component, layer, head, sample, point), in grain order (components by name,
    as :data:`attnstore.vocab.ATTRIBUTION_COMPONENTS`)."""

    def cat(name: str) -> np.ndarray:  # prompts are the next-to-last axis
        return torch.cat([getattr(p, name) for p in parts], dim=-2).float().cpu().numpy()

    blocks = []  # (component, layer, head, values of shape (S, N))
    for name in ("attn_bias", "embed_bias", "final_norm_bias", "head", "mlp", "mlp_bias"):
        values = cat(name + ("s" if name == "head" else ""))
        if name == "head":
            blocks += [(name, lay, hd, values[lay, hd]) for lay in range(L) for hd in range(H)]
        elif values.ndim == 3:
            blocks += [(name, lay, -1, values[lay]) for lay in range(L)]
        else:
            blocks.append((name, -1, -1, values))
    blocks += [(name, -1, -1, cat(name)) for name in ("position", "token")]
    n = S * N
    sample = np.repeat(np.arange(S, dtype=np.int32), N)
    point = np.tile(np.arange(N, dtype=np.int16), S)
    return pa.table(
        {
            "component": pa.array(np.repeat(np.array([b[0] for b in blocks], object), n)),
            "layer": np.repeat([b[1] for b in blocks], n).astype(np.int16),
            "head": np.repeat([b[2] for b in blocks], n).astype(np.int16),
            "sample": np.tile(sample, len(blocks)),
            "point": np.tile(point, len(blocks)),
            "attribution": np.concatenate([b[3].reshape(-1) for b in blocks]),
        }
    )
