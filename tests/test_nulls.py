"""Null baselines: literal_recovery_null (hidden functions shuffled across samples, and the
max-statistic null of the best head) against the same permutations computed in numpy;
structure_null's null from a training's saved step 0 or its fresh initialisation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attnstore.connection import connect
from attnstore.queries import query
from attnstore.stats import mix32
from tests.conftest import TINY

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


# --- structure_null: a saved step 0, or a fresh initialisation (attnstore untrained) ------------

SAMPLES = 4


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    """The tiny shape trained 4 steps, kept at steps 0, 2 and 4 (train --save-every 2)."""
    from attnstore.training import TrainConfig, train

    out = tmp_path_factory.mktemp("nulls") / "training"
    train(TrainConfig(**TINY, steps=4, eval_samples=10, save_every=2), out, progress=False)
    return out


def _untrained(checkpoint, out) -> None:
    from click.testing import CliRunner

    from attnstore.cli import cli

    args = ["untrained", "--checkpoint", str(checkpoint), "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output


def _extract(store, checkpoint) -> str:
    """The run of ``checkpoint`` on the lineage's prompts (seed 3), analysed (raw view)."""
    from attnstore.analysis.run import analyze
    from attnstore.extraction import extract

    run_id = extract(store, checkpoint=str(checkpoint), samples=SAMPLES, seed=3).run_id
    analyze(store, run_id, view="raw", backend="torch")
    return run_id


def _structure_null(store, **params) -> pd.DataFrame:
    return query(store, "structure_null", metric="quality", view="raw", **params)


def _runs_of(store, step: int) -> list[str]:
    rows = (
        connect(store)
        .execute("select run_id from runs where train_step = $s", {"s": step})
        .fetchall()
    )
    return [r[0] for r in rows]


def _step(training, step: int):
    return training / "steps" / f"step-{step:08d}"


def test_a_training_without_step_0_gets_its_fresh_initialisation_as_null(training, tmp_path):
    """With its saved step 0 removed, the untrained model of the final checkpoint, extracted on
    the same prompts, joins the lineage at train_step 0 and is structure_null's null, named
    'fresh initialisation'; it is the saved step 0's very weights, hence its very run."""
    import shutil

    copy = tmp_path / "training"
    shutil.copytree(training, copy)
    shutil.rmtree(_step(copy, 0))
    _untrained(copy, tmp_path / "fresh")
    store = tmp_path / "store"
    fresh = _extract(store, tmp_path / "fresh")
    runs = [_extract(store, _step(copy, s)) for s in (2, 4)] + [fresh]
    lineages = (
        connect(store)
        .execute("select train_step, lineage from run_lineages order by train_step")
        .fetchall()
    )
    assert [s for s, _ in lineages] == [0, 2, 4] and len({lin for _, lin in lineages}) == 1
    df = _structure_null(store)
    assert set(df.train_step) == {0, 2, 4} and df.null_value.notna().all()
    assert (df.null_source == "fresh initialisation").all()
    zero = df[df.train_step == 0].set_index(["layer", "head", "query_kind"]).value
    nulls = df.set_index(["layer", "head", "query_kind"]).null_value
    assert (nulls == zero.reindex(nulls.index)).all()
    # the saved step 0 on the same prompts: the same bytes, so the same run, already stored
    assert _extract(tmp_path / "saved", _step(training, 0)) == fresh and len(set(runs)) == 3


def test_a_saved_step_0_wins_over_a_fresh_initialisation(training, tmp_path):
    """A lineage holding both (a fresh initialisation whose weights differ, as another torch's
    generator might draw them) takes the saved step 0 as its null: every value as without the
    fresh run, null_source 'saved step 0'."""
    from attnstore.checkpoint import load_checkpoint, save_checkpoint
    from attnstore.training import init_model

    store = tmp_path / "store"
    for step in (0, 2, 4):
        _extract(store, _step(training, step))
    alone = _structure_null(store)
    assert (alone.null_source == "saved step 0").all()
    _untrained(training, tmp_path / "fresh")
    made = load_checkpoint(tmp_path / "fresh")
    save_checkpoint(init_model(made.config, 99), made.card, tmp_path / "other")
    other = _extract(store, tmp_path / "other")
    lineage = (
        connect(store).execute("select count(distinct lineage) from run_lineages").fetchone()[0]
    )
    assert lineage == 1  # the other fresh run is in the lineage, at train_step 0
    both = _structure_null(store)
    pd.testing.assert_frame_equal(both, alone)
    # the lineage's step 0 pooled over both runs (as head_emergence reads it) is another value
    key = ["layer", "head", "query_kind"]
    pooled = query(store, "head_emergence", metric="quality", view="raw")
    pooled = pooled[pooled.train_step == 0]
    merged = pooled.merge(alone[alone.train_step == 0], on=key, suffixes=("", "_saved"))
    assert len(merged) == len(pooled) > 0 and other in _runs_of(store, step=0)
    assert not np.allclose(merged.value, merged.value_saved)
