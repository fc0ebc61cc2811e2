"""What patching a head from the clean prompt restores: :func:`patching_figure`, a layer ×
head map of one activation patch (the registered kind ``patching``), and
:func:`paths_figure`, the sender × receiver matrix of one path patch (kind ``paths``).

Both draw ``restored_share``, the share of the corruption's change of logit that the patch
brings back (0 nothing, 1 the clean logits, negative: further from them), on a diverging
colour map centred at 0, each value written above its 95% interval. Rows come through the
named queries ``heads_by_patching_effect`` and ``path_patching_matrix`` only; which patches
a run has is the store's lookup (:meth:`Store.ids`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from attnstore.errors import ConfigError, NotFoundError, known
from attnstore.plots.heads import MIN_WIDTH, _grid, head_map
from attnstore.plots.style import DPI, style
from attnstore.store import Store

COLUMN = "restored_share"  # both queries' estimate; its interval: COLUMN_lower, COLUMN_upper


def _patch_rows(store: Store, run_id: str, patch_id: str | None, kind: str) -> pd.DataFrame:
    """The rows of the run's patch ``patch_id`` of ``kind`` ('activation':
    heads_by_patching_effect, 'path': path_patching_matrix), the run's latest patch of that
    kind where ``patch_id`` is None. NotFoundError naming the run's patches where there is
    none; ConfigError naming the other kind's plot where ``patch_id`` is of the other kind."""
    from attnstore.queries import run_query

    names = {"activation": "heads_by_patching_effect", "path": "path_patching_matrix"}
    plots = {"activation": "patching", "path": "paths"}
    ids = store.ids("patch", run_id=run_id)  # newest first
    for candidate in ids if patch_id is None else [patch_id]:
        rows = run_query(store, names[kind], {"run_id": run_id, "patch_id": candidate})
        if rows["patch_id"].notna().any():
            return rows
        if patch_id is not None and patch_id in ids:
            other = "path" if kind == "activation" else "activation"
            raise ConfigError(
                f"patch {patch_id} is an {other} patch, not an {kind} one; 'attnstore plot "
                f"{plots[other]} --patch {patch_id}' draws it"
            )
    flag = "--path SENDER->RECEIVER.q " if kind == "path" else ""
    has = f"the run's patches: {known(ids)}" if ids else "the run has none"
    what = f"no patch '{patch_id}'" if patch_id is not None else f"no {kind} patch"
    raise NotFoundError(
        f"{what} of run {run_id}; {has}; 'attnstore patch --store {store.path} --run {run_id} "
        f"--corruption flip_label {flag}' makes one"
    )


def _describe(r: Any) -> str:
    """A patch as a title names it: corruption (and its k), target, positions."""
    k = "" if pd.isna(r.corruption_k) else f" k={int(r.corruption_k)}"
    where = "" if r.positions == "all" else f", positions {r.positions} only"
    return f"{r.corruption}{k}, patching {r.patch_target}{where}"


def patching_figure(store: Store, run_id: str | None = None, patch_id: str | None = None) -> Figure:
    """The layer × head map of one activation patch of the run (default: its latest):
    restored_share of query heads_by_patching_effect, its interval beneath each value."""
    run = store.run(run_id)
    rows = _patch_rows(store, run["run_id"], patch_id, "activation")
    L, H = int(run["n_layers"]), int(run["n_heads"])
    values = _grid(rows, COLUMN, L, H)
    bounds = (_grid(rows, f"{COLUMN}_lower", L, H), _grid(rows, f"{COLUMN}_upper", L, H))
    first = next(rows.dropna(subset=["patch_id"]).itertuples(index=False))
    title = (
        f"{COLUMN}, {_describe(first)}\nrun {run['run_id']}, patch {first.patch_id}\n"
        "95% interval beneath each value (paired bootstrap over prompts)"
    )
    return head_map(values, COLUMN, title, signed=True, bounds=bounds)


def paths_figure(store: Store, run_id: str | None = None, patch_id: str | None = None) -> Figure:
    """The sender × receiver matrix of one path patch of the run (default: its latest):
    restored_share of query path_patching_matrix when the sender's clean output reaches only
    the receiver's input, its interval beneath each value. Senders are the heads of every
    layer but the last (rows), receivers those of every layer but the first (columns); a
    pair not downstream or not patched is blank."""
    run = store.run(run_id)
    rows = _patch_rows(store, run["run_id"], patch_id, "path")
    L, H = int(run["n_layers"]), int(run["n_heads"])
    senders = [(layer, head) for layer in range(L - 1) for head in range(H)]
    receivers = [(layer, head) for layer in range(1, L) for head in range(H)]
    grids = {c: np.full((len(senders), len(receivers)), np.nan) for c in ("", "_lower", "_upper")}
    for r in rows.itertuples(index=False):
        i = senders.index((int(r.layer), int(r.head)))
        j = receivers.index((int(r.receiver_layer), int(r.receiver_head)))
        for suffix, grid in grids.items():
            value = getattr(r, COLUMN + suffix)
            grid[i, j] = np.nan if pd.isna(value) else float(value)
    values = grids[""]
    first = next(rows.dropna(subset=["patch_id"]).itertuples(index=False))
    finite = np.abs(values[np.isfinite(values)])
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    with style():
        fig = Figure(
            figsize=(max(2.0 + 1.2 * len(receivers), MIN_WIDTH), 1.6 + 0.75 * len(senders)),
            dpi=DPI,
            layout="constrained",
        )
        ax = fig.add_subplot()
        im = ax.imshow(
            np.ma.masked_invalid(values), cmap="RdBu", norm=Normalize(-limit, limit), aspect="auto"
        )
        fig.colorbar(im, ax=ax, label=COLUMN)
        for (i, j), v in np.ndenumerate(values):
            if not np.isfinite(v):
                continue
            lo, hi = grids["_lower"][i, j], grids["_upper"][i, j]
            text = f"{v:.2f}" + (f"\n[{lo:.2f}, {hi:.2f}]" if np.isfinite(lo + hi) else "")
            shade = im.cmap(im.norm(v))
            dark = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] < 0.5
            ax.text(j, i, text, ha="center", va="center", fontsize="x-small",
                    color="w" if dark else "k")  # fmt: skip
        ax.set_xticks(range(len(receivers)), [f"L{a}H{b}" for a, b in receivers])
        ax.set_yticks(range(len(senders)), [f"L{a}H{b}" for a, b in senders])
        ax.set_xlabel(f"receiver (its {first.patch_target} input)")
        ax.set_ylabel("sender")
        ax.set_title(
            f"{COLUMN} through one path, {first.corruption}"
            + ("" if pd.isna(first.corruption_k) else f" k={int(first.corruption_k)}")
            + ("" if first.positions == "all" else f", positions {first.positions} only")
            + f"\nrun {run['run_id']}, patch {first.patch_id}\n"
            "95% interval beneath each value (paired bootstrap over prompts)",
            fontsize="medium",
        )
    return fig


def draw_patching(store: Store, run: str | None = None, *, patch: str | None = None) -> Figure:
    """The registered kind ``patching``: :func:`patching_figure`."""
    return patching_figure(store, run, patch)


def draw_paths(store: Store, run: str | None = None, *, patch: str | None = None) -> Figure:
    """The registered kind ``paths``: :func:`paths_figure`."""
    return paths_figure(store, run, patch)
