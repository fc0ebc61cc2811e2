"""Emergence over training: the named queries head_emergence, accuracy_over_training and
heads_across_runs against values computed in pandas from the same store, emerged_at on a
hand-made table, and the figure kind ``emergence`` (same bytes twice, from the command line)."""

from __future__ import annotations

import re

import duckdb
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from attnstore.cli import cli
from attnstore.connection import SHARED_MACROS, macro_sql, view_sql
from attnstore.errors import ConfigError, NotFoundError, QueryError
from attnstore.plots import plot_figure
from attnstore.plots.registry import EMERGENCE_METRICS, FIGURES
from attnstore.queries import get_query, query
from attnstore.store import Store
from attnstore.training import elimination_baseline, majority_baseline
from tests.conftest import TINY
from tests.test_sql_views import query_output, same_values, view_output

STEPS = (0, 10, 20, 30)
SAMPLES = 6


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The tiny model kept at steps 0, 10, 20 and 30, each extracted (seed 3) and analysed (raw
    view), and step 30 once more with seed 4: two lineages."""
    from attnstore import checkpoint
    from attnstore.analysis.run import analyze
    from attnstore.extraction import extract
    from attnstore.training import TrainConfig, train

    root = tmp_path_factory.mktemp("emergence")
    out, store = root / "checkpoint", root / "store"
    cfg = TrainConfig(**TINY, steps=30, lr=3e-3, eval_samples=50, save_every=10)
    train(cfg, out, progress=False)
    runs = {}
    steps = checkpoint.training_steps(out)
    assert [s for s, _ in steps] == list(STEPS)
    for seed, chosen in ((3, steps), (4, steps[-1:])):
        for step, path in chosen:
            run_id = extract(store, checkpoint=str(path), samples=SAMPLES, seed=seed).run_id
            analyze(store, run_id, view="raw", backend="torch")
            runs[(seed, step)] = run_id
    return store, runs


Z95 = 1.959963984540054  # the 95% normal quantile


def _quality(store, run_id) -> pd.DataFrame:
    """quality and mean_nmi_y per head from the fits table, in pandas: (layer, head, kind),
    with the standard error of each mean over samples (quality_se, mean_nmi_y_se)."""
    s = Store(store)
    analyses = s.df("analyses")
    analysis = analyses[(analyses.run_id == run_id) & (analyses.view == "raw")]
    assert len(analysis) == 1
    fits = s.df("fits", analysis_id=analysis.analysis_id.iloc[0])
    fits["quality"] = fits.best_silhouette.fillna(0)

    def se(v):
        v = v.dropna()
        return v.std(ddof=1) / np.sqrt(len(v))

    return fits.groupby(["layer", "head", "query_kind"]).agg(
        quality=("quality", "mean"),
        mean_nmi_y=("nmi_y", "mean"),
        quality_se=("quality", se),
        mean_nmi_y_se=("nmi_y", se),
    )


def _emerged_at(steps, values, threshold):
    """The first step from which every value is >= threshold (NaN counting as below)."""
    above = [v >= threshold if v == v else False for v in values]
    for i, step in enumerate(steps):
        if all(above[i:]):
            return step
    return None


# --- head_emergence --------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["quality", "mean_nmi_y"])
def test_head_emergence_reads_each_steps_analysis(sweep, metric):
    store, runs = sweep
    df = query(store, "head_emergence", metric=metric, view="raw", seed=3, threshold=0.0)
    assert df.lineage.nunique() == 1 and (df.metric == metric).all() and (df.n_runs == 1).all()
    assert sorted(df.train_step.unique()) == list(STEPS) and (df.task == "conjunction").all()
    assert len(df) == len(STEPS) * TINY["n_layers"] * TINY["n_heads"] * 2
    assert (df.interval_method == "standard_error").all()
    for step in STEPS:
        expected = _quality(store, runs[(3, step)]).sort_index()
        got = df[df.train_step == step].set_index(["layer", "head", "query_kind"]).sort_index()
        np.testing.assert_allclose(got.value, expected[metric], rtol=1e-12)
        # the interval: value ± 1.96 standard errors of the mean over samples (of float32
        # values: summed in another order, equal to about 1e-8)
        half = Z95 * expected[f"{metric}_se"]
        np.testing.assert_allclose(got.value_lower, expected[metric] - half, atol=1e-7)
        np.testing.assert_allclose(got.value_upper, expected[metric] + half, atol=1e-7)


def test_head_emergence_label_routing_equals_heads_by_label_routing(sweep):
    store, runs = sweep
    for kind in ("x", "y"):
        df = query(store, "head_emergence", metric="lift", query_kind=kind, seed=3)
        assert (df.query_kind == kind).all()
        for step in STEPS:
            routing = query(
                store, "heads_by_label_routing", run_id=runs[(3, step)], query_kind=kind
            )
            expected = routing.set_index(["layer", "head"]).lift.sort_index()
            got = df[df.train_step == step].set_index(["layer", "head"]).value.sort_index()
            np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_emerged_at_is_the_first_step_that_stays_above(sweep):
    """Decided on the interval: above is the lower bound at or above the threshold (for a
    metric with one); for lift (no interval), the value."""
    store, _ = sweep
    for metric, bound in (("quality", "value_lower"), ("lift", "value")):
        values = query(store, "head_emergence", metric=metric, view="raw", seed=3)[bound]
        for threshold in np.quantile(values, [0.0, 0.3, 0.5, 0.7, 1.0]):
            df = query(store, "head_emergence", metric=metric, view="raw", seed=3,
                       threshold=float(threshold))  # fmt: skip
            assert (df.above == (df[bound] >= threshold)).all()
            assert df.interval_method.isna().all() == (bound == "value")
            _check_emerged_at(df, bound, threshold)


def _check_emerged_at(df, bound, threshold):
    for _, head in df.groupby(["layer", "head", "query_kind"]):
        head = head.sort_values("train_step")
        expected = _emerged_at(list(head.train_step), list(head[bound]), threshold)
        assert head.emerged_at.nunique(dropna=False) == 1
        got = head.emerged_at.iloc[0]
        assert (pd.isna(got) and expected is None) or got == expected


def _crafted_connection(
    series: dict[tuple[int, int], list[float | None]], steps, spread: dict | None = None
):
    """An in-memory DuckDB with the tables head_emergence reads, one run per step of one
    lineage, quality per head as ``series`` says (None: null): two samples each, value - d
    and value + d with d = spread[head] (0 if not given), so the standard error is d."""
    spread = spread or {}
    con = duckdb.connect()
    con.execute(
        "create table runs (run_id varchar, train_step bigint, task varchar, seed bigint, "
        "n_samples int, n_points int, task_params_json varchar, card_json varchar, "
        "train_seed bigint)"
    )
    con.execute(
        "create table problem_fits (analysis_id varchar, run_id varchar, view varchar, "
        "layer smallint, head smallint, sample int, query_kind varchar, quality double, "
        "best_silhouette double, runner_up_silhouette double, clustered boolean, "
        "svm_accuracy double, nmi_y double, eta2_point double)"
    )
    con.execute(
        "create table latest_analyses (analysis_id varchar, run_id varchar, view varchar, "
        "latest_of_view boolean)"
    )
    metrics = [m for m in EMERGENCE_METRICS if m not in _routing_metrics()]
    con.execute(
        "create table head_summary (analysis_id varchar, layer smallint, head smallint, "
        "query_kind varchar, " + ", ".join(f"{m} double" for m in metrics) + ")"
    )
    con.execute("create table inputs (run_id varchar, sample int, point smallint, y tinyint)")
    con.execute(
        "create table attention (run_id varchar, layer smallint, head smallint, sample int, "
        "point smallint, query_kind varchar, mass_y float, mass_y_pos float)"
    )
    # the shared macros and views head_emergence reads, over these tables
    for name in SHARED_MACROS:
        con.execute(macro_sql(name))
    for name in ("run_lineages", "label_routing_rows", "head_label_routing", "head_metric_values",
                 "head_metric_errors", "head_metric_estimates"):  # fmt: skip
        con.execute(f"create view {name} as {view_sql(name)}")
    for i, step in enumerate(steps):
        con.execute(
            "insert into runs values (?, ?, 'conjunction', 0, 10, 8, '{}', '{\"train\": {}}', 5)",
            [f"r{i}", step],
        )
        con.execute("insert into latest_analyses values (?, ?, 'raw', true)", [f"a{i}", f"r{i}"])
        # a later, older-view analysis that must not be read
        con.execute("insert into latest_analyses values (?, ?, 'raw', false)", [f"o{i}", f"r{i}"])
        for (layer, head), values in series.items():
            for analysis, value in ((f"a{i}", values[i]), (f"o{i}", 99.0)):
                con.execute(
                    "insert into head_summary (analysis_id, layer, head, query_kind, quality) "
                    "values (?, ?, ?, 'x', ?)",
                    [analysis, layer, head, value],
                )
            d = spread.get((layer, head), 0.0)
            for sample, q in enumerate([] if values[i] is None else [values[i] - d, values[i] + d]):
                con.execute(
                    "insert into problem_fits (analysis_id, run_id, view, layer, head, sample, "
                    "query_kind, quality, best_silhouette) "
                    "values (?, ?, 'raw', ?, ?, ?, 'x', ?, ?)",
                    [f"a{i}", f"r{i}", layer, head, sample, q, q],
                )
    return con


def _routing_metrics():
    return ("mean_mass_y", "positive_mass_share", "chance_share", "lift", "excess_mass")


def test_emerged_at_on_a_hand_made_table():
    steps = [100, 200, 300, 400, 500, 600]
    series = {
        (0, 0): [0.1, 0.6, 0.4, 0.7, 0.8, 0.9],  # crosses twice: stays from 400
        (0, 1): [0.6, 0.7, 0.5, 0.9, 1.0, 0.8],  # always at or above (0.5 counts): 100
        (1, 0): [0.1, 0.9, 0.9, 0.9, 0.9, 0.2],  # falls at the end: never
        (1, 1): [0.9, 0.9, None, 0.9, 0.9, 0.9],  # a null step counts as below: 400
        (2, 0): [0.55] * 6,  # every value above, but not the interval (se 0.05): never
        (2, 1): [0.3, 0.7, 0.7, 0.7, 0.7, 0.7],  # the interval from 200 on: 0.602 .. 0.798
    }
    con = _crafted_connection(series, steps, spread={(2, 0): 0.05, (2, 1): 0.05})
    q = get_query("head_emergence")
    values = q.bind({"metric": "quality", "view": "raw", "threshold": 0.5})
    df = con.execute(q.sql, {n: values[n] for n in q.used_params}).df()
    emerged = df.groupby(["layer", "head"]).emerged_at.first()
    assert emerged[(0, 0)] == 400 and emerged[(0, 1)] == 100 and emerged[(1, 1)] == 400
    assert pd.isna(emerged[(1, 0)]) and pd.isna(emerged[(2, 0)]) and emerged[(2, 1)] == 200
    wide = df[(df.layer == 2) & (df["head"] == 0)]
    np.testing.assert_allclose(wide.value_lower, 0.55 - Z95 * 0.05)
    assert (wide.value >= 0.5).all() and not wide.above.any()
    assert (df.train_seed == 5).all() and (df.interval_method.dropna() == "standard_error").all()
    got = df[(df.layer == 0) & (df["head"] == 0)].sort_values("train_step")
    assert list(got.value) == series[(0, 0)] and list(got.train_step) == steps
    assert list(got.above) == [False, True, False, True, True, True]


def test_unknown_metric_is_refused_naming_the_known_ones(sweep):
    store, _ = sweep
    for name in ("head_emergence", "heads_across_runs"):
        with pytest.raises(QueryError, match="unknown metric 'silhouette'; known: chance_f1"):
            query(store, name, metric="silhouette")
    with pytest.raises(ConfigError, match="out of range"):
        query(store, "head_emergence", query_kind="z")


def test_the_figure_offers_every_metric_the_queries_know():
    for name in ("head_emergence", "heads_across_runs"):
        assert "head_metric_source($metric)" in get_query(name).sql, name
        header = get_query(name).header
        for metric in EMERGENCE_METRICS if name == "head_emergence" else ():
            assert re.search(rf"\b{metric}\b", header), metric
    con = duckdb.connect()
    for macro in SHARED_MACROS:
        con.execute(macro_sql(macro))
    known = con.execute("select [k.metric for k in known_head_metrics()]").fetchone()[0]
    assert sorted(known) == sorted(EMERGENCE_METRICS)
    assert FIGURES["emergence"].params[0].choices == EMERGENCE_METRICS


# --- accuracy_over_training ------------------------------------------------------------------


def test_accuracy_over_training_equals_the_baselines_of_train(sweep):
    store, runs = sweep
    df = query(store, "accuracy_over_training", seed=3)
    n_points = TINY["n_points"]
    assert df.lineage.nunique() == 1 and list(df.train_step) == [s for s in STEPS for _ in
                                                                  range(n_points)]  # fmt: skip
    s = Store(store)
    for step in STEPS:
        run_id = runs[(3, step)]
        got = df[df.train_step == step].sort_values("point")
        assert list(got.point) == list(range(n_points)) and (got.n_samples == SAMPLES).all()
        inputs = s.df("inputs", run_id=run_id).sort_values(["sample", "point"])
        x = np.stack(inputs.x.to_numpy()).reshape(SAMPLES, n_points, -1).astype(np.float32)
        y = inputs.y.to_numpy().reshape(SAMPLES, n_points).astype(np.float32)
        np.testing.assert_allclose(got.majority_accuracy, (majority_baseline(y) == y).mean(0))
        np.testing.assert_allclose(
            got.elimination_accuracy, (elimination_baseline(x, y) == y).mean(0)
        )
        predictions = s.df("predictions", run_id=run_id)
        np.testing.assert_allclose(
            got.model_accuracy, predictions.groupby("point").correct.mean().to_numpy()
        )
        best = np.maximum(got.majority_accuracy, got.elimination_accuracy)
        np.testing.assert_allclose(got.model_vs_best, got.model_accuracy - best)


def test_accuracy_over_training_is_point_accuracy_at_each_step(sweep):
    """accuracy_over_training at a step of one run, run_overview of that run and the shared
    view point_accuracy: a column name they share holds one value for one point."""
    store, runs = sweep
    lineages = view_output(store, "run_lineages")[0][["run_id", "lineage", "train_step"]]
    by_point, grain = view_output(store, "point_accuracy")
    overview, overview_grain = query_output(
        store, "run_overview", [{"run_id": r} for r in runs.values()]
    )
    over_training, training_grain = query_output(store, "accuracy_over_training", [{}])
    over_training = over_training.merge(lineages, on=["lineage", "train_step"])
    assert set(over_training.run_id) == set(runs.values())
    outputs = {
        "view point_accuracy": (by_point.merge(lineages, on="run_id"), grain),
        "run_overview": (overview.merge(lineages, on="run_id"), overview_grain),
        "accuracy_over_training": (over_training[over_training.n_runs == 1], training_grain),
    }
    compared = same_values(outputs)
    for column in ("positive_label_share", "majority_accuracy", "model_vs_best", "n_samples"):
        assert ("accuracy_over_training", "view point_accuracy", column) in compared, column
        assert ("accuracy_over_training", "run_overview", column) in compared, column


# --- heads_across_runs -----------------------------------------------------------------------


def test_heads_across_runs_compares_two_seeds_head_by_head(sweep):
    store, runs = sweep
    df = query(store, "heads_across_runs", view="raw", seed_a=3, seed_b=4)
    assert len(df) == TINY["n_layers"] * TINY["n_heads"] * 2 and list(df["rank"]) == list(
        range(1, len(df) + 1)
    )
    assert (df.step_a == 30).all() and (df.step_b == 30).all()  # each side's last step
    assert (df.n_runs_a == 1).all() and (df.n_runs_b == 1).all()
    assert [list(v) for v in df.seeds_a] == [[3]] * len(df) and {*map(tuple, df.seeds_b)} == {(4,)}
    assert {*map(tuple, df.tasks_a)} == {*map(tuple, df.tasks_b)} == {("conjunction",)}
    a, b = _quality(store, runs[(3, 30)]).quality, _quality(store, runs[(4, 30)]).quality
    got = df.set_index(["layer", "head", "query_kind"]).sort_index()
    np.testing.assert_allclose(got.value_a, a.sort_index(), rtol=1e-12)
    np.testing.assert_allclose(got.value_b, b.sort_index(), rtol=1e-12)
    np.testing.assert_allclose(got.difference, (b - a).sort_index(), rtol=1e-9, atol=1e-15)
    assert (df.difference.abs().diff().dropna() <= 0).all()  # ranked by |difference|
    # intervals: each side's and the difference's, from the standard errors over samples
    qa, qb = (
        _quality(store, runs[(3, 30)]).sort_index(),
        _quality(store, runs[(4, 30)]).sort_index(),
    )
    half = Z95 * np.sqrt(qa.quality_se**2 + qb.quality_se**2)
    np.testing.assert_allclose(got.difference_lower, (qb.quality - qa.quality) - half, atol=1e-7)
    np.testing.assert_allclose(got.value_a_upper, qa.quality + Z95 * qa.quality_se, atol=1e-7)
    assert (df.interval_method == "standard_error").all()
    excludes = (df.difference_lower > 0) | (df.difference_upper < 0)
    assert (df.interval_excludes_zero == excludes).all()
    # the training seed: named on each side, and a side may be chosen by it
    assert {*map(tuple, df.train_seeds_a)} == {*map(tuple, df.train_seeds_b)} == {(0,)}
    other = query(store, "heads_across_runs", view="raw", seed_a=3, seed_b=4, train_seed_a=9)
    assert other.value_a.isna().all() and other.value_b.notna().all()

    early = query(store, "heads_across_runs", view="raw", seed_a=3, seed_b=3, train_step=10)
    assert (early.step_a == 10).all() and (early.difference == 0).all()
    both = query(store, "heads_across_runs", view="raw", train_step=30)  # both seeds a side
    assert (both.n_runs_a == 2).all() and {*map(tuple, both.seeds_a)} == {(3, 4)}
    mean = (a + b) / 2
    np.testing.assert_allclose(
        both.set_index(["layer", "head", "query_kind"]).sort_index().value_a,
        mean.sort_index(),
        rtol=1e-12,
    )


def test_compare_runs_names_each_side_by_step_seed_and_task(sweep):
    store, runs = sweep
    s = Store(store)
    df = query(store, "compare_runs", run_a=runs[(3, 10)], run_b=runs[(4, 30)])
    assert len(df) == TINY["n_layers"] * TINY["n_heads"] * 2
    assert (df.step_a == 10).all() and (df.step_b == 30).all()
    assert (df.seed_a == 3).all() and (df.seed_b == 4).all()
    assert (df.task_a == "conjunction").all() and (df.task_b == "conjunction").all()
    assert set(df.analysis_a) == {s.analysis(run_id=runs[(3, 10)])["analysis_id"]}
    assert (df.train_seed_a == 0).all() and (df.train_seed_b == 0).all()


@pytest.mark.parametrize("min_delta", [0.0, 0.001, 0.01, 0.1])
def test_compare_runs_calls_a_change_on_the_interval(sweep, min_delta):
    """changed: the whole interval of delta_quality (standard errors of the two means over
    samples) beyond min_delta, not the estimate alone."""
    store, runs = sweep
    df = query(store, "compare_runs", run_a=runs[(3, 0)], run_b=runs[(3, 30)], min_delta=min_delta)
    got = df.set_index(["layer", "head", "query_kind"]).sort_index()
    qa, qb = _quality(store, runs[(3, 0)]).sort_index(), _quality(store, runs[(3, 30)]).sort_index()
    half = Z95 * np.sqrt(qa.quality_se**2 + qb.quality_se**2)
    np.testing.assert_allclose(got.delta_quality_lower, qb.quality - qa.quality - half, atol=1e-7)
    np.testing.assert_allclose(got.delta_quality_upper, qb.quality - qa.quality + half, atol=1e-7)
    beyond = (df.delta_quality_lower >= min_delta) | (df.delta_quality_upper <= -min_delta)
    assert (df.changed == beyond).all()


# --- the figure ------------------------------------------------------------------------------


def test_emergence_figure_same_bytes_and_from_the_command_line(sweep, tmp_path):
    store, _ = sweep
    params = dict(metric="lift", query_kind="x", view="raw", threshold=1.0, seed=3)
    for suffix in (".png", ".svg"):
        one = plot_figure("emergence", store, tmp_path / f"one{suffix}", **params)
        two = plot_figure("emergence", store, tmp_path / f"two{suffix}", **params)
        assert one.read_bytes() == two.read_bytes() and one.stat().st_size > 1000
    out = tmp_path / "cli" / "quality.png"
    args = ["plot", "emergence", "--store", store, "--metric", "quality", "--kind", "y"]
    args += ["--view", "raw", "--threshold", "0.4", "--seed", "3", "--out", out]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out) and out.stat().st_size > 1000
    again = plot_figure(
        "emergence", store, tmp_path / "again.png", metric="quality", query_kind="y",
        view="raw", threshold=0.4, seed=3,
    )  # fmt: skip
    assert again.read_bytes() == out.read_bytes()


def test_emergence_figure_asks_for_one_lineage(sweep, tmp_path):
    store, _ = sweep
    with pytest.raises(ConfigError, match="several lineages .* --lineage"):
        plot_figure("emergence", store, tmp_path / "a.png", metric="quality", view="raw")
    lineage = query(store, "head_emergence", view="raw", seed=4).lineage.iloc[0]
    path = plot_figure(
        "emergence", store, tmp_path / "b.png", metric="quality", view="raw", lineage=lineage
    )
    assert path.stat().st_size > 1000
    lineages = sorted(query(store, "head_emergence", view="raw").lineage.unique())
    with pytest.raises(
        NotFoundError,
        match=f"no lineage 'nope' has 'quality' .*; the store's: {', '.join(lineages)}$",
    ):
        plot_figure(
            "emergence", store, tmp_path / "c.png", metric="quality", view="raw", lineage="nope"
        )
    assert not (tmp_path / "c.png").exists()


# --- structure_null ---------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["quality", "mean_nmi_y", "lift"])
def test_structure_null_is_step_zero_of_the_same_training(sweep, metric):
    """null_value is the metric at train_step 0 of the lineage, excess the difference, its
    interval from the two standard errors; a lineage with no step 0 (seed 4: step 30 only)
    has no null; a metric with no interval (lift) has none."""
    store, _ = sweep
    curve = query(store, "head_emergence", metric=metric, view="raw")
    df = query(store, "structure_null", metric=metric, view="raw")
    key = ["lineage", "layer", "head", "query_kind", "train_step"]
    merged = df.merge(curve, on=key, suffixes=("", "_curve"))
    assert len(merged) == len(df) == len(curve)
    np.testing.assert_allclose(merged.value, merged.value_curve, rtol=1e-12)
    with_null = df[df.null_value.notna()]
    assert set(with_null.train_step) == set(STEPS) and set(df.lineage) - set(with_null.lineage) == {
        query(store, "head_emergence", metric=metric, view="raw", seed=4).lineage.iloc[0]
    }
    zero = with_null[with_null.train_step == 0].set_index(
        ["lineage", "layer", "head", "query_kind"]
    )
    for _, row in with_null.iterrows():
        assert (
            row.null_value == zero.loc[(row.lineage, row.layer, row["head"], row.query_kind)].value
        )
    np.testing.assert_allclose(with_null.excess, with_null.value - with_null.null_value)
    if metric == "lift":
        assert df.interval_method.isna().all() and df.excess_lower.isna().all()
        return
    assert (df.interval_method == "standard_error").all()
    se = (with_null.value_upper - with_null.value) / Z95
    se_null = (with_null.null_upper - with_null.null_value) / Z95
    half = Z95 * np.sqrt(se**2 + se_null**2)
    np.testing.assert_allclose(with_null.excess_upper, with_null.excess + half, atol=1e-9)
    at_zero = with_null[with_null.train_step == 0]
    assert (at_zero.excess == 0).all() and not at_zero.excess_excludes_zero.any()
