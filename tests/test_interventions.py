"""Interventions measure what they say: a change that leaves a head as it is changes nothing,
zeroing every head is a model without attention, the same command gives the same rows, and
bad input is one line with nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from click.testing import CliRunner

from attnstore.checkpoint import load_checkpoint, save_checkpoint
from attnstore.cli import cli
from attnstore.connection import connect
from attnstore.errors import CheckpointError, ConfigError, NotFoundError, StoreError
from attnstore.extraction import extract
from attnstore.interventions import METHODS, TARGETS, intervene
from attnstore.model import HeadEdit
from attnstore.queries import run_query
from attnstore.stats import normal_interval, paired_bootstrap
from attnstore.store import Store
from tests.conftest import store_bytes


def _copy(src: Path, tmp_path: Path, name: str = "store") -> Path:
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def _effects(path: Path, intervention_id: str):
    """The per-point view of an intervention (head_effects), as pandas, in grain order."""
    with connect(path, comments=False) as con:
        return con.execute(
            "select * exclude (run_id, method, target, resample_seed) from head_effects "
            "where intervention_id = $i order by layer, head, point",
            {"i": intervention_id},
        ).df()


def _prompt_effects(path: Path, intervention_id: str):
    t = Store(path).read("prompt_effects", intervention_id=intervention_id)
    order = [(c, "ascending") for c in ("layer", "head", "sample", "point")]
    return t.sort_by(order).to_pandas()


@pytest.fixture(scope="module")
def iv_store(tmp_path_factory, tiny_analysed_store):
    """A copy of the tiny analysed store with zero, mean, resample and two knockouts."""
    src, run_id, _ = tiny_analysed_store
    path = _copy(src, tmp_path_factory.mktemp("iv"))
    results = intervene(
        path,
        run_id,
        methods=["zero", "mean", "resample", "knockout"],
        targets=["x_to_y_pos", "x_to_y"],
        seed=1,
        batch_size=5,
    )
    return path, run_id, {(r.method, r.target): r.intervention_id for r in results}


# --- it measures what it says ----------------------------------------------------------------


def test_an_edit_that_changes_nothing_gives_exactly_the_same_logits(tiny_checkpoint):
    model = load_checkpoint(str(tiny_checkpoint)).model
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2, (3, 8, 5), generator=g).float() * 2 - 1
    y = torch.randint(0, 2, (3, 8), generator=g).float() * 2 - 1
    with torch.no_grad():
        unchanged = model(x, y, edits={})
        base, z = unchanged.logits, unchanged.z
        every = torch.ones(3, 2, dtype=torch.bool)
        nothing = torch.zeros(3, 16, 16, dtype=torch.bool)
        same_z = model(x, y, edits={1: HeadEdit(every, z=z[1])}).logits
        no_key = model(x, y, edits={0: HeadEdit(every, remove=nothing)}).logits
    assert torch.equal(base, same_z) and torch.equal(base, no_key)


def test_zeroing_every_head_is_a_model_without_attention(tiny_checkpoint):
    """By hand: each layer's attention output replaced by the out-projection's bias alone."""
    model = load_checkpoint(str(tiny_checkpoint)).model
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 2, (16, 8, 5), generator=g).float() * 2 - 1
    y = torch.randint(0, 2, (16, 8), generator=g).float() * 2 - 1
    with torch.no_grad():
        h = model.embed(x, y)
        for block in model.blocks:
            h = h + block.attn.out.bias
            h = h + block.mlp(block.ln_2(h))
        by_hand = model.unembed(h)
        every = torch.ones(16, 2, dtype=torch.bool)
        zero = torch.zeros(16, 2, 16, model.cfg.d_head)
        edits = {layer: HeadEdit(every, z=zero) for layer in range(model.cfg.n_layers)}
        zeroed = model(x, y, edits=edits).logits
    torch.testing.assert_close(zeroed, by_hand, rtol=1e-5, atol=1e-6)
    assert torch.equal(zeroed > 0, by_hand > 0)
    assert not torch.allclose(zeroed, model(x, y).logits)  # attention mattered at all


def test_mean_over_a_run_of_one_prompt_changes_nothing(tiny_checkpoint, tmp_path):
    path = tmp_path / "one"
    run_id = extract(path, checkpoint=str(tiny_checkpoint), samples=1, seed=5).run_id
    [r] = intervene(path, run_id, methods=["mean"])
    t = _effects(path, r.intervention_id)
    assert len(t) == 2 * 2 * 8
    for col in ("delta_accuracy", "delta_logit"):
        assert set(t[col]) == {0.0}
    # one prompt: the estimate and no interval
    assert t.delta_accuracy_lower.isna().all() and t.delta_logit_upper.isna().all()
    with connect(path, comments=False) as con:
        summary = con.execute("select * from head_effect_summary").df()
    assert (summary.n_prompts == 1).all() and summary.late_delta_accuracy_lower.isna().all()


def test_a_knockout_of_an_empty_key_class_changes_nothing(iv_store):
    """At point 0 an x query sees no y token: removing x -> y attention there is a no-op."""
    path, _, ids = iv_store
    for target in ("x_to_y_pos", "x_to_y"):
        t = _effects(path, ids["knockout", target])
        first = t[t.point == 0]
        assert (first.delta_accuracy == 0).all() and (first.delta_logit == 0).all()
        # the x query of point 0 attends only to itself: nothing removed, nothing kept whole
        assert (first.kept_rows == 0).all()
    # an x query that attended only to y tokens does not exist; x_to_y keeps no row whole
    assert (_effects(path, ids["knockout", "x_to_y"]).kept_rows == 0).all()


def test_the_unchanged_model_is_the_run_as_extracted(iv_store):
    path, run_id, ids = iv_store
    t = _effects(path, ids["zero", "z"])
    stored = Store(path).df("predictions", run_id=run_id).groupby("point").correct.mean()
    for (layer, head), rows in t.groupby(["layer", "head"]):
        base = rows.set_index("point").base_accuracy
        assert np.abs(base - stored).max() <= 1 / 12 + 1e-9, (layer, head)
        np.testing.assert_array_equal(rows.delta_accuracy, rows.accuracy - rows.base_accuracy)
    assert (t.base_accuracy >= 0).all() and (t.accuracy <= 1).all()


def test_every_method_writes_one_row_per_head_and_point(iv_store):
    path, run_id, ids = iv_store
    assert set(ids) == {
        ("zero", "z"),
        ("mean", "z"),
        ("resample", "z"),
        ("knockout", "x_to_y_pos"),
        ("knockout", "x_to_y"),
    }
    s = Store(path)
    rows = s.read("interventions").to_pylist()
    assert {r["intervention_id"] for r in rows} == set(ids.values())
    for r in rows:
        assert r["run_id"] == run_id and r["n_samples"] == 12
        assert r["seed"] == (1 if r["method"] == "resample" else None)
    for i in ids.values():
        assert len(_effects(path, i)) == 2 * 2 * 8
        assert len(_prompt_effects(path, i)) == 2 * 2 * 12 * 8
        assert s.read("effects", intervention_id=i).num_rows == 0  # the old per-point table
    # zeroing a head of the trained tiny model changes some prediction somewhere
    assert np.abs(_effects(path, ids["zero", "z"]).delta_logit).max() > 0


def test_the_same_command_gives_the_same_ids_and_rows(tiny_analysed_store, tmp_path):
    src, run_id, _ = tiny_analysed_store
    a, b = _copy(src, tmp_path, "a"), _copy(src, tmp_path, "b")
    kw = dict(methods=["zero", "resample"], seed=4, batch_size=7)
    ra, rb = intervene(a, run_id, **kw), intervene(b, run_id, **kw)
    assert ra == rb
    for r in ra:
        assert _prompt_effects(a, r.intervention_id).equals(_prompt_effects(b, r.intervention_id))
    before = store_bytes(a)
    again = intervene(a, run_id, **kw)
    assert [r.existed for r in again] == [True, True]
    assert store_bytes(a) == before
    # another seed is another resample, the same zero ablation
    other = intervene(a, run_id, methods=["zero", "resample"], seed=5)
    assert other[0].intervention_id == ra[0].intervention_id and other[0].existed
    assert other[1].intervention_id != ra[1].intervention_id


# --- bad input: one line, nothing written ------------------------------------------------------


@pytest.fixture()
def own_checkpoint_store(tiny_checkpoint, tmp_path):
    """A store whose run's checkpoint is a copy this test may move or change."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    path = tmp_path / "store"
    run_id = extract(path, checkpoint=str(ckpt), samples=3, seed=2).run_id
    return path, run_id, ckpt


def test_a_checkpoint_no_longer_at_its_path_is_named(own_checkpoint_store):
    path, run_id, ckpt = own_checkpoint_store
    sha = Store(path).run(run_id)["checkpoint_sha256"]
    shutil.rmtree(ckpt)
    before = store_bytes(path)
    with pytest.raises(CheckpointError) as e:
        intervene(path, run_id)
    assert str(ckpt) in str(e.value) and sha in str(e.value) and "\n" not in str(e.value)
    assert store_bytes(path) == before


def test_a_checkpoint_whose_bytes_changed_names_both_hashes(own_checkpoint_store):
    path, run_id, ckpt = own_checkpoint_store
    sha = Store(path).run(run_id)["checkpoint_sha256"]
    loaded = load_checkpoint(str(ckpt))
    with torch.no_grad():
        loaded.model.read_out.bias += 1.0
    save_checkpoint(loaded.model, loaded.card, ckpt)
    now = load_checkpoint(str(ckpt)).sha256
    before = store_bytes(path)
    with pytest.raises(CheckpointError) as e:
        intervene(path, run_id)
    assert sha in str(e.value) and now in str(e.value)
    assert store_bytes(path) == before


@pytest.mark.parametrize(
    "kwargs, accepted",
    [
        (dict(methods=["zap"]), ", ".join(METHODS)),
        (dict(methods=["knockout"], targets=["x_to_q"]), ", ".join(TARGETS)),
        (dict(methods=["knockout"]), ", ".join(TARGETS)),
        (dict(methods=["zero"], targets=["x_to_y"]), "--method knockout"),
        (dict(batch_size=0), "at least 1"),
    ],
)
def test_bad_methods_and_targets_name_what_is_accepted(iv_store, kwargs, accepted):
    path, run_id, _ = iv_store
    before = store_bytes(path)
    with pytest.raises(ConfigError, match=accepted.replace("-", r"\-")):
        intervene(path, run_id, **kwargs)
    assert store_bytes(path) == before


def test_an_unknown_run_or_one_without_prompts_writes_nothing(iv_store, tmp_path):
    path, run_id, _ = iv_store
    before = store_bytes(path)
    with pytest.raises(NotFoundError, match="unknown run 'nope'"):
        intervene(path, "nope")
    assert store_bytes(path) == before
    bare = _copy(path, tmp_path)
    shutil.rmtree(bare / "inputs" / f"run_id={run_id}")
    before = store_bytes(bare)
    # the run's commit record names its prompts' file: a run without it is damaged, named
    with pytest.raises(StoreError, match="inputs/.*which is missing: the run is damaged"):
        intervene(bare, run_id, methods=["mean"])
    assert store_bytes(bare) == before


# --- the command line ------------------------------------------------------------------------


def test_cli_intervene_prints_ids_and_refuses_bad_input(iv_store, tmp_path):
    path, run_id, ids = iv_store
    store = _copy(path, tmp_path)
    runner = CliRunner()
    ok = runner.invoke(cli, ["intervene", "--store", str(store), "--run", run_id])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.strip() == f"{ids['zero', 'z']}\tzero\tz"
    before = store_bytes(store)
    for args, named in [
        (["--method", "zap"], "'zap'"),
        (["--method", "knockout", "--target", "x_to_q"], "'x_to_q'"),
        (["--run", "nope"], "'nope'"),
        (["--device", "tpu"], "'tpu'"),
    ]:
        bad = runner.invoke(cli, ["intervene", "--store", str(store), *args])
        assert bad.exit_code == 2, (args, bad.output)
        lines = bad.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and named in lines[0], lines
        assert "Traceback" not in bad.output
    assert store_bytes(store) == before


# --- the SQL ---------------------------------------------------------------------------------


def test_the_views_join_effects_to_their_run(iv_store):
    path, run_id, ids = iv_store
    with connect(path) as con:
        n = con.execute("select count(*) from head_effects where run_id = $r", {"r": run_id})
        assert n.fetchone()[0] == 5 * 2 * 2 * 8
        summary = con.execute(
            "select * from head_effect_summary where intervention_id = $i", {"i": ids["zero", "z"]}
        ).df()
    assert len(summary) == 4 and (summary.n_points == 8).all()
    t = _effects(path, ids["zero", "z"])
    late = t[t.point >= 4].groupby(["layer", "head"]).delta_accuracy.mean()
    got = summary.set_index(["layer", "head"]).late_delta_accuracy
    np.testing.assert_allclose(got.sort_index(), late.sort_index(), atol=1e-12)


def test_the_summary_intervals_are_the_paired_bootstrap_of_stats(iv_store):
    """head_effect_summary's intervals (SQL) are attnstore.stats.paired_bootstrap of each
    prompt's own change over the late points (numpy): one definition, two engines."""
    path, _, ids = iv_store
    t = _prompt_effects(path, ids["resample", "z"])
    late = t[t.point >= 4]
    with connect(path, comments=False) as con:
        summary = con.execute(
            "select * from head_effect_summary where intervention_id = $i order by layer, head",
            {"i": ids["resample", "z"]},
        ).df()
    for row in summary.itertuples():
        mine = late[(late.layer == row.layer) & (late["head"] == row.head)]
        per_prompt = mine.groupby("sample")
        changed = per_prompt.correct.mean().to_numpy()
        base = per_prompt.base_correct.mean().to_numpy()
        want = paired_bootstrap(changed, base)
        assert row.n_prompts == 12
        assert row.late_delta_accuracy == pytest.approx(want.estimate, abs=1e-12)
        assert row.late_delta_accuracy_lower == pytest.approx(want.lower, abs=1e-12)
        assert row.late_delta_accuracy_upper == pytest.approx(want.upper, abs=1e-12)
        logit = per_prompt.signed_logit.mean().to_numpy().astype(float)
        base_logit = per_prompt.base_signed_logit.mean().to_numpy().astype(float)
        want = paired_bootstrap(logit, base_logit)
        assert row.late_delta_logit_lower == pytest.approx(want.lower, abs=1e-6)
        assert row.late_delta_logit_upper == pytest.approx(want.upper, abs=1e-6)
    assert (summary.late_delta_accuracy_lower <= summary.late_delta_accuracy).all()
    assert (summary.late_delta_accuracy <= summary.late_delta_accuracy_upper).all()


def test_the_per_point_intervals_are_the_standard_error_of_stats(iv_store):
    path, _, ids = iv_store
    t = _prompt_effects(path, ids["zero", "z"])
    per_point = _effects(path, ids["zero", "z"])
    for row in per_point.sample(10, random_state=0).itertuples():
        mine = t[(t.layer == row.layer) & (t["head"] == row.head) & (t.point == row.point)]
        want = normal_interval(mine.correct.astype(float), mine.base_correct.astype(float))
        assert row.delta_accuracy_lower == pytest.approx(want.lower, abs=1e-12)
        assert row.delta_accuracy_upper == pytest.approx(want.upper, abs=1e-12)


def test_the_same_store_gives_the_same_intervals(iv_store):
    path, _, _ = iv_store
    a = run_query(path, "heads_by_effect", {"view": "shared_keys"})
    b = run_query(path, "heads_by_effect", {"view": "shared_keys"})
    assert a.equals(b)


def test_an_intervention_without_per_prompt_outcomes_names_the_command_that_measures_it(
    iv_store, tmp_path
):
    """A store written before prompt_effects: its intervention holds per-point rows of
    `effects` only. Every effect read refuses it in one line naming `attnstore intervene ...
    --overwrite`; the rest of the store reads, and nothing stored changes."""
    from attnstore.schema import TABLES

    path, run_id, ids = iv_store
    old = _copy(path, tmp_path)
    legacy = ids["knockout", "x_to_y"]
    per_point = _effects(path, legacy)
    row = Store(old).read("interventions", intervention_id=legacy).drop(["intervention_id"])
    with Store(old).transaction("intervention", legacy, overwrite=True) as txn:
        txn.write("interventions", row)
        txn.write(
            "effects",
            pa.Table.from_pandas(per_point, preserve_index=False)
            .select(TABLES["effects"].schema.names)
            .cast(TABLES["effects"].schema),
        )
        txn.write("prompt_effects", TABLES["prompt_effects"].schema.empty_table())
    before = store_bytes(old)
    with connect(old, comments=False) as con:  # the store still opens and reads
        assert con.execute("select count(*) from interventions").fetchone()[0] == 5
    runner = CliRunner()
    for query, params in [
        ("heads_by_effect", []),
        ("intervention_effects", ["-p", f"intervention_id={legacy}"]),
        ("effect_by_position", []),
    ]:
        r = runner.invoke(cli, ["query", query, "--store", str(old), *params])
        assert r.exit_code == 2, r.output
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and legacy in lines[0], lines
        assert f"attnstore intervene --run {run_id} --method knockout --target x_to_y" in lines[0]
        assert "--overwrite" in lines[0] and "Traceback" not in r.output
    assert store_bytes(old) == before
    # measuring it again with --overwrite makes the store whole (the same id)
    [again] = intervene(old, run_id, methods=["knockout"], targets=["x_to_y"], overwrite=True)
    assert again.intervention_id == legacy
    assert len(run_query(old, "heads_by_effect", {"view": "shared_keys"})) > 0


def test_the_named_queries_rank_and_filter_heads(iv_store):
    path, run_id, ids = iv_store
    ranked = run_query(path, "heads_by_effect", {"method": "zero", "view": "shared_keys"})
    assert list(ranked["rank"]) == [1, 2, 3, 4]
    both = run_query(path, "heads_by_effect", {"method": "zero"})  # one ranking per analysis
    assert len(both) == 8 and set(both.view) == {"raw", "shared_keys"}
    assert ranked.late_delta_accuracy.is_monotonic_increasing
    assert ranked.quality.notna().all() and ranked.positive_mass_share.notna().all()
    every = run_query(path, "clean_but_inert", {"min_quality": -1.0, "max_effect": 1.0})
    assert len(every) == 8  # 4 heads, 2 analyses
    none = run_query(path, "clean_but_inert", {"min_quality": 1.0, "max_effect": 0.0})
    assert len(none) <= 4
    by_point = run_query(path, "effect_by_position", {"method": "knockout", "layer": 1})
    assert len(by_point) == 2 * 2 * 8 and set(by_point.layer) == {1}


def test_a_store_without_interventions_still_connects(tiny_store):
    path, _ = tiny_store
    with connect(path) as con:
        assert con.execute("select count(*) from head_effect_summary").fetchone()[0] == 0


def test_plot_heads_maps_an_effect_column(iv_store, tmp_path):
    """`attnstore plot heads --metric` takes the effect columns: the map holds the accuracy
    each head carries under the chosen intervention; a missing one is one line."""
    from click.testing import CliRunner

    from attnstore.cli import cli

    path = iv_store[0]
    out = tmp_path / "effect.png"
    args = ["plot", "heads", "--store", str(path), "--metric", "late_delta_accuracy"]
    done = CliRunner().invoke(
        cli, [*args, "--method", "knockout", "--target", "x_to_y_pos", "--out", str(out)]
    )
    assert done.exit_code == 0, done.output
    assert out.stat().st_size > 0
    missing = CliRunner().invoke(
        cli,
        [*args, "--method", "knockout", "--target", "y_to_x", "--out", str(tmp_path / "none.png")],
    )
    assert missing.exit_code == 2 and "attnstore intervene" in missing.output


def test_clean_but_inert_decides_on_the_interval_not_the_estimate(iv_store):
    path, _, ids = iv_store
    summary = run_query(path, "intervention_effects", {"intervention_id": ids["zero", "z"]})
    widest = summary.late_delta_accuracy_upper.abs().combine(
        summary.late_delta_accuracy_lower.abs(), max
    )
    # a bound that every estimate meets but not every interval does
    m = float(summary.late_delta_accuracy.abs().max()) + 1e-9
    assert (widest > m).any()
    got = run_query(path, "clean_but_inert", {"min_quality": -1.0, "max_effect": m, "view": "raw"})
    inert = {(r.layer, r.head) for r in summary.itertuples() if widest[r.Index] <= m}
    assert {(r.layer, r.head) for r in got.itertuples()} == inert
    assert len(inert) < len(summary)  # the estimates alone would have kept every head


# --- joint and positional changes (issue 22 item 3) -------------------------------------------


@pytest.fixture(scope="module")
def joint_store(iv_store, tmp_path_factory):
    """The interventions store with zero at query positions 10..15 of every head one at a
    time, and layer 1's heads zeroed together (all positions) and alone."""
    path = _copy(iv_store[0], tmp_path_factory.mktemp("joint"))
    run_id = iv_store[1]
    [late] = intervene(path, run_id, methods=["zero"], positions="10..15", batch_size=5)
    [joint] = intervene(path, run_id, methods=["zero"], heads="L1H1,L1H0", batch_size=5)
    [one] = intervene(path, run_id, methods=["zero"], heads="L1H0", batch_size=5)
    return path, run_id, late.intervention_id, joint.intervention_id, one.intervention_id


def test_a_change_at_later_query_positions_leaves_earlier_points_exactly_alone(joint_store):
    """Query position 10 is point 5's x token: points 0..4 are computed before it."""
    path, _, late, _, _ = joint_store
    t = _prompt_effects(path, late)
    early = t[t.point < 5]
    assert (early.correct == early.base_correct).all()
    assert (early.signed_logit == early.base_signed_logit).all()
    assert (t[t.point >= 5].signed_logit != t[t.point >= 5].base_signed_logit).any()


def test_a_set_of_one_head_is_that_head_alone(joint_store):
    path, _, _, _, one = joint_store
    single = _prompt_effects(path, iv_store_zero(path))
    alone = single[(single.layer == 1) & (single["head"] == 0)].reset_index(drop=True)
    together = _prompt_effects(path, one)
    assert (together.layer == -1).all() and (together["head"] == -1).all()
    assert len(together) == 12 * 8
    np.testing.assert_allclose(together.signed_logit, alone.signed_logit, atol=1e-5)
    np.testing.assert_allclose(together.base_signed_logit, alone.base_signed_logit, atol=1e-5)


def iv_store_zero(path: Path) -> str:
    """The zero ablation of every head, one at a time, at every position."""
    found = run_query(path, "run_interventions", {"method": "zero"})
    everywhere = found.heads.isna() & (found.changed_positions == "all")
    return found[everywhere].intervention_id.iloc[0]


def test_the_additivity_gap_is_the_joint_change_minus_the_sum_of_the_single_ones(joint_store):
    path, run_id, _, joint, _ = joint_store
    gap = run_query(path, "additivity_gap", {"intervention_id": joint})
    assert len(gap) == 1
    g = gap.iloc[0]
    assert g.heads == "L1H0,L1H1" and g.changed_positions == "all"
    assert g.single_intervention_id == iv_store_zero(path)
    single = _prompt_effects(path, g.single_intervention_id)
    single = single[(single.layer == 1) & single["head"].isin([0, 1]) & (single.point >= 4)]
    together = _prompt_effects(path, joint)
    together = together[together.point >= 4]
    n = 12 * 4
    want_joint = (together.correct.astype(int) - together.base_correct.astype(int)).sum() / n
    want_sum = (single.correct.astype(int) - single.base_correct.astype(int)).sum() / n
    assert g.joint_late_delta_accuracy == pytest.approx(want_joint)
    assert g.single_late_delta_accuracy_sum == pytest.approx(want_sum)
    assert g.additivity_gap == pytest.approx(want_joint - want_sum)
    assert g.additivity_gap_lower <= g.additivity_gap <= g.additivity_gap_upper
    listed = run_query(path, "run_interventions", {"method": "zero"})
    assert set(listed.heads.dropna()) == {"L1H0,L1H1", "L1H0"}
    assert set(listed.changed_positions) == {"all", "10..15"}


def test_bad_heads_and_positions_are_one_line_and_change_nothing(joint_store, tmp_path):
    path, run_id, _, _, _ = joint_store
    before = store_bytes(path)
    runner = CliRunner()
    for args, named in [
        (["--heads", "L5H0"], "'L5H0'"),
        (["--heads", "L1H9"], "'L1H9'"),
        (["--heads", "layer1"], "'layer1'"),
        (["--heads", "L1H0,L1H0"], "'L1H0'"),
        (["--positions", "0..16"], "'0..16'"),
        (["--positions", "5..2"], "'5..2'"),
        (["--positions", "z"], "'z'"),
    ]:
        bad = runner.invoke(cli, ["intervene", "--store", str(path), "--run", run_id, *args])
        assert bad.exit_code == 2, (args, bad.output)
        lines = bad.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and named in lines[0], lines
        assert "Traceback" not in bad.output
    assert store_bytes(path) == before
