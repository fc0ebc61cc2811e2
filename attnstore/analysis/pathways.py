"""Pathways: the strongest attention paths that end at a cluster's query rows.

For a problem at layer l, head h of one sample, a *path* starts at a query row q of a cluster and
follows attention down to an input token::

    q --A[l, h][q, k1]--> k1 --Ā[l-1][k1, k2]--> k2 --> ... --Ā[0][k_l, k_{l+1}]--> k_{l+1}

``A[l, h]`` is the analysed head's attention; below layer l the hops follow ``Ā[j]``, the
attention of layer j averaged over its heads. The weight of a path is the product of its hops'
weights, and a cluster's pathways are its ``top_paths`` heaviest paths over all of its rows
(ties broken by position). Residual connections and MLPs are ignored: these are paths of
attention only, in the spirit of attention rollout without the identity term.

The top paths are exact, not a beam search: a dynamic programme keeps, for every position at
every layer, its ``top_paths`` heaviest suffixes, which is enough because a path's weight is a
product of non-negative factors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The columns cluster_paths returns, one entry per hop of each path.
PATH_COLUMNS = (
    "cluster",
    "path_rank",
    "hop",
    "hop_layer",
    "hop_head",
    "src_pos",
    "dst_pos",
    "hop_weight",
    "path_weight",
)


@dataclass
class Suffixes:
    """For each layer j, the heaviest paths from each position t down to an input token:
    ``weight[j]`` of shape (T, m), ``key[j]`` (the next position) and ``next[j]`` (which of
    the next position's suffixes continues the path), both (T, m)."""

    attn: np.ndarray  # (n_layers, T, T), the head-averaged attention the paths follow
    weight: list[np.ndarray]
    key: list[np.ndarray]
    next: list[np.ndarray]


def _top(cand: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-m values and their flat indices along the last axis (stable: earlier index wins)."""
    idx = np.argsort(-cand, axis=-1, kind="stable")[..., :m]
    return np.take_along_axis(cand, idx, axis=-1), idx


def suffixes(mean_attn: np.ndarray, m: int) -> Suffixes:
    """Suffix tables for one sample; ``mean_attn`` of shape (n_layers, T, T), head-averaged."""
    L, T, _ = mean_attn.shape
    m0 = min(m, T)
    w, k = _top(mean_attn[0], m0)
    out = Suffixes(mean_attn, [w], [k], [np.zeros_like(k)])
    for j in range(1, L):
        prev = out.weight[-1]  # (T, m0)
        cand = (mean_attn[j][:, :, None] * prev[None, :, :]).reshape(T, -1)  # (T, T * m0)
        w, idx = _top(cand, m0)
        out.weight.append(w)
        out.key.append(idx // m0)
        out.next.append(idx % m0)
    return out


def cluster_paths(
    attn: np.ndarray,
    layer: int,
    head: int,
    query_pos: np.ndarray,
    labels: np.ndarray,
    suf: Suffixes,
    m: int,
) -> dict[str, np.ndarray]:
    """Top-m paths per cluster of one problem. ``attn`` of shape (T, T) is the analysed head's
    attention; ``query_pos`` and ``labels`` of shape (n_rows,) give each row's position and
    cluster. Returns hop rows (cluster, path_rank, hop, hop_layer, hop_head, src_pos, dst_pos,
    hop_weight, path_weight) as arrays of equal length."""
    rows = attn[query_pos]  # (n_rows, T)
    T = rows.shape[1]
    if layer == 0:
        cand = rows[:, :, None]  # (n_rows, T, 1): one-hop paths
        width = 1
    else:
        width = suf.weight[layer - 1].shape[1]
        cand = rows[:, :, None] * suf.weight[layer - 1][None, :, :]  # (n_rows, T, width)
    flat = cand.reshape(len(rows), -1)
    cols: dict[str, list] = {k: [] for k in PATH_COLUMNS}
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        sub = flat[members].reshape(-1)  # (|c| * T * width,)
        weight, idx = _top(sub, m)
        for rank, (pw, i) in enumerate(zip(weight, idx, strict=True)):
            if pw <= 0:
                break
            r, rest = divmod(int(i), T * width)
            k, s = divmod(rest, width)
            hops = [(layer, head, int(query_pos[members[r]]), k, float(rows[members[r], k]))]
            pos, which = k, s
            for j in range(layer - 1, -1, -1):
                nxt = int(suf.key[j][pos, which])
                hops.append((j, -1, pos, nxt, float(suf.attn[j][pos, nxt])))
                pos, which = nxt, int(suf.next[j][pos, which])
            for h_i, (hl, hh, src, dst, hw) in enumerate(hops):
                cols["cluster"].append(int(c))
                cols["path_rank"].append(rank + 1)
                cols["hop"].append(h_i)
                cols["hop_layer"].append(hl)
                cols["hop_head"].append(hh)
                cols["src_pos"].append(src)
                cols["dst_pos"].append(dst)
                cols["hop_weight"].append(hw)
                cols["path_weight"].append(float(pw))
    return {k: np.asarray(v) for k, v in cols.items()}
