"""Null baselines: literal_recovery_null (hidden functions shuffled across samples, and the
max-statistic null of the best head) against the same permutations computed in numpy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attnstore.connection import connect
from attnstore.queries import query
from attnstore.stats import mix32

PERMUTATIONS = 50


def _codes(literals, signs) -> set[int]:
    """Literals as literal_hits codes them: 2 j for x_j, 2 j + 1 for not x_j."""
    return {int(2 * j + (s < 0)) for j, s in zip(literals, signs, strict=True)}


def _numpy_null(store, analysis_id, run_id, seed):
    """Each head's precision_lift under permutation 0 (the identity) .. PERMUTATIONS, the
    permutations drawn as the query's header says, with mix32 in numpy."""
    con = connect(store)
    n_literals = (
        2 * con.execute("select n_dims from runs where run_id = $r", {"r": run_id}).fetchone()[0]
    )
    dom = con.execute(
        "select layer, head, query_kind, sample, list(literal) as l, list(sign) as s "
        "from dominant_literals where analysis_id = $a and is_dominant "
        "and in_target is not null group by all",
        {"a": analysis_id},
    ).df()
    fun = con.execute(
        "select sample, list(literal) as l, list(sign) as s from functions "
        "where run_id = $r and weight != 0 group by sample",
        {"r": run_id},
    ).df()
    targets = {r.sample: _codes(r.l, r.s) for r in fun.itertuples()}
    rows = con.execute(
        "select distinct sample from problem_fits where analysis_id = $a", {"a": analysis_id}
    ).fetchall()
    samples = sorted(r[0] for r in rows)
    perms = [dict(zip(samples, samples, strict=True))]
    base = int(mix32(np.uint64(seed)))
    for p in range(1, PERMUTATIONS + 1):
        keys = mix32(np.uint64(int(mix32(np.uint64(base ^ p)))) ^ np.array(samples, np.uint64))
        order = [s for _, s in sorted(zip(keys.tolist(), samples, strict=True))]
        perms.append(dict(zip(samples, order, strict=True)))  # sample at place i -> order[i]
    lifts = {}
    for (layer, head, kind), g in dom.groupby(["layer", "head", "query_kind"]):
        row = []
        for perm in perms:
            hits = pairs = 0  # integers: a tie with the observed lift stays a tie
            for r in g.itertuples():
                lits = _codes(r.l, r.s)
                target = targets.get(perm[r.sample], set())
                hits += len(lits & target)
                pairs += len(lits) * len(target)
            row.append(hits / (pairs / n_literals) if pairs else np.nan)
        lifts[(layer, head, kind)] = row
    return pd.DataFrame(lifts).T  # (head, permutation)


@pytest.mark.parametrize("view", ["raw", "shared_keys"])
def test_literal_recovery_null_is_the_permutations_computed_in_numpy(tiny_analysed_store, view):
    store, run_id, analyses = tiny_analysed_store
    analysis_id = analyses[view]
    df = query(store, "literal_recovery_null", analysis_id=analysis_id,
               permutations=PERMUTATIONS, seed=7)  # fmt: skip
    assert len(df) > 0 and (df.n_permutations == PERMUTATIONS).all()
    got = df.set_index(["layer", "head", "query_kind"]).sort_index()
    lifts = _numpy_null(store, analysis_id, run_id, seed=7).sort_index()
    observed, null = lifts[0], lifts.loc[:, 1:]
    np.testing.assert_allclose(got.precision_lift, observed, rtol=1e-12)
    np.testing.assert_allclose(got.null_lift_mean, null.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(got.null_lift_upper, null.quantile(0.975, axis=1), rtol=1e-12)
    p = (1 + (null.to_numpy() >= observed.to_numpy()[:, None]).sum(1)) / (1 + PERMUTATIONS)
    np.testing.assert_allclose(got.lift_p_value, p, rtol=1e-12)
    best = null.max(axis=0).to_numpy()  # the best head of each permutation
    max_p = (1 + (best[None, :] >= observed.to_numpy()[:, None]).sum(1)) / (1 + PERMUTATIONS)
    np.testing.assert_allclose(got.max_p_value, max_p, rtol=1e-12)
    assert np.allclose(got.max_null_upper, np.quantile(best, 0.95))
    # the max-statistic null is the stricter: no head passes it that fails its own
    assert (got.max_p_value >= got.lift_p_value).all()
    np.testing.assert_allclose(got.lift_excess, got.precision_lift - got.null_lift_mean)


def test_the_observed_lift_is_head_summarys(tiny_analysed_store):
    store, run_id, analyses = tiny_analysed_store
    df = query(store, "literal_recovery_null", analysis_id=analyses["raw"], permutations=5)
    summary = query(store, "head_summary", analysis_id=analyses["raw"])
    merged = df.merge(summary, on=["layer", "head", "query_kind"], suffixes=("", "_summary"))
    assert len(merged) == len(df)
    np.testing.assert_allclose(merged.precision_lift, merged.precision_lift_summary, rtol=1e-12)


def test_the_same_seed_gives_the_same_null_and_another_seed_another(tiny_analysed_store):
    """Permutations are drawn by hashing, not by a generator: the same store and seed give the
    same answer, another seed other permutations."""
    store, _, analyses = tiny_analysed_store
    a = query(store, "literal_recovery_null", analysis_id=analyses["raw"], permutations=20)
    b = query(store, "literal_recovery_null", analysis_id=analyses["raw"], permutations=20)
    c = query(store, "literal_recovery_null", analysis_id=analyses["raw"], permutations=20,
              seed=1)  # fmt: skip
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a.null_lift_mean, c.null_lift_mean)
