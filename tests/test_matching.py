"""Matched heads across trainings: a model whose heads are permuted within each layer computes
the same function, and the matching must find the permutation (cost ~0, positive margins); a
model matched to itself is the identity at cost 0; the cost is the mean total variation
distance of the model's own attention; heads_across_runs with matched=true reads side b's
heads as side a's; bad input is one line with nothing stored."""

from __future__ import annotations

import copy
import html
import re
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from attnstore.analysis.run import analyze
from attnstore.checkpoint import load_checkpoint, save_checkpoint
from attnstore.cli import cli
from attnstore.errors import QueryError
from attnstore.extraction import extract
from attnstore.matching import match
from attnstore.queries import query, sql
from attnstore.report import build_report
from attnstore.store import Store
from tests.conftest import store_bytes

# Per layer of the bundled model (3 layers x 4 heads): head h of the permuted model is head
# PERMS[layer][h] of the bundled one.
PERMS = [[1, 2, 3, 0], [3, 2, 1, 0], [0, 1, 3, 2]]
SAMPLES = 6
# The permuted model computes each head as the bundled one does, but its output projection
# sums the heads in another order: float32 rounding reaches the later layers' rows (observed
# costs about 2e-7), far below any real difference between heads (0.2 and up here).
COST_TOL = 1e-5


def permute_heads(model, perms):
    """A copy of ``model`` whose layer l holds its heads in the order ``perms[l]``: each head's
    slices of the query, key and value weights and biases, and the output projection's input
    columns, moved together, so that it computes the same function."""
    out = copy.deepcopy(model)
    D, dh = out.cfg.d_model, out.cfg.d_head
    with torch.no_grad():
        for block, perm in zip(out.blocks, perms, strict=True):
            cols = torch.cat([torch.arange(h * dh, (h + 1) * dh) for h in perm])  # (d_model,)
            qkv = torch.cat([cols + i * D for i in range(3)])  # q, k, v blocks alike
            block.attn.qkv.weight.copy_(block.attn.qkv.weight[qkv].clone())
            block.attn.qkv.bias.copy_(block.attn.qkv.bias[qkv].clone())
            block.attn.out.weight.copy_(block.attn.out.weight[:, cols].clone())
    return out


@pytest.fixture(scope="module")
def pair(tmp_path_factory, tiny_checkpoint):
    """A store holding the bundled model (run a) and its head-permuted copy, trained 'with
    another seed' (its card says train.seed 99: another lineage, another training seed) on
    the same prompts (run b), both analysed; the bundled model on other prompts (other) and
    the tiny model of another shape (tiny), not analysed. The matching of b to a is stored."""
    tmp = tmp_path_factory.mktemp("matching")
    loaded = load_checkpoint("default")
    card = copy.deepcopy(loaded.card)
    card["train"]["seed"] = 99
    save_checkpoint(permute_heads(loaded.model, PERMS), card, tmp / "permuted")
    path = tmp / "store"
    a = extract(path, checkpoint="default", samples=SAMPLES, seed=1).run_id
    b = extract(path, checkpoint=str(tmp / "permuted"), samples=SAMPLES, seed=1).run_id
    for run in (a, b):
        analyze(path, run, view="shared_keys")
    other = extract(path, checkpoint="default", samples=SAMPLES, seed=2).run_id
    tiny = extract(path, checkpoint=str(tiny_checkpoint), samples=SAMPLES, seed=1).run_id
    result = match(path, a, b)
    return {"path": path, "a": a, "b": b, "other": other, "tiny": tiny, "result": result}


def _matched(pairs) -> dict[tuple[int, int], dict]:
    """(layer, head_b) -> the matched row."""
    rows = [r for r in pairs.to_pylist() if r["matched"]]
    return {(r["layer"], r["head_b"]): r for r in rows}


def test_the_matching_recovers_a_permutation_of_the_heads(pair):
    r = pair["result"]
    assert not r.existed
    matched = _matched(r.pairs)
    assert len(matched) == 3 * 4 and r.pairs.num_rows == 3 * 4 * 4
    for (layer, head_b), row in matched.items():
        assert row["head_a"] == PERMS[layer][head_b], (layer, head_b)
        assert 0 <= row["cost"] < COST_TOL
        assert row["margin"] > 0.1  # every head is far closer to its partner than to others
        assert row["null_cost"] > 0.3
    unmatched = [row for row in r.pairs.to_pylist() if not row["matched"]]
    assert all(row["margin"] is None and row["null_cost"] is None for row in unmatched)
    assert min(row["cost"] for row in unmatched) > 0.1
    # what is stored is what was returned
    stored = Store(pair["path"]).read("head_matches", match_id=r.match_id)
    stored = stored.drop_columns(["match_id"]).sort_by(
        [("layer", "ascending"), ("head_a", "ascending"), ("head_b", "ascending")]
    )
    assert stored.equals(r.pairs)


def test_the_cost_is_the_mean_total_variation_of_the_models_own_attention(pair):
    """Recomputed from the two models' forward passes on the runs' own prompts, not from the
    store: for every pair of heads, the mean over samples and query positions of half the L1
    distance between their rows."""
    s = Store(pair["path"])
    runs = {k: s.run(pair[k]) for k in ("a", "b")}
    x, y = s.prompts(runs["a"])
    attention = {}
    for k, run in runs.items():
        model = load_checkpoint(run["checkpoint"]).model
        with torch.no_grad():
            out = model(torch.from_numpy(x), torch.from_numpy(y.astype(np.float32)), True)
        attention[k] = [t.double().numpy() for t in out.attention]  # (S, H, T, T) per layer
    costs = {
        (row["layer"], row["head_a"], row["head_b"]): row["cost"]
        for row in pair["result"].pairs.to_pylist()
    }
    for (layer, ha, hb), cost in costs.items():
        rows_a = attention["a"][layer][:, ha]
        rows_b = attention["b"][layer][:, hb]
        want = 0.5 * np.abs(rows_a - rows_b).sum(-1).mean()
        assert cost == pytest.approx(want, abs=1e-6), (layer, ha, hb)


def test_a_model_matched_to_itself_is_the_identity_at_cost_0(pair, tmp_path):
    path = tmp_path / "store"
    shutil.copytree(pair["path"], path)
    r = match(path, pair["a"], pair["a"])
    for (layer, head_b), row in _matched(r.pairs).items():
        assert row["head_a"] == head_b and row["cost"] == 0.0, (layer, head_b)
        assert row["margin"] > 0.1
    # the same store gives the same rows; a second match writes nothing
    again = match(path, pair["a"], pair["a"], overwrite=True)
    assert again.match_id == r.match_id and again.pairs.equals(r.pairs)
    before = store_bytes(path)
    assert match(path, pair["a"], pair["a"]).existed
    assert store_bytes(path) == before


def test_the_command_prints_the_matching_and_the_store_verifies(pair, tmp_path):
    path = tmp_path / "store"
    shutil.copytree(pair["path"], path)
    args = ["--store", str(path), "--run-a", pair["a"], "--run-b", pair["b"], "--samples", "4"]
    res = CliRunner().invoke(cli, ["match", *args])
    assert res.exit_code == 0, res.output
    header, *rows, last = res.output.strip().splitlines()
    assert header.split()[:4] == ["layer", "head_b", "->", "head_a"]
    assert len(rows) == 12 and Store(path).has("match", last)
    for line in rows:
        layer, head_b, arrow, head_a, cost, margin, _ = line.split()
        assert arrow == "->" and int(head_a) == PERMS[int(layer)][int(head_b)]
        assert float(cost) == 0 and float(margin) > 0
    assert Store(path).read("matchings", match_id=last).column("n_samples")[0].as_py() == 4
    Store(path).verify(deep=True)
    res = CliRunner().invoke(cli, ["verify", "--store", str(path), "--deep"])
    assert res.exit_code == 0, res.output
    again = CliRunner().invoke(cli, ["match", *args])
    assert again.exit_code == 0 and "already in the store" in again.output


@pytest.mark.parametrize(
    "case, needles",
    [
        ("unknown", ["unknown run 'feedfacefeedface'"]),
        ("prompts", ["different prompts", "same --seed and --samples"]),
        ("shape", ["differ in shape", "3 layers x 4 heads", "2 layers x 2 heads"]),
        ("samples", ["--samples 7", "accepted: 1..6"]),
        ("zero", ["--samples 0", "accepted: 1..6"]),
    ],
)
def test_bad_input_is_one_line_and_stores_nothing(pair, case, needles):
    a = pair["a"]
    b = {
        "unknown": "feedfacefeedface",
        "prompts": pair["other"],
        "shape": pair["tiny"],
        "samples": pair["b"],
        "zero": pair["b"],
    }[case]
    extra = {"samples": ["--samples", "7"], "zero": ["--samples", "0"]}.get(case, [])
    before = store_bytes(pair["path"])
    res = CliRunner().invoke(
        cli, ["match", "--store", str(pair["path"]), "--run-a", a, "--run-b", b, *extra]
    )
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert store_bytes(pair["path"]) == before


def test_head_matches_gives_the_stored_matching(pair):
    df = query(pair["path"], "head_matches", run_b=pair["b"], run_a=pair["a"])
    assert len(df) == 3 * 4 * 4 and set(df.match_id) == {pair["result"].match_id}
    rows = df[df.matched]
    assert [PERMS[r.layer][r.head_b] for r in rows.itertuples()] == list(rows.head_a)
    assert (rows.cost < COST_TOL).all() and (rows.margin > 0).all()
    assert df[~df.matched].margin.isna().all()
    # a run with no matching: every pair of its heads, the matching's columns null
    none = query(pair["path"], "head_matches", run_b=pair["other"])
    assert len(none) == 48 and none.match_id.isna().all() and none.cost.isna().all()


def test_heads_across_runs_compares_matched_heads(pair):
    """Unmatched, the permuted heads differ; matched, each of side b's heads is read as side
    a's head it computes, and the differences vanish (float rounding only)."""
    sides = dict(train_seed_a=0, train_seed_b=99, seed_a=1, seed_b=1)
    for metric in ("lift", "quality"):
        plain = query(pair["path"], "heads_across_runs", metric=metric, **sides)
        assert plain.difference.abs().max() > 0.1
        assert all(list(h) == [head] for h, head in zip(plain.heads_b, plain["head"], strict=True))
        matched = query(pair["path"], "heads_across_runs", metric=metric, matched=True, **sides)
        assert len(matched) == len(plain) == 3 * 4 * 2
        assert matched.difference.abs().max() < 1e-5, metric
        for row in matched.itertuples():
            (stored,) = row.heads_b
            assert PERMS[row.layer][stored] == row.head
            assert list(row.match_ids_b) == [pair["result"].match_id]
    # either way round: side a the permuted training, side b the bundled one
    back = query(
        pair["path"],
        "heads_across_runs",
        metric="lift",
        matched=True,
        train_seed_a=99,
        train_seed_b=0,
        seed_a=1,
        seed_b=1,
    )
    assert back.difference.abs().max() < 1e-5


def test_heads_across_runs_refuses_a_side_with_no_matching(pair):
    """Side b the bundled model on other prompts (another lineage), never matched to side a's
    runs: refused in one line naming the command that makes the matching."""
    sides = dict(train_seed_a=0, seed_a=1, train_seed_b=0, seed_b=2)
    with pytest.raises(QueryError, match="no stored matching") as e:
        query(pair["path"], "heads_across_runs", metric="lift", matched=True, **sides)
    assert f"attnstore match --run-a {pair['a']} --run-b {pair['other']}" in str(e.value)
    assert len(str(e.value).splitlines()) == 1
    # unmatched, the same sides compare as they always did
    assert len(query(pair["path"], "heads_across_runs", metric="lift", **sides)) == 24


def test_the_report_builds_on_a_store_holding_a_matching(tiny_analysed_store, tmp_path):
    """Without a matching, and with one of a run to itself (one training: nothing to compare
    across seeds), the index page has no section across training seeds."""
    path = tmp_path / "store"
    shutil.copytree(tiny_analysed_store[0], path)
    run = tiny_analysed_store[1]
    for matched in (False, True):
        if matched:
            match(path, run, run)
            Store(path).verify(deep=True)
        out = tmp_path / f"r{matched}"
        res = CliRunner().invoke(cli, ["report", "--store", str(path), "--out", str(out)])
        assert res.exit_code == 0, res.output
        assert "Across training seeds" not in (out / "index.html").read_text()


def _seed_rows(page: str) -> list[list[str]]:
    """The cells of the index page's table across training seeds, as text."""
    section = page.split("<h2>Across training seeds</h2>", 1)[1].split("</table>", 1)[0]
    body = section.split("<tbody>", 1)[1]
    return [
        [html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", body)
    ]


def test_the_report_compares_matched_heads_across_training_seeds(pair, tmp_path):
    """The index page's section holds query matched_emergence's rows of the report's run's
    task and prompt seed at the last common step, for positive_mass_share and quality: the
    mean over seeds [t interval], min, max, and each training's own head (the permuted
    training's the permutation's)."""
    out = build_report(pair["path"], tmp_path / "r", run_id=pair["a"], n_workers=1)
    rows = _seed_rows(out.index.read_text())
    want = {}
    for metric in ("positive_mass_share", "quality"):
        df = query(pair["path"], "matched_emergence", metric=metric, seed=1)
        df = df[df.train_step == df.train_step.max()]
        assert (df.n_seeds == 2).all()
        for r in df.itertuples():
            want[(r.layer, r.head, r.query_kind, metric)] = r
    assert len(rows) == len(want) == 2 * 3 * 4 * 2
    lineage = dict(sql(pair["path"], "select run_id, lineage from run_lineages").values.tolist())
    for cells in rows:
        layer, head, kind, metric, step, n, estimate, low, high, heads = cells
        r = want[(int(layer), int(head), kind, metric)]
        assert (int(step), int(n)) == (r.train_step, 2)
        mean, lower, upper = map(float, re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", estimate).groups())
        for got, value in [
            (mean, r.seed_mean),
            (lower, r.seed_lower),
            (upper, r.seed_upper),
            (float(low), r.seed_min),
            (float(high), r.seed_max),
        ]:
            assert got == pytest.approx(value, abs=1e-3), (cells, value)
        own = dict(re.findall(r"(\S+) \(train_seed \d+\): head (\d+)", heads))
        assert int(own[lineage[pair["a"]]]) == r.head
        assert PERMS[r.layer][int(own[lineage[pair["b"]]])] == r.head


def test_matched_emergence_reads_every_step_through_one_matching(pair, tmp_path):
    """Each training gets an earlier step 4000 (the bundled weights scaled by 0.9, and their
    head-permuted copy: the same lineages, other weights); the one matching of the final runs
    renames the permuted training's heads at both steps, so the two seeds agree on every
    reference head at every step, and each training's value is head_emergence's."""
    path = tmp_path / "store"
    shutil.copytree(pair["path"], path)
    loaded = load_checkpoint("default")
    earlier = copy.deepcopy(loaded.model)
    with torch.no_grad():
        for p in earlier.parameters():
            p.mul_(0.9)
    for name, model, seed in [("a", earlier, 0), ("b", permute_heads(earlier, PERMS), 99)]:
        card = copy.deepcopy(loaded.card) | {"step": 4000}
        card["train"]["seed"] = seed
        save_checkpoint(model, card, tmp_path / f"{name}-4000")
        extract(path, checkpoint=str(tmp_path / f"{name}-4000"), samples=SAMPLES, seed=1)
    lineage = dict(sql(path, "select run_id, lineage from run_lineages").values.tolist())
    df = query(path, "matched_emergence", metric="lift", seed=1, lineage=lineage[pair["a"]])
    assert sorted(set(df.train_step)) == [4000, 8000] and len(df) == 2 * 3 * 4 * 2
    assert (df.reference_lineage == lineage[pair["a"]]).all()
    assert (df.n_seeds == 2).all() and all(list(s) == [0, 99] for s in df.train_seeds)
    assert ((df.seed_max - df.seed_min) < 1e-5).all()
    assert all(list(lo) == [lineage[pair["tiny"]]] for lo in df.left_out)
    for row in df.itertuples():
        own = {m["lineage"]: m["head"] for m in row.matched_heads}
        assert own[lineage[pair["a"]]] == row.head
        assert PERMS[row.layer][own[lineage[pair["b"]]]] == row.head
    single = query(path, "head_emergence", metric="lift", lineage=lineage[pair["a"]])
    got = df.set_index(["layer", "head", "query_kind", "train_step"]).seed_mean
    want = single.set_index(["layer", "head", "query_kind", "train_step"]).value
    assert np.allclose(got.sort_index(), want.sort_index(), atol=1e-5)
