"""The named query library: every query runs, planted structure ranks where it must, bad input
is named, values never become SQL, and the .sql files ship inside the wheel."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner

import attnstore
from attnstore.analysis.run import analyze
from attnstore.cli import cli
from attnstore.connection import connect, sql_dir
from attnstore.errors import ConfigError, NotFoundError, QueryError
from attnstore.extraction import attention_table
from attnstore.queries import QUERY_PATH_ENV, get_query, load_queries, names_a, query, scope
from attnstore.schema import SCHEMA_VERSION, TABLES
from attnstore.store import Store
from attnstore.training import elimination_baseline, majority_baseline

REPO = Path(__file__).resolve().parent.parent
INJECTION = "x'; drop view attention; --"
RANKINGS = [
    "heads_by_cluster_quality",
    "heads_by_literals",
    "heads_by_xy_difference",
    "heads_by_label_routing",
]


def _run(*args, **kwargs):
    return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)


def _digest(path: Path) -> dict[str, str]:
    """sha256 of every file under ``path``."""
    return {
        str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(path.rglob("*"))
        if f.is_file()
    }


# --- a synthetic store with planted structure ------------------------------------------------
#
# 2 layers x 3 heads, 16 points of 5 bits, hidden function x_2 (y = x_2), analysed with the
# shared_keys view from point M = 4 (12 query rows per problem, over the keys of points 0..3):
#   (0, 0) uniform causal attention: every kept row is the same, nothing to cluster;
#   (0, 1) x queries put half their mass on the y tokens of positive examples;
#   (0, 2) x queries in 2 noisy clusters set by x_4 (not in the target);
#   (1, 0), (1, 1) random rows;
#   (1, 2) x queries in 3 clean clusters set by x_2 and x_4: x_2 = +1 | x_2 = -1, x_4 = +1 |
#          x_2 = -1, x_4 = -1, aligned with literal 2 of the target.
# A second run ("unplanted") is the same with head (1, 2) random.

D, N, L, H, S, M = 5, 16, 2, 3, 8, 4
T = 2 * N


def _inputs(rng):
    """x (S, N, D) with x_2 and x_4 set from each kept point's planted cluster; y = x_2."""
    x = rng.choice([-1, 1], size=(S, N, D)).astype(np.int8)
    cluster = np.zeros((S, N), dtype=int)
    for s in range(S):
        c = rng.permutation(np.repeat([0, 1, 2], (N - M) // 3))
        cluster[s, M:] = c
        x[s, M:, 2] = np.where(c == 0, 1, -1)
        x4 = np.where(c == 1, 1, -1)
        x4[c == 0] = np.resize([1, -1], (c == 0).sum())  # cluster 0 holds both values of x_4
        x[s, M:, 4] = x4
    return x, x[:, :, 2].copy(), cluster


def _uniform():
    a = np.tril(np.ones((T, T)))
    return np.broadcast_to(a / a.sum(1, keepdims=True), (S, T, T)).copy()


def _random(rng):
    a = np.tril(rng.exponential(size=(S, T, T)))
    return a / a.sum(-1, keepdims=True)


def _planted(rng, group, keys, noise):
    """Random rows, except the x queries of the kept points: mass on the key of their group."""
    a = _random(rng)
    for s in range(S):
        for i in range(M, N):
            row = np.full(2 * M, 0.1 / (2 * M)) + rng.uniform(0, noise, 2 * M)
            row[keys[group[s, i]]] += 0.9
            a[s, 2 * i] = 0
            a[s, 2 * i, : 2 * M] = row / row.sum()
    return a


def _routing(rng, y):
    a, uniform = _random(rng), _uniform()
    for s in range(S):
        for i in range(1, N):
            positive = [2 * p + 1 for p in range(i) if y[s, p] > 0]
            row = uniform[s, 2 * i].copy()
            if positive:
                row = 0.5 * row
                row[positive] += 0.5 / len(positive)
            a[s, 2 * i] = row
    return a


def _attention(rng, x, y, cluster, plant: bool):
    a = np.zeros((L, H, S, T, T))
    a[0, 0] = _uniform()
    a[0, 1] = _routing(rng, y)
    a[0, 2] = _planted(rng, np.where(x[:, :, 4] > 0, 0, 1), [1, 3], noise=0.15)
    a[1, 0] = _random(rng)
    a[1, 1] = _random(rng)
    a[1, 2] = _planted(rng, cluster, [0, 2, 4], noise=0.01) if plant else _random(rng)
    return a.astype(np.float32)


def _write_run(store: Store, run_id: str, created_at, x, y, attn) -> None:
    ids = {
        "sample": np.repeat(np.arange(S, dtype=np.int32), N),
        "point": np.tile(np.arange(N, dtype=np.int16), S),
    }
    pred = np.where(np.arange(N) >= 2, y, -1).astype(np.int8)  # right from point 2 on
    w = np.zeros((S, D), dtype=np.int8)
    w[:, 2] = 1
    offsets = pa.array(np.arange(0, S * N * D + 1, D, dtype=np.int32))
    with store.transaction("run", run_id) as txn:
        txn.write(
            "inputs",
            pa.table(
                {
                    **ids,
                    "x": pa.ListArray.from_arrays(offsets, pa.array(x.reshape(-1))),
                    "y": y.reshape(-1),
                }
            ),
        )
        txn.write(
            "functions",
            pa.table(
                {
                    "sample": np.repeat(np.arange(S, dtype=np.int32), D),
                    "term": np.zeros(S * D, dtype=np.int16),
                    "literal": np.tile(np.arange(D, dtype=np.int16), S),
                    "weight": w.reshape(-1),
                    "sign": w.reshape(-1),
                    "threshold": np.zeros(S * D, dtype=np.float32),
                }
            ),
        )
        txn.write(
            "predictions",
            pa.table(
                {
                    **ids,
                    "logit": pred.reshape(-1).astype(np.float32),
                    "pred": pred.reshape(-1),
                    "y": y.reshape(-1),
                    "correct": (pred == y).reshape(-1),
                }
            ),
        )
        for layer in range(L):
            for head in range(H):
                txn.write("attention", attention_table(attn[layer, head], 0, head, y), layer=layer)
        row = {
            "created_at": created_at,
            "checkpoint": "synthetic",
            "checkpoint_sha256": "0" * 64,
            "checkpoint_source": "attnstore",
            "card_json": "{}",
            "n_layers": L,
            "n_heads": H,
            "d_model": 8,
            "d_head": 4,
            "n_dims": D,
            "n_ctx": T,
            "n_points": N,
            "task": "conjunction",
            "task_params_json": "{}",
            "seed": 0,
            "n_samples": S,
            "device": "cpu",
            "accuracy": float((pred == y).mean()),
            "precision": "float32",
            "max_abs_error": 0.0,
            "train_step": None,
            "train_seed": None,
            "sweep_id": None,
            "attnstore_version": attnstore.__version__,
            "torch_version": "",
            "python_version": "",
            "schema_version": SCHEMA_VERSION,
            "command": "tests/test_queries.py",
        }
        schema = TABLES["runs"].schema
        txn.write(
            "runs", pa.table({k: pa.array([v], schema.field(k).type) for k, v in row.items()})
        )


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """The planted store: path, inputs x and y, and the planted clusters of head (1, 2)."""
    path = tmp_path_factory.mktemp("synthetic") / "store"
    store = Store(path, create=True)
    rng = np.random.default_rng(0)
    x, y, cluster = _inputs(rng)
    now = datetime.now(timezone.utc)
    _write_run(
        store, "planted", now - timedelta(hours=1), x, y, _attention(rng, x, y, cluster, True)
    )
    _write_run(store, "unplanted", now, x, y, _attention(rng, x, y, cluster, False))
    for run_id in ("planted", "unplanted"):
        analyze(store, run_id, view="shared_keys", m=M, k_max=5)
    return path, x, y, cluster


def _heads(df, n=None):
    rows = df.head(n) if n is not None else df
    cols = [c for c in ("layer", "head", "query_kind") if c in df.columns]
    return [tuple(r) for r in rows[cols].itertuples(index=False)]


# --- the library -----------------------------------------------------------------------------


def test_bundled_queries_declare_what_they_use():
    queries = load_queries()
    assert set(RANKINGS) | {"silhouette_curve", "compare_runs", "run_overview"} <= set(queries)
    for name, q in queries.items():
        assert q.header.startswith(f"{name}: ") and q.description, name
        for section in ("Parameters:", "Grain:", "Columns:"):
            assert section in q.header, (name, section)
        # every parameter is used, but the run and view that only choose a default analysis
        choosers = {n for p in q.params if names_a(p) == "analysis" for n in scope(p.name)}
        assert set(q.used_params) <= {p.name for p in q.params}, name
        assert {p.name for p in q.params} - set(q.used_params) <= choosers, name
        assert all(len(line) <= 100 for line in q.sql.splitlines()), name


def _fixture_params(name, run_id):
    q = get_query(name)
    params = {p.name: 0 for p in q.params if p.required}
    if name == "compare_runs":
        params |= {"run_a": run_id, "run_b": run_id, "view_a": "raw", "view_b": "shared_keys"}
    return params


@pytest.mark.parametrize("name", sorted(load_queries()))
def test_every_query_runs_on_the_fixture_store(tiny_analysed_store, name):
    path, run_id, _ = tiny_analysed_store
    df = query(path, name, **_fixture_params(name, run_id))
    assert isinstance(df, pd.DataFrame) and len(df) > 0, name
    header = get_query(name).header
    for column in df.columns:  # every output column is documented in the header
        assert re.search(rf"\b{column}\b", header), (name, column)


# --- known answers on the planted store ------------------------------------------------------


def test_planted_head_ranks_first_and_uniform_head_last(synthetic):
    path = synthetic[0]
    quality = query(path, "heads_by_cluster_quality", run_id="planted")
    assert _heads(quality, 1) == [(1, 2, "x")]
    assert quality.modal_k.iloc[0] == 3 and quality.modal_k_share.iloc[0] == 1.0
    assert quality.quality.iloc[0] > 0.9
    assert set(_heads(quality.tail(2))) == {(0, 0, "x"), (0, 0, "y")}
    assert (quality.tail(2).quality == 0).all()

    literals = query(path, "heads_by_literals", run_id="planted")
    assert _heads(literals, 1) == [(1, 2, "x")]
    top = literals.iloc[0]
    assert top.literal_recall == 1.0 and top.precision_lift > 2 and top.mean_svm_accuracy == 1.0
    assert top.literal_f1 > 2 * top.chance_f1
    assert set(_heads(literals.tail(2))) == {(0, 0, "x"), (0, 0, "y")}
    assert literals.tail(2).literal_f1.isna().all()


def test_xy_difference_and_label_routing(synthetic):
    path = synthetic[0]
    xy = query(path, "heads_by_xy_difference")  # the latest run: head (1, 2) is random there
    assert _heads(xy, 1) == [(0, 2)]
    xy = query(path, "heads_by_xy_difference", run_id="planted")
    assert _heads(xy, 1) == [(1, 2)] and _heads(xy.tail(1)) == [(0, 0)]
    assert xy.iloc[0].modal_k_x == 3 and xy.iloc[-1].xy_difference == 0

    routing = query(path, "heads_by_label_routing", run_id="planted")
    assert _heads(routing, 1) == [(0, 1, "x")]
    assert routing.iloc[0].lift > 1.5 and routing.iloc[0].excess_mass > 0.2
    assert abs(routing.set_index(["layer", "head"]).loc[(0, 0)].lift - 1) < 1e-5


def test_silhouette_curve_and_head_clusters(synthetic):
    path, x, _, cluster = synthetic
    curve = query(path, "silhouette_curve", run_id="planted", layer=1, head=2, query_kind="x")
    assert list(curve.k) == [2, 3, 4, 5]
    assert curve.k[curve.mean_silhouette_at_k.idxmax()] == 3
    assert curve.set_index("k").chosen_share.to_dict() == {2: 0, 3: 1, 4: 0, 5: 0}

    clusters = query(path, "head_clusters", run_id="planted", layer=1, head=2, query_kind="x")
    assert sorted(clusters.cluster_size) == [4, 4, 4]
    positive = clusters[clusters.positive_label_share == 1.0]
    assert len(positive) == 1 and positive.dominant.iloc[0][0] == "+x2*"
    planted = M + np.flatnonzero(cluster[0, M:] == 0)  # the points with x_2 = +1
    assert sorted(map(int, positive.points.iloc[0])) == list(planted)
    share = clusters.positive_label_share
    assert (share[share != 1.0] == 0).all()
    both = query(path, "head_clusters", run_id="planted", layer=1, head=2)  # x, then y
    kinds = [
        query(path, "head_clusters", run_id="planted", layer=1, head=2, query_kind=k) for k in "xy"
    ]
    assert set(both.query_kind) == {"x", "y"}
    pd.testing.assert_frame_equal(both, pd.concat(kinds, ignore_index=True))


def test_cluster_transitions_follow_the_planted_bits(synthetic):
    path, x, _, _ = synthetic
    for sample in range(S):
        moves = query(path, "cluster_transitions", run_id="planted", sample=sample, layer=0)
        moves = moves[(moves["head"] == 2) & (moves.next_head == 2)]
        # (0, 2) splits on x_4; (1, 2) on x_2, then x_4: four flows, and only the x_2 = +1
        # cluster above is fed by both clusters below
        assert len(moves) == 4
        fed = moves.groupby("next_cluster").cluster.nunique()
        assert sorted(fed) == [1, 1, 2]
        both = moves[moves.next_cluster == fed.idxmax()]
        points = sorted(int(p) for ps in both.moved_points for p in ps)
        assert (x[sample, points, 2] == 1).all() and len(points) == 4
    agreement = query(path, "layer_transitions", run_id="planted")
    into_planted = agreement[agreement.next_head == 2].set_index("head").mean_ari
    assert into_planted.idxmax() == 2 and into_planted[2] > 0.3


def test_compare_runs_defaults_to_the_two_latest(synthetic):
    path = synthetic[0]
    diff = query(path, "compare_runs")  # previous run: planted; latest: unplanted
    top = diff.iloc[0]
    assert (top.layer, top["head"], top.query_kind) == (1, 2, "x")
    assert top.delta_quality < -0.5 and top.changed and top.modal_k_a == 3
    same = diff.set_index(["layer", "head", "query_kind"]).loc[(0, 2, "x")]
    assert abs(same.delta_quality) < 0.05 and not same.changed


def test_an_analysis_given_alone_reads_its_own_run(synthetic):
    path = synthetic[0]
    planted = Store(path).analysis(run_id="planted")["analysis_id"]
    by_run = query(path, "head_clusters", run_id="planted", layer=1, head=2, sample=0)
    alone = query(path, "head_clusters", analysis_id=planted, layer=1, head=2, sample=0)
    pd.testing.assert_frame_equal(alone, by_run)  # not the latest run's (unplanted)
    with pytest.raises(NotFoundError, match=f"analysis '{planted}' not in run unplanted; its"):
        query(path, "head_clusters", run_id="unplanted", analysis_id=planted, layer=1, head=2)
    with pytest.raises(NotFoundError, match=f"analysis '{planted}' not in run unplanted; its"):
        query(path, "compare_runs", analysis_a=planted, run_a="unplanted")


def test_run_overview_equals_the_baselines_of_train(synthetic, tiny_analysed_store):
    path, x, y, _ = synthetic
    overview = query(path, "run_overview", run_id="planted")
    assert list(overview.point) == list(range(N))
    assert (overview.model_accuracy[2:] == 1).all()
    xf, yf = x.astype(np.float32), y.astype(np.float32)
    np.testing.assert_allclose(overview.majority_accuracy, (majority_baseline(yf) == yf).mean(0))
    np.testing.assert_allclose(
        overview.elimination_accuracy, (elimination_baseline(xf, yf) == yf).mean(0)
    )

    fixture, run_id, _ = tiny_analysed_store
    overview = query(fixture, "run_overview")
    inputs = Store(fixture).read("inputs").to_pandas().sort_values(["sample", "point"])
    n_points = len(overview)
    xs = np.stack(inputs.x.to_numpy()).reshape(-1, n_points, 5).astype(np.float32)
    ys = inputs.y.to_numpy().reshape(-1, n_points).astype(np.float32)
    np.testing.assert_allclose(overview.majority_accuracy, (majority_baseline(ys) == ys).mean(0))
    np.testing.assert_allclose(
        overview.elimination_accuracy, (elimination_baseline(xs, ys) == ys).mean(0)
    )
    predictions = Store(fixture).read("predictions").to_pandas()
    np.testing.assert_allclose(
        overview.model_accuracy, predictions.groupby("point").correct.mean().to_numpy()
    )


def test_head_patterns_and_contents(synthetic):
    path = synthetic[0]
    patterns = query(path, "head_patterns").set_index(["layer", "head", "query_kind"])
    assert patterns.loc[(0, 0, "x")].mean_norm_entropy == pytest.approx(1, abs=1e-5)
    assert patterns.loc[(1, 2, "x")].mean_norm_entropy < 0.9
    contents = query(path, "contents")
    assert list(contents.run_id) == ["unplanted", "planted"]  # newest first
    assert contents.analysis_id.notna().all() and set(contents.view) == {"shared_keys"}


# --- parameters ------------------------------------------------------------------------------


def test_parameters_are_checked_coerced_and_defaulted(synthetic):
    path = synthetic[0]
    with pytest.raises(NotFoundError, match="unknown query 'heads_by_literal'; known: .*"):
        query(path, "heads_by_literal")
    with pytest.raises(NotFoundError) as e:
        query(path, "nope")
    for name in load_queries():
        assert name in str(e.value)
    needs = r"needs parameter 'layer' \(int\); accepted: analysis_id, run_id"
    with pytest.raises(ConfigError, match=needs):
        query(path, "silhouette_curve", head=2)
    with pytest.raises(ConfigError, match="has no parameter 'heads'; accepted: .*layer, head"):
        query(path, "silhouette_curve", layer=1, heads=2)
    with pytest.raises(ConfigError, match="top='two'.*not a valid int"):
        query(path, "heads_by_literals", top="two")
    with pytest.raises(ConfigError, match="not a valid int"):
        query(path, "silhouette_curve", layer=True, head=2)
    # strings (as from the command line) are parsed to the declared types
    assert len(query(path, "heads_by_literals", top="3")) == 3
    assert len(query(path, "silhouette_curve", layer="1", head=2.0, query_kind="x")) == 4
    # run parameters default to the latest run, and a named run must exist
    assert set(query(path, "run_overview").run_id) == {"unplanted"}
    with pytest.raises(
        NotFoundError, match="unknown run 'nope' .*in the store: unplanted, planted"
    ):
        query(path, "run_overview", run_id="nope")


def test_previous_run_needs_two(tiny_analysed_store):
    path, run_id, _ = tiny_analysed_store
    with pytest.raises(NotFoundError, match="run_a defaults to the previous run.*pass run_a="):
        query(path, "compare_runs")


def test_store_without_analysis_names_the_command(tiny_store, tmp_path):
    path, run_id = tiny_store
    for name in ("heads_by_cluster_quality", "head_summary", "compare_runs"):
        params = {"run_a": run_id} if name == "compare_runs" else {}
        with pytest.raises(NotFoundError, match=f"attnstore analyze --store {path}"):
            query(path, name, **params)
    assert len(query(path, "heads_by_label_routing")) > 0  # attention rows only: no analysis
    Store(tmp_path / "empty", create=True)
    with pytest.raises(NotFoundError, match="holds no run; 'attnstore extract --store"):
        query(tmp_path / "empty", "run_overview")
    result = _run("query", "heads_by_literals", "--store", path)
    assert result.exit_code != 0 and "attnstore analyze --store" in result.output


def test_values_never_become_sql(tiny_analysed_store):
    path, run_id, _ = tiny_analysed_store
    before = _digest(path)
    # Values with declared choices are refused before any SQL runs; the others are bound.
    with pytest.raises(ConfigError, match="accepted: one of raw, shared_keys, per_example"):
        query(path, "heads_by_cluster_quality", view=INJECTION)
    with pytest.raises(ConfigError, match="accepted: one of x, y"):
        query(path, "head_clusters", layer=0, head=0, query_kind=INJECTION)
    with pytest.raises(NotFoundError, match=re.escape(f"unknown run '{INJECTION}'")):
        query(path, "heads_by_literals", run_id=INJECTION)
    result = _run("query", "heads_by_cluster_quality", "--store", path, "-p", f"view={INJECTION}")
    assert result.exit_code != 0 and "accepted: one of raw" in result.output
    for bad in (
        "select 1; drop view attention",
        f"copy (select 1) to '{path}/x.csv'",
        "drop view attention",
        "create table t as select 1",
    ):
        with pytest.raises(QueryError, match="one statement|only statements that read"):
            attnstore.queries.sql(path, bad)
        assert _run("sql", "--store", path, bad).exit_code != 0
    assert _digest(path) == before
    assert connect(path).execute("select count(*) from attention").fetchall()[0][0] > 0


# --- user folders ----------------------------------------------------------------------------


def test_user_query_folders(tiny_analysed_store, tmp_path, monkeypatch):
    path, run_id, _ = tiny_analysed_store
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "first_rows.sql").write_text(
        "-- first_rows: the first $n attention rows.\n--\n-- Parameters:\n"
        "--   $n = 3        rows\n-- Grain: layer, head, sample, query_pos.\n"
        "-- Columns: layer, head, sample, query_pos.\n"
        "select layer, head, sample, query_pos from attention order by all limit $n\n"
    )
    (mine / "contents.sql").write_text(
        "-- contents: shadowed.\n--\n-- Parameters: none.\n-- Grain: one row.\n"
        "-- Columns: answer.\nselect 42 as answer\n"
    )
    (mine / "broken.sql").write_text(
        "-- broken: undeclared.\n--\n-- Parameters: none.\nselect $x\n"
    )
    assert len(query(path, "first_rows", extra_dirs=[mine])) == 3
    assert len(query(path, "first_rows", extra_dirs=[mine], n="5")) == 5
    assert query(path, "contents", extra_dirs=[mine]).answer.tolist() == [42]
    with pytest.raises(QueryError, match=r"uses \$x without declaring it"):
        query(path, "broken", extra_dirs=[mine])
    with pytest.raises(NotFoundError):
        query(path, "first_rows")
    monkeypatch.setenv(QUERY_PATH_ENV, str(mine))
    assert len(query(path, "first_rows")) == 3
    result = _run("query", "list")
    assert re.search(r"^first_rows +the first \$n attention rows\.$", result.output, re.M)


# --- the command line ------------------------------------------------------------------------


def test_cli_list_show_and_run(tiny_analysed_store, tmp_path):
    path, run_id, _ = tiny_analysed_store
    listed = _run("query", "list")
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    assert len(lines) == len(load_queries())
    for line, (name, q) in zip(lines, load_queries().items(), strict=True):
        assert line.split()[0] == name and line.endswith(q.description)

    shown = _run("query", "show", "silhouette_curve")
    assert shown.exit_code == 0
    assert "$layer (int, 0 <= layer, required)" in shown.output
    assert "$run_id (str, default: the latest run)" in shown.output
    assert get_query("silhouette_curve").sql.strip() in shown.output

    args = ["--store", path, "-p", "view=raw", "--param", "top=2"]
    short = _run("query", "heads_by_cluster_quality", *args)
    long = _run("query", "run", "heads_by_cluster_quality", *args)
    assert short.exit_code == 0 and short.output == long.output
    assert len(short.output.splitlines()) == 3 and short.output.split()[0] == "rank"

    as_csv = _run("query", "heads_by_cluster_quality", *args, "--format", "csv")
    as_json = _run("query", "heads_by_cluster_quality", *args, "--format", "json")
    out = tmp_path / "q.parquet"
    as_parquet = _run(
        "query", "heads_by_cluster_quality", *args, "--format", "parquet", "--out", out
    )
    assert as_parquet.exit_code == 0 and as_csv.exit_code == 0 and as_json.exit_code == 0
    from_csv = pd.read_csv(io.StringIO(as_csv.output))
    from_json = pd.DataFrame(json.loads(as_json.output))
    from_parquet = pd.read_parquet(out)
    assert list(from_csv.columns) == list(from_json.columns) == list(from_parquet.columns)
    assert list(from_csv["rank"]) == list(from_json["rank"]) == list(from_parquet["rank"]) == [1, 2]

    adhoc = _run("sql", "--store", path, "select count(*) as n from runs", "--format", "json")
    assert adhoc.exit_code == 0 and json.loads(adhoc.output) == [{"n": 1}]


def test_cli_errors_are_one_line(tiny_analysed_store):
    path, run_id, _ = tiny_analysed_store

    def one_line(result, *needles):
        assert result.exit_code != 0 and "Traceback" not in result.output
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
        for n in needles:
            assert n in lines[0], (n, lines[0])

    one_line(_run("query", "nope", "--store", path), "'nope'", "heads_by_literals")
    one_line(_run("query", "show", "nope"), "'nope'", "silhouette_curve")
    one_line(_run("query", "silhouette_curve", "--store", path, "-p", "head=1"), "'layer'")
    one_line(_run("query", "contents", "--store", path, "-p", "x=1"), "'x'", "none")
    one_line(_run("query", "contents", "--store", path, "-p", "x"), "name=value")
    one_line(_run("query", "contents", "--store", path, "--format", "parquet"), "--out")
    one_line(_run("sql", "--store", path, "select * from nope"), "nope")


# --- the wheel -------------------------------------------------------------------------------


def test_queries_ship_in_the_wheel(tmp_path, tiny_analysed_store):
    """Build the wheel, check the .sql files are inside, install it elsewhere and load the
    library from there: nothing of the source tree on the path."""
    path, run_id, _ = tiny_analysed_store
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, REPO],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("attnstore-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    sql = sorted(str(p.relative_to(REPO)) for p in (REPO / "queries").glob("**/*.sql"))
    assert sorted(n.removeprefix("attnstore/") for n in names if n.endswith(".sql")) == sql
    bundled = sorted(p.name for p in (REPO / "queries").glob("*.sql"))
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", target, wheel],
        check=True,
        capture_output=True,
    )
    code = (
        "import json, sys, attnstore\n"
        "from attnstore.connection import sql_dir\n"
        "from attnstore.queries import load_queries\n"
        f"df = attnstore.query({str(path)!r}, 'contents')\n"
        "print(json.dumps([attnstore.__file__, str(sql_dir()), list(load_queries()),"
        " len(df)]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop(QUERY_PATH_ENV, None)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    module, folder, names_found, n_rows = json.loads(out.stdout)
    assert Path(module).is_relative_to(target) and Path(folder).is_relative_to(target)
    assert names_found == [n.removesuffix(".sql") for n in bundled] and n_rows == 2
    assert sql_dir() == REPO / "queries"  # this process reads the source tree's


def test_no_clustering_reads_as_null_not_nan(synthetic):
    """The analysis stores null (not NaN) where a sample could not be clustered; the means
    skip those samples."""
    path = synthetic[0]
    quality = query(path, "heads_by_cluster_quality", run_id="planted")
    partly = quality[(quality.clustered_share > 0) & (quality.clustered_share < 1)]
    assert len(partly) > 0
    summary = query(path, "head_summary").set_index(["run_id", "layer", "head", "query_kind"])
    for row in partly.itertuples():
        s = summary.loc[("planted", row.layer, row.head, row.query_kind)]
        assert s.mean_silhouette == pytest.approx(row.mean_silhouette)
        assert np.isfinite(s.mean_svm_accuracy)


def test_parameters_outside_their_declared_range_are_refused(tiny_analysed_store):
    path, _, _ = tiny_analysed_store
    before = _digest(path)
    cases = [
        ("heads_by_cluster_quality", {"top": -1}, "top=-1 .* accepted: 1 <= top"),
        ("heads_by_literals", {"top": 0}, "top=0 .* accepted: 1 <= top"),
        ("silhouette_curve", {"layer": -2, "head": 0}, "accepted: 0 <= layer"),
        ("head_clusters", {"layer": 0, "head": 0, "sample": -1}, "accepted: 0 <= sample"),
        ("heads_by_literals", {"query_kind": "z"}, "accepted: one of x, y"),
        ("compare_runs", {"min_delta": -0.5}, "accepted: 0 <= min_delta"),
    ]
    for name, params, message in cases:
        with pytest.raises(ConfigError, match=message):
            query(path, name, **params)
        pairs = [x for k, v in params.items() for x in ("-p", f"{k}={v}")]
        out = _run("query", name, "--store", path, *pairs)
        assert out.exit_code != 0 and "Traceback" not in out.output
    assert _digest(path) == before


def test_a_parameter_described_over_two_lines_keeps_its_range(tmp_path):
    """A description continued on the next header line kept its text but lost the declared
    range and choices (compare_runs' min_delta accepted -0.5 once its line wrapped)."""
    (tmp_path / "wrapped.sql").write_text(
        "-- wrapped: a test\n--\n-- Parameters:\n"
        "--   $frac: float[0..1] = 0.5   a share,\n"
        "--                              described on two lines\n"
        "--   $kind: str{a,b} = 'a'      a kind,\n"
        "--                              also\n"
        "select $frac as frac, $kind as kind\n"
    )
    q = get_query("wrapped", [tmp_path])
    frac, kind = q.params
    assert (frac.low, frac.high, frac.doc) == (0.0, 1.0, "a share, described on two lines")
    assert kind.choices == ("a", "b")
    with pytest.raises(ConfigError, match="accepted: 0 <= frac <= 1"):
        q.bind({"frac": -0.5})


def test_declared_ranges_and_choices_parse(tmp_path):
    (tmp_path / "ranged.sql").write_text(
        "-- ranged: a test\n--\n-- Parameters:\n"
        "--   $frac: float[0..1] = 0.5   a share\n"
        "--   $kind: str{a,b}            required\n"
        "select $frac as frac, $kind as kind\n"
    )
    q = get_query("ranged", [tmp_path])
    frac, kind = q.params
    assert (frac.low, frac.high, frac.default) == (0.0, 1.0, 0.5) and kind.choices == ("a", "b")
    assert q.bind({"frac": "1", "kind": "b"}) == {"frac": 1.0, "kind": "b"}
    with pytest.raises(ConfigError, match="accepted: 0 <= frac <= 1"):
        q.bind({"frac": 1.5, "kind": "a"})
    (tmp_path / "broken.sql").write_text(
        "-- broken: default outside its range\n--\n-- Parameters:\n"
        "--   $n: int[1..] = 0   a count\nselect $n\n"
    )
    with pytest.raises(QueryError, match="out of its own range"):
        _ = get_query("broken", [tmp_path]).params


def test_a_query_file_that_is_not_utf8_is_named(tmp_path):
    (tmp_path / "latin.sql").write_bytes("-- latin: caf\xe9\nselect 1\n".encode("latin-1"))
    with pytest.raises(QueryError, match="latin.sql' is not UTF-8 text"):
        load_queries([tmp_path])
    out = _run("query", "list", "--query-dir", tmp_path)
    assert out.exit_code != 0 and "not UTF-8" in out.output and "Traceback" not in out.output
