"""The in-context learner: a GPT-2 backbone reading interleaved ``x1, y1, x2, y2, ...`` tokens.

This is the ``san`` family of Bhattamishra et al. (ICLR 2024, code: satwik77/incontext-bool),
written out so that every layer's attention is one return value away:

- one shared ``Linear(n_dims, d_model)`` read-in for both token kinds; a label token is the
  vector ``[y, 0, ..., 0]``;
- GPT-2 blocks: learned positions, pre-LayerNorm, causal multi-head attention, an MLP of
  ``4 * d_model`` with GPT-2's tanh GELU, a final LayerNorm; no dropout;
- a ``Linear(d_model, 1)`` read-out at the x positions: the prediction for y_i is read from the
  x_i token, which sees ``x1, y1, ..., x_{i-1}, y_{i-1}, x_i``.

Classes appear in the order they are built: config, attention (and the ``HeadEdit`` an
intervention hands it), MLP, block, model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attnstore.errors import ConfigError
from attnstore.limits import check_allocation


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a model. ``n_ctx`` is the number of token positions (two per point)."""

    n_dims: int
    n_ctx: int
    n_layers: int
    n_heads: int
    d_model: int

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"model {name}={value!r} must be a positive integer")
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.n_ctx % 2:
            raise ConfigError(f"n_ctx={self.n_ctx} must be even (an x and a y token per point)")
        # float32 weights and one causal mask per layer, checked before anything is allocated
        check_allocation(
            f"a model of {self.n_parameters:,} parameters and n_ctx={self.n_ctx}",
            4 * self.n_parameters + self.n_layers * self.n_ctx**2,
            "a smaller n_layers, d_model or n_ctx",
        )

    @property
    def n_parameters(self) -> int:
        """The number of weights: read-in, positions, blocks, final norm, read-out."""
        d = self.d_model
        block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d)
        return (self.n_dims + 1) * d + self.n_ctx * d + self.n_layers * block + 2 * d + d + 1

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def max_points(self) -> int:
        """The most in-context examples the learned positions cover."""
        return self.n_ctx // 2

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class HeadEdit:
    """A change to some heads of one layer, chosen per prompt of the batch (interventions,
    patches).

    The chosen heads ``heads[b, h]`` first have their queries, keys and values replaced by
    ``q[b, h]``, ``k[b, h]``, ``v[b, h]`` (where given), then lose the attention entries
    ``remove[b]`` (query_pos, key_pos), each touched row renormalised (a row that would lose
    all its mass is kept as it is), then have their z replaced by ``z[b, h]``. ``positions``
    restricts every change to the token positions ``positions[b]`` (query rows for
    ``remove``); None: all. ``heads=None`` changes nothing but runs the layer's attention
    explicitly, as every edited layer runs it, so that an edit that changes nothing gives
    exactly the same numbers.
    """

    heads: torch.Tensor | None = None  # (B, H) bool: the heads changed in each prompt
    z: torch.Tensor | None = None  # (B, H, T, d_head): their replacement z
    remove: torch.Tensor | None = None  # (B, T, T) bool: the attention entries they lose
    q: torch.Tensor | None = None  # (B, H, T, d_head): their replacement queries
    k: torch.Tensor | None = None  # (B, H, T, d_head): their replacement keys
    v: torch.Tensor | None = None  # (B, H, T, d_head): their replacement values
    positions: torch.Tensor | None = None  # (B, T) bool: where they change; None: everywhere

    def where(self) -> torch.Tensor:
        """Where the edit applies, shape (B, H, 1, 1) or (B, H, T, 1) bool."""
        where = self.heads[:, :, None, None]  # (B, H, 1, 1)
        if self.positions is not None:
            where = where & self.positions[:, None, :, None]  # (B, H, T, 1)
        return where


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.d_head = cfg.d_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        mask = torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool).tril()
        self.register_buffer("mask", mask, persistent=False)

    def forward(
        self, h: torch.Tensor, return_attn: bool = False, edit: HeadEdit | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The layer's output, its attention (with ``return_attn`` or an ``edit``) and its z
        of shape (batch, head, pos, d_head) (with an ``edit``)."""
        B, T, D = h.shape
        q, k, v = self.qkv(h).split(D, dim=2)
        q = q.view(B, T, self.n_heads, self.d_head).transpose(1, 2)  # (B, H, T, d_head)
        k = k.view(B, T, self.n_heads, self.d_head).transpose(1, 2)  # (B, H, T, d_head)
        v = v.view(B, T, self.n_heads, self.d_head).transpose(1, 2)  # (B, H, T, d_head)
        if not return_attn and edit is None:  # the fused kernel: same function, ~25% faster
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, d_head)
            return self.out(z.transpose(1, 2).reshape(B, T, D)), None, None
        chosen = None if edit is None else edit.heads  # (B, H) bool
        where = None if chosen is None else edit.where()  # (B, H, 1 or T, 1)
        if chosen is not None:
            q = q if edit.q is None else torch.where(where, edit.q, q)  # (B, H, T, d_head)
            k = k if edit.k is None else torch.where(where, edit.k, k)
            v = v if edit.v is None else torch.where(where, edit.v, v)
        # In place, the same numbers as out of place: a third fewer passes over (B, H, T, T).
        scores = (q @ k.transpose(-2, -1)).div_(math.sqrt(self.d_head))  # (B, H, T, T)
        scores.masked_fill_(~self.mask[:T, :T], torch.finfo(scores.dtype).min)
        attn = F.softmax(scores, dim=-1)  # (B, H, query_pos, key_pos)
        if chosen is not None and edit.remove is not None:
            removed = (edit.remove & self.mask[:T, :T])[:, None] & where  # (B, H, T, T)
            kept = attn.masked_fill(removed, 0.0)  # (B, H, T, T)
            mass = kept.sum(-1, keepdim=True)  # (B, H, T, 1)
            touched = removed.any(-1, keepdim=True) & (mass > 0)
            attn = torch.where(touched, kept / mass.clamp(min=1e-30), attn)
        z = attn @ v  # (B, H, T, d_head)
        if chosen is not None and edit.z is not None:
            z = torch.where(where, edit.z, z)
        return self.out(z.transpose(1, 2).reshape(B, T, D)), attn, z


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, 4 * cfg.d_model)
        self.proj = nn.Linear(4 * cfg.d_model, cfg.d_model)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(h), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(
        self, h: torch.Tensor, return_attn: bool = False, edit: HeadEdit | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        a, attn, z = self.attn(self.ln_1(h), return_attn, edit)
        h = h + a
        h = h + self.mlp(self.ln_2(h))
        return h, attn, z


@dataclass(frozen=True)
class Forward:
    """What one pass of :class:`InContextModel` returns; the fields a pass did not ask for are
    None."""

    logits: torch.Tensor  # (batch, n_points): the prediction of each y from its x token
    attention: list[torch.Tensor] | None = None  # per layer: (batch, head, query_pos, key_pos)
    z: list[torch.Tensor] | None = None  # per layer: (batch, head, pos, d_head); with edits


class InContextModel(nn.Module):
    """Predicts each y_i from ``x1, y1, ..., x_i``; optionally returns every layer's attention."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.read_in = nn.Linear(cfg.n_dims, cfg.d_model)
        self.wpe = nn.Embedding(cfg.n_ctx, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.read_out = nn.Linear(cfg.d_model, 1)
        self.apply(_init_weights)

    @staticmethod
    def interleave(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Tokens ``x1, [y1, 0...], x2, ...`` of shape (batch, 2 * n_points, n_dims)."""
        B, N, D = x.shape
        y_tok = F.pad(y.unsqueeze(-1), (0, D - 1))  # (B, N, D): [y, 0, ..., 0]
        return torch.stack((x, y_tok), dim=2).reshape(B, 2 * N, D)  # (B, 2N, D)

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        return_attn: bool = False,
        edits: dict[int, HeadEdit] | None = None,
    ) -> Forward:
        """The pass over x of shape (batch, n_points, n_dims) and y of shape (batch, n_points):
        ``logits`` of shape (batch, n_points); with ``return_attn``, ``attention``, one tensor
        per layer of shape (batch, head, query_pos, key_pos).

        ``edits`` (layer -> :class:`HeadEdit`; ``{}`` for none) changes heads, as
        interventions do: then every layer runs its attention explicitly, and ``attention``
        and ``z`` (each head's output before the output projection, one tensor per layer of
        shape (batch, head, pos, d_head)) are filled."""
        B, N, D = x.shape
        if self.cfg.n_dims != D:
            raise ConfigError(f"inputs have n_dims={D}; this model reads n_dims={self.cfg.n_dims}")
        if self.cfg.max_points < N:
            raise ConfigError(
                f"n_points={N} exceeds the model's {self.cfg.max_points} points "
                f"(n_ctx={self.cfg.n_ctx} positions)"
            )
        h = self.embed(x, y)  # (B, T, d_model)
        attns, zs = [], []
        for layer, block in enumerate(self.blocks):
            edit = None if edits is None else edits.get(layer, HeadEdit())
            h, attn, z = block(h, return_attn, edit)
            attns.append(attn)
            zs.append(z)
        logits = self.unembed(h)  # (B, N)
        explicit = edits is not None
        return Forward(logits, attns if return_attn or explicit else None, zs if explicit else None)

    def embed(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The residual stream entering the first block, shape (batch, 2 * n_points, d_model)."""
        tokens = self.interleave(x, y)  # (B, T, n_dims)
        pos = torch.arange(tokens.shape[1], device=x.device)
        return self.read_in(tokens) + self.wpe(pos)  # (B, T, d_model)

    def unembed(self, h: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, n_points) from the last block's residual stream, read at
        the x positions."""
        return self.read_out(self.ln_f(h))[:, ::2, 0]  # (B, N)


def _init_weights(module: nn.Module) -> None:
    """GPT-2's initialisation: normal(0, 0.02) weights, zero biases, unit LayerNorms."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)


def check_device(device: str) -> str:
    """``device`` if torch can use it here; a ConfigError naming it and what is usable else."""
    usable = ["cpu"] + (
        ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
        if torch.cuda.is_available()
        else []
    )
    try:
        kind = torch.device(device).type
    except RuntimeError:
        kind = None
    if kind == "cpu" or (
        kind == "cuda"
        and torch.cuda.is_available()
        and (torch.device(device).index or 0) < torch.cuda.device_count()
    ):
        return device
    raise ConfigError(f"device '{device}' is not usable here; usable: {', '.join(usable)}")
