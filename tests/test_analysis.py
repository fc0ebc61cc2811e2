"""The analysis of a stored run (attnstore.analysis.run and .tables): dominant literals,
pathways, row views, and the stored tables, which equal direct scikit-learn calls on the same
rows. The backends themselves: test_backends*.py; NMI and eta2: test_metrics.py."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.svm import LinearSVC

from attnstore.analysis.literals import dominant_literals
from attnstore.analysis.pathways import cluster_paths, suffixes
from attnstore.analysis.run import AnalysisConfig, analysis_id_for, analyze, analyze_run
from attnstore.analysis.views import make_view
from attnstore.connection import connect
from attnstore.errors import ConfigError, NotFoundError
from attnstore.schema import full_rows
from attnstore.store import Store
from tests.conftest import TINY, TINY_SAMPLES


def test_k2_sign_convention():
    """For k = 2 scikit-learn returns one row, "1 vs 0": cluster 1 takes it, cluster 0 its
    negation; a literal that defines cluster 1 ranks first there and last in cluster 0."""
    rng = np.random.default_rng(2)
    x = rng.choice([-1.0, 1.0], size=(40, 6))
    labels = (x[:, 2] > 0).astype(int)  # cluster 1 <=> x_2
    svm = LinearSVC(multi_class="ovr", random_state=0).fit(x, labels)
    d = dominant_literals(labels[None], x[None], svm.coef_[None], np.array([1]), dominance=0.5)
    top = {
        c: (
            d["literal"][(d["cluster"] == c) & (d["rank"] == 1)][0],
            d["sign"][(d["cluster"] == c) & (d["rank"] == 1)][0],
        )
        for c in (0, 1)
    }
    assert top[1] == (2, 1) and top[0] == (2, -1)
    c1 = (d["cluster"] == 1) & (d["literal"] == 2) & (d["sign"] == 1)
    assert d["svm_score"][c1][0] == pytest.approx(svm.coef_[0, 2])
    assert d["data_score"][c1][0] == pytest.approx(1.0)  # all members have x_2 = +1, no others
    dominant = set(
        zip(
            d["cluster"][d["is_dominant"]],
            d["literal"][d["is_dominant"]],
            d["sign"][d["is_dominant"]],
            strict=True,
        )
    )
    assert dominant == {(1, 2, 1), (0, 2, -1)}


def test_multiclass_literals_follow_their_rows():
    rng = np.random.default_rng(3)
    x = rng.choice([-1.0, 1.0], size=(60, 6))
    labels = np.where(x[:, 0] > 0, 0, np.where(x[:, 1] > 0, 1, 2))
    svm = LinearSVC(multi_class="ovr", random_state=0).fit(x, labels)
    d = dominant_literals(labels[None], x[None], svm.coef_[None], np.array([3]), dominance=0.5)
    for c in range(3):
        sel = d["cluster"] == c
        np.testing.assert_allclose(d["svm_score"][sel][:6], svm.coef_[c])
        np.testing.assert_allclose(d["svm_score"][sel][6:], -svm.coef_[c])
    top0 = (d["cluster"] == 0) & (d["rank"] == 1)
    assert (d["literal"][top0][0], d["sign"][top0][0]) == (0, 1)


def test_literal_ranks_do_not_depend_on_rounding():
    """Two literals tied in exact arithmetic but a rounding error apart, in either order (as
    two CPUs' kernels may leave them), rank alike: the lower literal first."""
    x = np.array([[1.0, 1.0, -1.0], [-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [-1.0, 1.0, -1.0]])
    labels = np.array([1, 0, 1, 0])
    ranks = []
    for eps in (1e-15, -1e-15):
        coef = np.array([[[0.5, 0.5 * (1 + eps), 0.1]]])
        d = dominant_literals(labels[None], x[None], coef, np.array([1]), dominance=0.5)
        mine = (d["cluster"] == 1) & (d["sign"] == 1)
        ranks.append(d["rank"][mine].tolist())
    assert ranks[0] == ranks[1] == [1, 2, 3]


def test_literals_of_many_problems_at_once_equal_one_at_a_time():
    rng = np.random.default_rng(6)
    P, N, F = 6, 30, 5
    x = rng.choice([-1.0, 1.0], size=(P, N, F))
    labels = rng.integers(0, 4, size=(P, N))
    labels[0] = labels[0] % 2  # a binary problem
    labels[1, :] = 3  # one class: no SVM, no rows
    coef = np.full((P, 4, F), np.nan)
    n_rows = np.zeros(P, dtype=int)
    for p in range(P):
        if len(np.unique(labels[p])) > 1:
            c = LinearSVC(multi_class="ovr", random_state=0).fit(x[p], labels[p]).coef_
            coef[p, : len(c)], n_rows[p] = c, len(c)
    batch = dominant_literals(labels, x, coef, n_rows, 0.5)
    assert 1 not in batch["problem"]
    for p in range(P):
        one = dominant_literals(
            labels[p : p + 1], x[p : p + 1], coef[p : p + 1], n_rows[p : p + 1], 0.5
        )
        sel = batch["problem"] == p
        for k in one:
            if k != "problem":
                np.testing.assert_array_equal(batch[k][sel], one[k])
    # data_score by hand for one literal of one cluster
    p, c, j = 2, 1, 3
    member = labels[p] == c
    want = (x[p, member, j] > 0).mean() - (x[p, ~member, j] > 0).mean()
    sel = (batch["problem"] == p) & (batch["cluster"] == c) & (batch["literal"] == j)
    assert batch["data_score"][sel & (batch["sign"] == 1)][0] == pytest.approx(want, abs=1e-6)


# --- pathways -----------------------------------------------------------------------------


def test_pathways_are_the_exact_top_paths():
    rng = np.random.default_rng(4)
    L, H, S, T, m = 3, 2, 2, 6, 4
    attn = np.tril(rng.uniform(size=(L, H, S, T, T)))
    attn /= attn.sum(-1, keepdims=True)
    mean = attn.mean(1)  # (L, S, T, T)
    suf = suffixes(mean, m)
    # Two problems: layer 2 head 1 of sample 1 (one cluster of rows 3 and 5), and layer 0
    # head 0 of sample 0 (clusters {3}, {5}).
    d = cluster_paths(
        attn,
        suf,
        np.array([2, 0]),
        np.array([1, 0]),
        np.array([1, 0]),
        np.array([[3, 5], [3, 5]]),
        np.array([[0, 0], [0, 1]]),
        m,
    )
    brute = []
    for q in (3, 5):
        for k1, k2, k3 in itertools.product(range(T), repeat=3):
            w = attn[2, 1, 1, q, k1] * mean[1, 1, k1, k2] * mean[0, 1, k2, k3]
            if w > 0:
                brute.append((w, (q, k1, k2, k3)))
    brute.sort(key=lambda t: -t[0])
    first = d["problem"] == 0
    got = d["path_weight"][first & (d["hop"] == 0)]
    np.testing.assert_allclose(got, [w for w, _ in brute[:m]], rtol=1e-6)
    for rank in range(1, m + 1):
        hops = np.flatnonzero(first & (d["path_rank"] == rank))
        path = (d["src_pos"][hops[0]], *d["dst_pos"][hops])
        assert path == brute[rank - 1][1]
        prod = np.prod(d["hop_weight"][hops])
        assert prod == pytest.approx(d["path_weight"][hops[0]], rel=1e-6)
    assert list(d["hop_layer"][first & (d["path_rank"] == 1)]) == [2, 1, 0]
    assert list(d["hop_head"][first & (d["path_rank"] == 1)]) == [1, -1, -1]
    # Layer 0: one hop each; cluster 1 holds row 5 only, its top path its largest weight.
    second = (d["problem"] == 1) & (d["cluster"] == 1)
    np.testing.assert_allclose(
        d["path_weight"][second], np.sort(attn[0, 0, 0, 5][attn[0, 0, 0, 5] > 0])[::-1][:m]
    )
    assert (d["src_pos"][second] == 5).all() and (d["hop"][second] == 0).all()


# --- views --------------------------------------------------------------------------------


def test_shared_keys_view_rows_share_their_support():
    T = 16
    attn = np.tril(np.random.default_rng(5).uniform(size=(T, T)))
    attn /= attn.sum(1, keepdims=True)
    v = make_view("shared_keys", n_points=8)
    rows = v.apply(attn, "x")
    assert rows.shape == (4, 8)  # points 4..7, keys of points 0..3
    np.testing.assert_allclose(rows.sum(1), 1, atol=1e-6)
    np.testing.assert_array_equal(v.points(8), [4, 5, 6, 7])
    np.testing.assert_allclose(rows[0], attn[8, :8] / attn[8, :8].sum(), rtol=1e-6)
    per_example = make_view("per_example", n_points=8).apply(attn, "y")
    assert per_example.shape == (4, 4)


@pytest.mark.parametrize(
    "name,m,match", [("rows", None, "'rows'"), ("shared_keys", 7, "m=7"), ("raw", 2, "m=2")]
)
def test_bad_views(name, m, match):
    with pytest.raises(ConfigError, match=match):
        make_view(name, m, n_points=8)


# --- the stored analysis --------------------------------------------------------------------


@pytest.fixture(scope="module")
def analysed(tiny_store, tmp_path_factory):
    """A copy of the tiny store with a raw-view analysis (the session store stays as it is)."""
    import shutil

    src, run_id = tiny_store
    path = tmp_path_factory.mktemp("analysed") / "store"
    shutil.copytree(src, path)
    result = analyze(path, run_id, backend="sklearn", view="raw")
    return path, run_id, result.analysis_id


def test_stored_tables_have_the_promised_rows(analysed):
    path, run_id, aid = analysed
    con = connect(path)
    n_problems = TINY["n_layers"] * TINY["n_heads"] * TINY_SAMPLES * 2
    count = lambda t: con.execute(f"select count(*) from {t}").fetchall()[0][0]  # noqa: E731
    assert count("fits") == n_problems
    assert count("clusters") == n_problems * TINY["n_points"]
    assert count("silhouette") == n_problems * (TINY["n_points"] - 2)  # k = 2..7
    a = con.execute("select run_id, backend, view, k_values from analyses").fetchall()[0]
    assert a == (run_id, "sklearn", "raw", list(range(2, 8)))
    # Every cluster has its literals, 2 per input dimension.
    bad = con.execute(
        """
        select count(*) from (select layer, head, sample, query_kind, cluster, count(*) as n
                              from dominant_literals group by all) where n != $n
    """,
        {"n": 2 * TINY["n_dims"]},
    ).fetchall()[0][0]
    assert bad == 0


def test_stored_rows_equal_the_seed_calls_on_the_same_rows(analysed):
    """Rebuild one problem from stored attention and inputs, run the seed's calls, compare."""
    path, run_id, aid = analysed
    s = Store(path)
    layer, head, sample = 1, 0, 3
    att = s.read("attention", run_id=run_id, layer=layer, head=head, sample=sample)
    att = att.sort_by("query_pos")
    rows = full_rows(att.column("weights"), 2 * TINY["n_points"])[::2]  # x queries
    inputs = s.read("inputs", run_id=run_id, sample=sample).to_pandas().sort_values("point")
    x = np.stack(inputs.x.to_numpy()).astype(np.float32)
    sil = (
        s.read("silhouette", analysis_id=aid, layer=layer, head=head, sample=sample, query_kind="x")
        .to_pandas()
        .sort_values("k")
    )
    for k, score in zip(sil.k, sil.silhouette, strict=True):
        if np.isnan(score):
            continue
        km = KMeans(n_clusters=int(k), random_state=0, n_init="auto").fit(rows)
        assert score == pytest.approx(silhouette_score(rows, km.labels_), abs=1e-6)
    k_best = int(sil.k[sil.silhouette.idxmax()])
    km = KMeans(n_clusters=k_best, random_state=0, n_init="auto").fit(rows)
    cl = (
        s.read("clusters", analysis_id=aid, layer=layer, head=head, sample=sample, query_kind="x")
        .to_pandas()
        .sort_values("point")
    )
    np.testing.assert_array_equal(cl.label, km.labels_)
    assert (cl.best_k == k_best).all()
    svm = LinearSVC(multi_class="ovr", random_state=0).fit(x, km.labels_)
    coefs = (
        s.read("svm_coefs", analysis_id=aid, layer=layer, head=head, sample=sample, query_kind="x")
        .to_pandas()
        .sort_values(["class_index", "literal"])
    )
    np.testing.assert_allclose(
        coefs.coef.to_numpy().reshape(svm.coef_.shape), svm.coef_, rtol=1e-5, atol=1e-6
    )


def test_in_target_matches_functions(analysed):
    path, _, _ = analysed
    con = connect(path)
    bad = con.execute("""
        select count(*) from dominant_literals d
        left join functions f on f.sample = d.sample and f.literal = d.literal
        where d.in_target != coalesce(f.weight = d.sign, false)
    """).fetchall()[0][0]
    assert bad == 0


def test_same_analysis_again_is_not_rewritten(analysed):
    path, run_id, aid = analysed
    again = analyze(path, run_id, backend="sklearn", view="raw")
    assert again.existed and again.analysis_id == aid


def test_another_view_lives_beside(analysed):
    path, run_id, aid = analysed
    other = analyze(path, run_id, backend="sklearn", view="per_example", m=3)
    assert other.analysis_id != aid
    con = connect(path)
    views = con.execute("select view from analyses order by view").fetchall()
    assert views == [("per_example",), ("raw",)]
    assert (
        con.execute(
            "select count(distinct point) from clusters where analysis_id = $a",
            {"a": other.analysis_id},
        ).fetchall()[0][0]
        == TINY["n_points"] - 3
    )


def test_random_state_is_recorded_and_keys_the_id(analysed):
    path, run_id, aid = analysed
    other = analyze(path, run_id, view="raw", random_state=1)
    s = Store(path)
    rows = {a: s.analysis(a) for a in (aid, other.analysis_id)}
    assert rows[aid]["random_state"] == 0 and rows[other.analysis_id]["random_state"] == 1
    for a, row in rows.items():
        params = json.loads(row["params_json"])
        assert params["random_state"] == row["random_state"]
        assert analysis_id_for(run_id, params) == a
    assert sorted(json.loads(rows[aid]["params_json"])) == [
        "backend",
        "device",
        "dominance",
        "k_max",
        "k_min",
        "random_state",
        "top_paths",
        "view",
        "view_params",
    ]


def test_analysis_ids_are_as_before():
    """The id hashes the run and the params, with random_state among them since the start: an
    analysis made before random_state became a parameter keeps its id."""
    params = {
        "backend": "torch",
        "device": "cpu",
        "view": "shared_keys",
        "view_params": {"m": 20},
        "k_min": 2,
        "k_max": 9,
        "random_state": 0,
        "dominance": 0.5,
        "top_paths": 3,
    }
    assert analysis_id_for("0123456789abcdef", params) == "e6faf87f626a6136"


@pytest.mark.parametrize(
    "field,match",
    [
        ({"backend": "keras"}, "unknown backend 'keras'"),
        ({"backend": "sklearn", "device": "cuda"}, "backend 'sklearn' runs on the cpu only"),
        ({"device": "tpu"}, "device 'tpu' is not usable here"),
        ({"view": "rows"}, "unknown view 'rows'"),
        ({"view": "raw", "m": 2}, "view 'raw' takes no m"),
        ({"k_min": 5, "k_max": 3}, "k range 5..3 is empty"),
        ({"k_max": 40_000}, "k_max=40000 is above 32767"),
        ({"dominance": 0}, "dominance=0 must be in"),
        ({"top_paths": 0}, "top_paths=0; accepted"),
        ({"chunk_samples": 0}, "chunk_samples=0 must be at least 1"),
    ],
)
def test_an_analysis_config_is_checked_when_made(field, match):
    with pytest.raises(ConfigError, match=match):
        AnalysisConfig(**field)


def test_a_plan_is_for_runs_of_its_number_of_points(analysed):
    """A plan checks a config against a run's shape once; handed another run's, it refuses."""
    path, run_id, _ = analysed
    s = Store(path)
    plan = AnalysisConfig(view="raw").plan(TINY["n_points"] + 1)
    with pytest.raises(ConfigError, match=f"planned for runs of {TINY['n_points'] + 1} points"):
        analyze_run(s, s.run(run_id), plan)
    with pytest.raises(ConfigError, match="m must be between"):
        AnalysisConfig(view="shared_keys", m=TINY["n_points"]).plan(TINY["n_points"])


def test_unknown_run_and_view(analysed):
    path, run_id, _ = analysed
    with pytest.raises(NotFoundError, match=run_id):
        analyze(path, "nope")
    with pytest.raises(ConfigError, match="raw"):
        analyze(path, run_id, view="rows")


def test_analysis_is_atomic_under_sigkill(tiny_store, tmp_path):
    """Kill an analysis at several moments: its rows are never visible half-written."""
    import shutil
    import signal
    import subprocess
    import sys
    import time

    src, run_id = tiny_store
    for delay in (0.3, 1.0, 2.0):
        store = tmp_path / f"s{delay}"
        shutil.copytree(src, store)
        cmd = [
            sys.executable,
            "-m",
            "attnstore",
            "analyze",
            "--store",
            str(store),
            "--run",
            run_id,
            "--view",
            "shared_keys",
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        con = connect(store)
        n = con.execute("select count(*) from analyses where view = 'shared_keys'").fetchall()[0][0]
        fits = con.execute(
            "select count(*) from fits join analyses using (analysis_id) where view = 'shared_keys'"
        ).fetchall()[0][0]
        assert fits == (0 if n == 0 else TINY["n_layers"] * TINY["n_heads"] * TINY_SAMPLES * 2)
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        assert out.stdout.strip().splitlines()[-1] in Store(store).keys("analysis")


def test_cli_analyze_prints_the_id_last(tiny_store, tmp_path):
    import shutil

    from click.testing import CliRunner

    from attnstore.cli import cli

    src, run_id = tiny_store
    store = tmp_path / "s"
    shutil.copytree(src, store)
    res = CliRunner().invoke(cli, ["analyze", "--store", str(store), "--view", "per_example"])
    assert res.exit_code == 0, res.output
    aid = res.stdout.strip().splitlines()[-1]
    assert aid in Store(store).keys("analysis")
    bad = CliRunner().invoke(cli, ["analyze", "--store", str(store), "--run", "nope"])
    assert bad.exit_code != 0 and run_id in bad.output and "Traceback" not in bad.output
    bad = CliRunner().invoke(
        cli, ["analyze", "--store", str(store), "--k-min", "5", "--k-max", "3"]
    )
    assert bad.exit_code != 0 and "5..3" in bad.output


def test_tiny_prompts_are_analysed_or_refused_clearly(tiny_checkpoint, tmp_path):
    """Three points: raw rows allow only k = 2 (n_rows - 1); the position-free views keep too
    few rows and say so."""
    from attnstore.extraction import extract

    run = extract(tmp_path, checkpoint=str(tiny_checkpoint), samples=4, points=3).run_id
    a = analyze(tmp_path, run, view="raw")
    s = Store(tmp_path)
    assert s.analyses().k_values.iloc[0].tolist() == [2]
    fits = s.df("fits", analysis_id=a.analysis_id)
    assert len(fits) == TINY["n_layers"] * TINY["n_heads"] * 4 * 2
    assert set(fits.best_k) <= {1, 2}
    with pytest.raises(ConfigError, match="m must be between"):
        analyze(tmp_path, run, view="shared_keys")
