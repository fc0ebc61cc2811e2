"""Matched heads across trainings: which head of run b does what a head of run a does?

Head indices are arbitrary across trainings: L1 H2 of one training seed need not be L1 H2 of
another, since permuting the heads of a layer (their slices of the query, key and value
weights and the output projection's input columns together) gives the same function. To
compare heads across trainings, the heads of run b are matched to those of run a by
behaviour, from what the store already holds: both runs' attention rows on the same prompts.

- **Cost** of a pair (head_a of run a, head_b of run b, one layer): the mean over every
  (sample, query position) of the total variation distance between the two heads' attention
  rows over the same keys, ``0.5 * sum_k |w_a[k] - w_b[k]|``: 0 when they attend alike, 1
  when they attend to disjoint keys. It compares whole rows as distributions over keys, is
  bounded and symmetric, and needs no analysis (a cluster label or a summary metric would
  match heads by one property only; a distance between mean rows would call two heads alike
  that attend differently in every prompt but alike on average).
- **Assignment**: per layer (heads do not move between layers), the one-to-one pairing of
  least total cost (the Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``).
- **Is it meaningful?** Each matched pair keeps its ``margin``, the least cost of either of
  its heads with any other head of the layer minus its own cost (positive: each head is
  closer to its partner than to anything else), and the layer's ``null_cost``, the mean cost
  of its unmatched pairs. A model matched to itself has cost 0 on every matched pair.

The two runs must have the same shape (layers, heads, points) and the same prompts (the same
``inputs`` for the samples compared: extract both with the same ``--seed`` and
``--samples``). One matching is one transaction: tables ``matchings`` (one row) and
``head_matches`` (every pair of every layer, ``matched`` marking the matching's).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from attnstore.errors import ConfigError, NotFoundError
from attnstore.progress import progress_bar
from attnstore.provenance import content_id, versions
from attnstore.schema import TABLES, full_rows, written_by
from attnstore.store import Store, open_store

METHOD = "hungarian"
COST = "total_variation"
_ROWS = 1 << 15  # attention rows compared at once: bounds the temporary |a - b| array


@dataclass(frozen=True)
class MatchResult:
    match_id: str
    pairs: pa.Table  # head_matches rows of the matching (layer, head_a, head_b, cost, ...)
    existed: bool  # already in the store: nothing written


def match_id_for(run_a: str, run_b: str, n_samples: int) -> str:
    return content_id(
        {
            "kind": "match",
            "run_a": run_a,
            "run_b": run_b,
            "match_method": METHOD,
            "cost": COST,
            "n_samples": n_samples,
        }
    )


def match(
    store: str | Path | Store,
    run_a: str,
    run_b: str,
    samples: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    command: str = "",
) -> MatchResult:
    """Match the heads of ``run_b`` to those of ``run_a``, layer by layer, on their first
    ``samples`` prompts (default: all the prompts both runs have); one transaction. The runs,
    their shapes and their prompts are checked before anything is written."""
    s = open_store(store)
    a, b = s.run(run_a), s.run(run_b)  # an unknown run is named with the store's runs
    shape = ("n_layers", "n_heads", "n_points")
    if any(a[k] != b[k] for k in shape):

        def said(r):
            return f"{r['n_layers']} layers x {r['n_heads']} heads, {r['n_points']} points"

        raise ConfigError(
            f"runs {a['run_id']} ({said(a)}) and {b['run_id']} ({said(b)}) differ in shape; "
            "heads are matched only between models of the same layers, heads and points"
        )
    most = min(a["n_samples"], b["n_samples"])
    n = most if samples is None else samples
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= most:
        raise ConfigError(
            f"--samples {samples}: run {a['run_id']} has {a['n_samples']} prompts and run "
            f"{b['run_id']} {b['n_samples']}; accepted: 1..{most}"
        )
    _check_same_prompts(s, a, b, n)
    key = match_id_for(a["run_id"], b["run_id"], n)
    if not overwrite and s.has("match", key):
        return MatchResult(key, _stored_pairs(s, key), existed=True)
    L, H = a["n_layers"], a["n_heads"]
    costs = np.zeros((L, H, H))
    bar = progress_bar(total=L, desc="match", unit="layer", enabled=progress)
    for layer in range(L):
        costs[layer] = layer_costs(_rows(s, a, layer, n), _rows(s, b, layer, n))
        bar.update(1)
    bar.close()
    pairs = pairs_table(costs)
    with s.transaction("match", key, overwrite=overwrite) as txn:
        txn.expect_rows(matchings=1, head_matches=pairs.num_rows)
        txn.write("head_matches", pairs)
        v = versions()
        row = {
            "match_id": key,
            "created_at": datetime.now(timezone.utc),
            "run_a": a["run_id"],
            "run_b": b["run_id"],
            "match_method": METHOD,
            "cost_name": COST,
            "n_samples": n,
            "n_layers": L,
            "n_heads": H,
            **written_by(v, command),
        }
        txn.write("matchings", TABLES["matchings"].row(row))
    return MatchResult(key, pairs, existed=False)


def _check_same_prompts(s: Store, a: dict[str, Any], b: dict[str, Any], n: int) -> None:
    """ConfigError unless samples 0..n-1 of both runs hold the same points (x and y)."""
    import pyarrow.compute as pc

    def prompts(r):
        where = pc.field("sample") < n
        t = s.read("inputs", ["sample", "point", "x", "y"], where, run_id=r["run_id"])
        return t.sort_by([("sample", "ascending"), ("point", "ascending")])

    ta, tb = prompts(a), prompts(b)
    if ta.equals(tb):
        return
    first = ""
    if ta.num_rows == tb.num_rows and a["n_dims"] == b["n_dims"]:

        def points(t):  # (rows, n_dims + 1): x then y
            x = t.column("x").combine_chunks().flatten().to_numpy().reshape(t.num_rows, -1)
            return np.column_stack([x, t.column("y").to_numpy()])

        differs = (points(ta) != points(tb)).any(axis=1)
        first = f", first in sample {ta.column('sample')[int(np.argmax(differs))]}"
    raise ConfigError(
        f"runs {a['run_id']} (prompt seed {a['seed']}, {a['n_samples']} samples) and "
        f"{b['run_id']} (prompt seed {b['seed']}, {b['n_samples']} samples) hold different "
        f"prompts in samples 0..{n - 1}{first}; heads are matched on the same prompts: "
        "extract both with the same --seed and --samples"
    )


def _rows(s: Store, r: dict[str, Any], layer: int, n: int) -> np.ndarray:
    """A run's attention rows of one layer over samples 0..n-1, over all 2 * n_points keys:
    float32 of shape (n_heads, n * 2 * n_points, 2 * n_points), rows in (sample, query_pos)
    order."""
    import pyarrow.compute as pc

    H, T = r["n_heads"], 2 * r["n_points"]
    t = s.read(
        "attention",
        ["head", "sample", "query_pos", "weights"],
        pc.field("sample") < n,
        run_id=r["run_id"],
        layer=layer,
    ).sort_by([("head", "ascending"), ("sample", "ascending"), ("query_pos", "ascending")])
    if t.num_rows != H * n * T:
        raise NotFoundError(
            f"run {r['run_id']} holds {t.num_rows} attention rows of layer {layer} in samples "
            f"0..{n - 1}, {H * n * T} expected; extract it again (--overwrite)"
        )
    return full_rows(t.column("weights"), T).reshape(H, n * T, T)


def layer_costs(rows_a: np.ndarray, rows_b: np.ndarray) -> np.ndarray:
    """The cost of every pair of heads of one layer: ``cost[i, j]``, the mean over rows of
    the total variation distance between head i's row of ``rows_a`` and head j's of
    ``rows_b`` (both of shape (n_heads, n_rows, n_keys), the same rows in the same order);
    float64 of shape (n_heads_a, n_heads_b)."""
    Ha, R, _ = rows_a.shape
    Hb = rows_b.shape[0]
    total = np.zeros((Ha, Hb))
    for lo in range(0, R, _ROWS):
        hi = min(lo + _ROWS, R)
        for i in range(Ha):
            diff = np.abs(rows_a[i, None, lo:hi] - rows_b[:, lo:hi])  # (Hb, rows, n_keys)
            total[i] += diff.sum(axis=(1, 2), dtype=np.float64)
    return 0.5 * total / R


def assign(cost: np.ndarray) -> dict[str, np.ndarray]:
    """The matching of one layer from its cost of shape (n_heads_a, n_heads_b): ``head_b``
    (n_heads_a,) the head of b paired with each head of a (least total cost), each pair's
    ``margin`` (the least cost of either head with any other head, minus the pair's; NaN
    with one head) and the layer's ``null_cost`` (mean cost of the unmatched pairs; NaN
    with one head)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    head_b = cols[np.argsort(rows)]
    Ha, Hb = cost.shape
    matched = np.zeros_like(cost, dtype=bool)
    matched[np.arange(Ha), head_b] = True
    margin = np.full(Ha, np.nan)
    for i, j in enumerate(head_b):
        others = np.concatenate([np.delete(cost[i], j), np.delete(cost[:, j], i)])
        if len(others):
            margin[i] = others.min() - cost[i, j]
    null = cost[~matched].mean() if (~matched).any() else np.nan
    return {"head_b": head_b, "matched": matched, "margin": margin, "null_cost": null}


def pairs_table(costs: np.ndarray) -> pa.Table:
    """head_matches rows, in grain order (layer, head_a, head_b), from the costs of every
    layer of shape (n_layers, n_heads, n_heads)."""
    L, H, _ = costs.shape
    matched = np.zeros(costs.shape, dtype=bool)
    margin = np.full(costs.shape, np.nan)
    null = np.full(costs.shape, np.nan)
    for layer in range(L):
        m = assign(costs[layer])
        matched[layer] = m["matched"]
        margin[layer][m["matched"]] = m["margin"]  # row-major: head_a order, as head_b is
        null[layer][m["matched"]] = m["null_cost"]
    flat = matched.reshape(-1)
    return pa.table(
        {
            "layer": np.repeat(np.arange(L, dtype=np.int16), H * H),
            "head_a": np.tile(np.repeat(np.arange(H, dtype=np.int16), H), L),
            "head_b": np.tile(np.arange(H, dtype=np.int16), L * H),
            "cost": costs.reshape(-1),
            "matched": flat,
            "margin": pa.array(margin.reshape(-1), mask=~flat | np.isnan(margin.reshape(-1))),
            "null_cost": pa.array(null.reshape(-1), mask=~flat | np.isnan(null.reshape(-1))),
        }
    )


def _stored_pairs(s: Store, key: str) -> pa.Table:
    t = s.read("head_matches", match_id=key).drop_columns(["match_id"])
    return t.sort_by([("layer", "ascending"), ("head_a", "ascending"), ("head_b", "ascending")])
