"""Intervals cover what they say, the bootstrap is one definition in numpy and SQL, and bad
input (no prompts, unpaired values) is one line."""

from __future__ import annotations

import numpy as np
import pytest

from attnstore.errors import ConfigError
from attnstore.stats import (
    BOOTSTRAP_REPLICATES,
    BOOTSTRAP_SEED,
    CONFIDENCE,
    mix32,
    normal_interval,
    paired_bootstrap,
    resample_indices,
    standard_error,
)

REPETITIONS = 1000  # synthetic experiments per coverage test
N_PROMPTS = 100


def _synthetic(repetitions: int, n_prompts: int, seed: int):
    """Per-prompt paired outcomes shaped like an ablation's: base right with probability 0.9,
    the change turns 30% of right prompts wrong and 5% of wrong ones right. The true mean
    effect is 0.9 * -0.3 + 0.1 * 0.05 = -0.265. Shape (n_prompts, repetitions)."""
    rng = np.random.default_rng(seed)
    base = rng.random((n_prompts, repetitions)) < 0.9
    flip = rng.random((n_prompts, repetitions))
    changed = np.where(base, flip >= 0.3, flip < 0.05)
    return changed.astype(float), base.astype(float), 0.9 * -0.3 + 0.1 * 0.05


def test_the_95_percent_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
    """1000 synthetic experiments of 100 prompts (one call: the columns share the draws, each
    experiment's prompts are independent): coverage 0.93..0.97 (measured: 0.940; the normal
    interval 0.948)."""
    changed, base, truth = _synthetic(REPETITIONS, N_PROMPTS, seed=11)
    iv = paired_bootstrap(changed, base)
    covered = (iv.lower <= truth) & (truth <= iv.upper)
    assert 0.93 <= covered.mean() <= 0.97, covered.mean()
    assert iv.method == "bootstrap" and iv.lower.shape == (REPETITIONS,)


def test_the_normal_interval_from_the_standard_error_covers_about_95_percent_too():
    changed, base, truth = _synthetic(REPETITIONS, N_PROMPTS, seed=12)
    iv = normal_interval(changed, base)
    covered = (iv.lower <= truth) & (truth <= iv.upper)
    assert 0.93 <= covered.mean() <= 0.97, covered.mean()


def test_a_narrower_confidence_covers_less():
    changed, base, truth = _synthetic(REPETITIONS, N_PROMPTS, seed=13)
    iv = paired_bootstrap(changed, base, confidence=0.5)
    covered = ((iv.lower <= truth) & (truth <= iv.upper)).mean()
    assert 0.44 <= covered <= 0.56, covered


def test_the_bootstrap_is_the_same_bytes_every_time_and_depends_on_its_seed():
    rng = np.random.default_rng(0)
    values = rng.normal(size=50)
    a, b = paired_bootstrap(values), paired_bootstrap(values.copy())
    assert (a.lower, a.upper) == (b.lower, b.upper)
    other = paired_bootstrap(values, seed=BOOTSTRAP_SEED + 1)
    assert (other.lower, other.upper) != (a.lower, a.upper)
    assert a.lower < values.mean() < a.upper and a.estimate == values.mean()


def test_the_draws_are_uniform_over_prompts():
    idx = resample_indices(7, replicates=20000)
    counts = np.bincount(idx.ravel(), minlength=7) / idx.size
    np.testing.assert_allclose(counts, 1 / 7, atol=0.003)
    # the replicates differ from one another: not one permutation repeated
    assert len({tuple(row) for row in idx[:100]}) == 100


def test_the_paired_bootstrap_is_the_bootstrap_of_the_differences():
    rng = np.random.default_rng(1)
    changed, base = rng.random(30), rng.random(30)
    a, b = paired_bootstrap(changed, base), paired_bootstrap(changed - base)
    assert (a.estimate, a.lower, a.upper) == (b.estimate, b.lower, b.upper)


def test_several_estimates_at_once_equal_each_alone():
    rng = np.random.default_rng(2)
    values = rng.normal(size=(25, 3))
    together = paired_bootstrap(values)
    for k in range(3):
        alone = paired_bootstrap(values[:, k])
        assert together.lower[k] == pytest.approx(alone.lower, abs=1e-12)  # summation order
        assert together.upper[k] == pytest.approx(alone.upper, abs=1e-12)


def test_the_standard_error_is_the_sd_over_root_n():
    values = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    assert standard_error(values) == pytest.approx(np.std(values, ddof=1) / np.sqrt(5))
    iv = normal_interval(values)
    assert iv.upper - iv.estimate == pytest.approx(1.959964 * standard_error(values), rel=1e-6)


def test_one_prompt_gives_the_estimate_and_no_interval():
    one = paired_bootstrap([0.25], [0.0])
    assert one.estimate == 0.25 and np.isnan(one.lower) and np.isnan(one.upper)
    assert np.isnan(standard_error([0.25]))
    several = paired_bootstrap(np.array([[0.5, -1.0]]))
    assert list(several.estimate) == [0.5, -1.0] and np.isnan(several.lower).all()


@pytest.mark.parametrize(
    "call, named",
    [
        (lambda: paired_bootstrap([]), "0 prompts"),
        (lambda: paired_bootstrap(np.zeros((0, 4))), "0 prompts"),
        (lambda: normal_interval([]), "0 prompts"),
        (lambda: paired_bootstrap([1.0, 2.0], [1.0]), "differ in shape"),
        (lambda: paired_bootstrap([1.0, np.nan]), "not finite"),
        (lambda: paired_bootstrap([1.0, 2.0], confidence=1.0), "confidence=1.0"),
        (lambda: paired_bootstrap(np.zeros((2, 2, 2))), "(n_prompts,)"),
        (lambda: resample_indices(5, replicates=0), "replicates=0"),
        (lambda: resample_indices(5, seed=-1), "seed=-1"),
    ],
)
def test_bad_input_is_one_line_naming_the_value(call, named):
    with pytest.raises(ConfigError) as e:
        call()
    assert named in str(e.value) and "\n" not in str(e.value)


# --- one definition: the SQL macros are the same bootstrap ------------------------------------


@pytest.fixture(scope="module")
def con():
    import duckdb

    from attnstore.connection import macro_sql

    c = duckdb.connect()
    for name in ("mix32", "bootstrap_draws", "bootstrap_interval", "t_quantile", "t_interval"):
        c.execute(macro_sql(name))
    yield c
    c.close()


def test_mix32_in_sql_is_mix32_in_numpy(con):
    h = np.array([0, 1, 2, 12345, 2**31 - 1, 2**31, 2**32 - 1], dtype=np.uint64)
    got = con.execute(
        "select list(mix32(h) order by i) from unnest($h) with ordinality t(h, i)",
        {"h": [int(v) for v in h]},
    ).fetchone()[0]
    assert got == [int(v) for v in mix32(h)]


def test_t_quantile_is_students_t(con):
    """The macro's t quantiles are scipy's to 6 decimals; beyond 30 degrees of freedom the
    normal quantile, within 4% of t; no interval for df < 1 or a null standard error."""
    from scipy.stats import norm, t

    for df in (1, 2, 3, 10, 30, 31, 200):
        q = con.execute("select t_quantile($df)", {"df": df}).fetchone()[0]
        expected = t.ppf(0.975, df) if df <= 30 else norm.ppf(0.975)
        assert q == pytest.approx(expected, abs=1e-6), df
        assert q == pytest.approx(t.ppf(0.975, df), rel=0.04), df
    lo, hi = con.execute("select unnest(t_interval(1.0, 0.5, 2))").fetchone()
    assert (lo, hi) == pytest.approx((1 - 0.5 * t.ppf(0.975, 2), 1 + 0.5 * t.ppf(0.975, 2)))
    assert con.execute("select unnest(t_interval(1.0, 0.5, 0))").fetchone() == (None, None)
    assert con.execute("select unnest(t_interval(1.0, null, 3))").fetchone() == (None, None)


def test_the_sql_draws_are_the_numpy_draws(con):
    n = 9
    rows = con.execute(
        "select replicate, prompt_index, draws from bootstrap_draws($n)", {"n": n}
    ).fetchall()
    counts = np.zeros((BOOTSTRAP_REPLICATES, n), dtype=int)
    for r, p, k in rows:
        counts[r, p] = k
    idx = resample_indices(n)
    want = np.stack([np.bincount(row, minlength=n) for row in idx])
    np.testing.assert_array_equal(counts, want)


@pytest.mark.parametrize("n", [1, 2, 40])
def test_the_sql_interval_is_the_numpy_interval(con, n):
    values = np.round(np.random.default_rng(n).normal(size=n), 3)
    lower, upper, estimate = con.execute(
        """
        with
        per_prompt as (
            select i - 1 as prompt_index, v, count(*) over () as n_prompts,
            from unnest($v) with ordinality as t(v, i)
        ),
        replicates as (
            select d.replicate, sum(d.draws * p.v) / any_value(p.n_prompts) as replicate_mean,
                any_value(p.n_prompts) as n_prompts,
            from per_prompt as p, lateral bootstrap_draws(p.n_prompts) as d
            where d.prompt_index = p.prompt_index
            group by d.replicate
        ),
        interval as (
            select unnest(bootstrap_interval(replicate_mean, n_prompts)),
            from replicates
        )
        select lower, upper, (select avg(v) from per_prompt),
        from interval
        """,
        {"v": [float(v) for v in values]},
    ).fetchone()
    want = paired_bootstrap(values, confidence=CONFIDENCE)
    assert estimate == pytest.approx(want.estimate)
    if n == 1:
        assert lower is None and upper is None
    else:
        assert lower == pytest.approx(want.lower, abs=1e-12)
        assert upper == pytest.approx(want.upper, abs=1e-12)
