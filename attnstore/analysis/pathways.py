"""Pathways: the strongest attention paths that end at a cluster's query rows.

For a problem at layer l, head h of one sample, a *path* starts at a query row q of a cluster and
follows attention down to an input token::

    q --A[l, h][q, k1]--> k1 --Ā[l-1][k1, k2]--> k2 --> ... --Ā[0][k_l, k_{l+1}]--> k_{l+1}

``A[l, h]`` is the analysed head's attention; below layer l the hops follow ``Ā[j]``, the
attention of layer j averaged over its heads. The weight of a path is the product of its hops'
weights, and a cluster's pathways are its ``top_paths`` heaviest paths over all of its rows
(ties broken deterministically). Residual connections and MLPs are ignored: these are paths of
attention only, in the spirit of attention rollout without the identity term.

The top paths are exact, not a beam search: a dynamic programme keeps, for every position at
every layer, its ``top_paths`` heaviest suffixes, which is enough because a path's weight is a
product of non-negative factors; and a cluster's top paths are the top of its rows' top paths.
Everything is computed for all problems of a chunk at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The columns of a path hop, besides the problem it belongs to.
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
    """For each layer j and sample, the heaviest paths from each position down to an input
    token: ``weight[j]`` of shape (S, T, m), ``key[j]`` (the next position) and ``next[j]``
    (which of the next position's suffixes continues the path), both (S, T, m)."""

    attn: np.ndarray  # (n_layers, S, T, T), the head-averaged attention the paths follow
    weight: list[np.ndarray]
    key: list[np.ndarray]
    next: list[np.ndarray]


def _top(cand: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The m largest values along the last axis, largest first, and their indices; among equal
    values the lower index first (exact ties at the m-th place: a deterministic choice)."""
    m = min(m, cand.shape[-1])
    part = np.argpartition(-cand, m - 1, axis=-1)[..., :m]
    vals = np.take_along_axis(cand, part, axis=-1)
    order = np.lexsort((part, -vals), axis=-1)
    idx = np.take_along_axis(part, order, axis=-1)
    return np.take_along_axis(cand, idx, axis=-1), idx


def suffixes(mean_attn: np.ndarray, m: int) -> Suffixes:
    """Suffix tables of all samples; ``mean_attn`` of shape (n_layers, S, T, T)."""
    L, S, T, _ = mean_attn.shape
    w, k = _top(mean_attn[0], m)
    out = Suffixes(mean_attn, [w], [k], [np.zeros_like(k)])
    for j in range(1, L):
        prev = out.weight[-1]  # (S, T, m0)
        m0 = prev.shape[-1]
        cand = (mean_attn[j][..., None] * prev[:, None, :, :]).reshape(S, T, -1)  # (S, T, T*m0)
        w, idx = _top(cand, m)
        out.weight.append(w)
        out.key.append(idx // m0)
        out.next.append(idx % m0)
    return out


def cluster_paths(
    attn: np.ndarray,
    suf: Suffixes,
    layer: np.ndarray,
    head: np.ndarray,
    sample: np.ndarray,
    query_pos: np.ndarray,
    labels: np.ndarray,
    m: int,
) -> dict[str, np.ndarray]:
    """Top-m paths of every cluster of every problem.

    ``attn`` of shape (n_layers, n_heads, S, T, T); ``layer``, ``head``, ``sample`` (index into
    S) of shape (P,); ``query_pos`` and ``labels`` of shape (P, n_rows): each row's position and
    cluster. Returns hop rows as equal-length arrays: ``problem`` and PATH_COLUMNS, ordered by
    problem, cluster, path_rank, hop. Paths of weight 0 are dropped."""
    parts = []
    for lay in np.unique(layer):
        sel = np.flatnonzero(layer == lay)
        parts.append(
            _layer_paths(
                attn, suf, int(lay), sel, head[sel], sample[sel], query_pos[sel], labels[sel], m
            )
        )
    out = (
        {k: np.concatenate([p[k] for p in parts]) for k in ("problem", *PATH_COLUMNS)}
        if parts
        else {k: np.array([], dtype=np.int64) for k in ("problem", *PATH_COLUMNS)}
    )
    order = np.lexsort((out["hop"], out["path_rank"], out["cluster"], out["problem"]))
    return {k: v[order] for k, v in out.items()}


def _layer_paths(attn, suf, lay, problems, head, sample, query_pos, labels, m):
    P, R = labels.shape
    rows = np.take_along_axis(attn[lay, head, sample], query_pos[:, :, None], axis=1)  # (P,R,T)
    if lay == 0:
        cand = rows[..., None]  # (P, R, T, 1): one-hop paths
    else:
        cand = rows[..., None] * suf.weight[lay - 1][sample][:, None, :, :]  # (P, R, T, width)
    width = cand.shape[-1]
    row_w, row_i = _top(cand.reshape(P, R, -1), m)  # each row's top paths: (P, R, m_r)
    m_r = row_w.shape[-1]
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("problem", *PATH_COLUMNS)}
    for c in range(int(labels.max()) + 1 if labels.size else 0):
        member = (labels == c)[..., None]  # (P, R, 1)
        pool = np.where(member, row_w, -1.0).reshape(P, -1)  # (P, R * m_r)
        w, i = _top(pool, m)  # (P, m_c)
        p_idx, rank = np.nonzero(w > 0)
        if not len(p_idx):
            continue
        flat = i[p_idx, rank]
        r = flat // m_r
        within = row_i[p_idx, r, flat % m_r]
        k, s = within // width, within % width
        smp = sample[p_idx]
        hops = [(np.full(len(p_idx), lay), head[p_idx], query_pos[p_idx, r], k, rows[p_idx, r, k])]
        pos, which = k, s
        for j in range(lay - 1, -1, -1):
            nxt = suf.key[j][smp, pos, which]
            hops.append(
                (
                    np.full(len(p_idx), j),
                    np.full(len(p_idx), -1),
                    pos,
                    nxt,
                    suf.attn[j][smp, pos, nxt],
                )
            )
            pos, which = nxt, suf.next[j][smp, pos, which]
        n_hops = len(hops)
        stack = [np.stack(col, axis=1).reshape(-1) for col in zip(*hops, strict=True)]
        cols["problem"].append(np.repeat(problems[p_idx], n_hops))
        cols["cluster"].append(np.full(len(p_idx) * n_hops, c))
        cols["path_rank"].append(np.repeat(rank + 1, n_hops))
        cols["hop"].append(np.tile(np.arange(n_hops), len(p_idx)))
        for name, col in zip(
            ("hop_layer", "hop_head", "src_pos", "dst_pos", "hop_weight"), stack, strict=True
        ):
            cols[name].append(col)
        cols["path_weight"].append(np.repeat(w[p_idx, rank], n_hops))
    empty = np.array([], dtype=np.int64)
    return {k: (np.concatenate(v) if v else empty) for k, v in cols.items()}
