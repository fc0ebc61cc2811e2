"""Patching measures what it says: clean into clean changes nothing, every head's output from
the clean run restores the clean logits, a path to every downstream component is the head's
activation patch, and the stored numbers are those of an independent implementation written
with plain forward hooks. Corruptions differ from their clean prompts as stated; bad input is
one line with nothing written."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from attnstore.checkpoint import load_checkpoint
from attnstore.cli import cli
from attnstore.corruptions import corrupt
from attnstore.extraction import extract
from attnstore.model import HeadEdit
from attnstore.patching import Receivers, head_logits, patch, path_logits, run_pass
from attnstore.queries import run_query
from attnstore.stats import resample_indices
from attnstore.store import Store
from attnstore.tasks import evaluate, sample_task
from tests.conftest import store_bytes

RTOL, ATOL = 1e-5, 1e-5  # the fused attention kernel against the explicit one


@pytest.fixture(scope="module")
def patched(tmp_path_factory, tiny_store):
    """The tiny store with an activation patch of z and the path matrix into queries."""
    src, run_id = tiny_store
    path = tmp_path_factory.mktemp("patch") / "store"
    shutil.copytree(src, path)
    act = patch(path, run_id, corruption="flip_label", batch_size=5)
    paths = patch(path, run_id, corruption="flip_label", paths=["*->*.q"], batch_size=5)
    return path, run_id, act.patch_id, paths.patch_id


@pytest.fixture(scope="module")
def model_and_prompts(tiny_checkpoint):
    model = load_checkpoint(str(tiny_checkpoint)).model.eval().requires_grad_(False)
    b = sample_task("conjunction", 6, 8, 5, seed=11)
    bad = corrupt("flip_label", "conjunction", b.x, b.y, k=0)
    assert bad.changed.any(1).all()
    t = torch.from_numpy
    return model, (t(b.x), t(b.y)), (t(bad.x), t(bad.y))


def _replicated(model, prompts, n, targets):
    x, y = prompts
    return run_pass(model, x.repeat(n, 1, 1), y.repeat(n, 1), targets)


# --- it measures what it says ----------------------------------------------------------------


@pytest.mark.parametrize("target", ["z", "q", "k", "v"])
@pytest.mark.parametrize("where", ["all", "x"])
def test_patching_clean_into_clean_changes_nothing(model_and_prompts, target, where):
    model, clean, _ = model_and_prompts
    H, L = model.cfg.n_heads, model.cfg.n_layers
    positions = torch.ones(16, dtype=torch.bool)
    if where == "x":
        positions[1::2] = False
    cp = _replicated(model, clean, H, (target,))
    out = head_logits(model, cp, cp, target, positions)
    assert torch.equal(out, cp.logits.expand(L, -1, -1))


def test_a_path_from_clean_into_clean_changes_nothing(model_and_prompts):
    model, clean, _ = model_and_prompts
    cp = _replicated(model, clean, 1, ("z",))
    B = clean[0].shape[0]
    heads = torch.zeros(B, 2, 2, 3, dtype=torch.bool)
    heads[:, 1] = True
    r = Receivers(heads, torch.ones(B, 2, dtype=torch.bool), torch.ones(B, dtype=torch.bool))
    out = path_logits(model, cp, cp, [(0, 1)] * B, r, torch.ones(16, dtype=torch.bool))
    assert torch.equal(out, cp.logits)


def test_every_head_patched_everywhere_restores_the_clean_logits_exactly(model_and_prompts):
    model, clean, corrupted = model_and_prompts
    with torch.no_grad():
        run = model(*clean, edits={})
        every = torch.ones(clean[0].shape[0], model.cfg.n_heads, dtype=torch.bool)
        edits = {layer: HeadEdit(every, z=z) for layer, z in enumerate(run.z)}
        restored = model(*corrupted, edits=edits).logits
        assert not torch.equal(model(*corrupted, edits={}).logits, run.logits)
    assert torch.equal(restored, run.logits)


def test_a_path_to_every_downstream_component_is_the_activation_patch(model_and_prompts):
    model, clean, corrupted = model_and_prompts
    H, L = model.cfg.n_heads, model.cfg.n_layers
    B = clean[0].shape[0]
    cp, bp = (_replicated(model, p, H, ("z",)) for p in (clean, corrupted))
    positions = torch.ones(16, dtype=torch.bool)
    activation = head_logits(model, cp, bp, "z", positions)  # (L, H * B, N)
    for layer in range(L):
        heads = torch.zeros(H * B, L, H, 3, dtype=torch.bool)
        heads[:, layer + 1 :] = True
        mlp = torch.zeros(H * B, L, dtype=torch.bool)
        mlp[:, layer:] = True
        every = Receivers(heads, mlp, torch.ones(H * B, dtype=torch.bool))
        senders = [(layer, h) for h in range(H) for _ in range(B)]
        path = path_logits(model, cp, bp, senders, every, positions)
        torch.testing.assert_close(path, activation[layer], rtol=RTOL, atol=ATOL)
        assert not torch.allclose(path, bp.logits)  # the patch moved something


# --- the stored numbers against plain forward hooks --------------------------------------------


def _hooked_logits(model, clean, corrupted, layer, head, positions):
    """Activation patching of one head's z with hooks: the clean input of the layer's output
    projection (every head's z side by side) is kept, and copied into the corrupted run's at
    the head's columns and the given positions."""
    dh = model.cfg.d_head
    cols = slice(head * dh, (head + 1) * dh)
    out = model.blocks[layer].attn.out
    kept = {}
    hook = out.register_forward_pre_hook(lambda m, args: kept.__setitem__("z", args[0]))
    model(*clean)
    hook.remove()

    def swap(m, args):
        z = args[0].clone()
        z[:, positions, cols] = kept["z"][:, positions, cols]
        return (z,)

    hook = out.register_forward_pre_hook(swap)
    logits = model(*corrupted).logits
    hook.remove()
    return logits


def _hooked_path(model, clean, corrupted, sender, receiver, channel):
    """Path patching with hooks: the sender's change of output (clean - corrupted z through
    its columns of the output projection) added to the receiver layer's residual stream, read
    by the receiver head's queries (keys, values) only."""
    dh, D = model.cfg.d_head, model.cfg.d_model
    s_out = model.blocks[sender[0]].attn.out
    zs = {}
    for name, prompts in (("clean", clean), ("corrupted", corrupted)):
        hook = s_out.register_forward_pre_hook(lambda m, a, n=name: zs.__setitem__(n, a[0]))
        model(*prompts)
        hook.remove()
    cols = slice(sender[1] * dh, (sender[1] + 1) * dh)
    delta = (zs["clean"] - zs["corrupted"])[..., cols] @ s_out.weight[:, cols].T
    block = model.blocks[receiver[0]]
    resid = {}
    pre = block.ln_1.register_forward_pre_hook(lambda m, a: resid.__setitem__("h", a[0]))
    offset = "qkv".index(channel) * D + receiver[1] * dh
    rcols = slice(offset, offset + dh)

    def swap(m, args, out):  # ln_1 and qkv by hand: calling them would call the hooks
        ln, qkv = block.ln_1, block.attn.qkv
        h = F.layer_norm(resid["h"] + delta, ln.normalized_shape, ln.weight, ln.bias, ln.eps)
        out = out.clone()
        out[..., rcols] = F.linear(h, qkv.weight, qkv.bias)[..., rcols]
        return out

    post = block.attn.qkv.register_forward_hook(swap)
    logits = model(*corrupted).logits
    pre.remove()
    post.remove()
    return logits


def _stored(path, patch_id):
    t = Store(path).read("patch_effects", patch_id=patch_id).to_pandas()
    return t.sort_values(["layer", "head", "receiver_layer", "receiver_head", "sample", "point"])


def _run_prompts(path, run_id, patch_id):
    s = Store(path)
    run = s.run(run_id)
    x, y = s.prompts(run)
    bad = s.read("patch_inputs", patch_id=patch_id).to_pandas().sort_values(["sample", "point"])
    return run, x, y.astype(np.float32), bad


def test_activation_patches_equal_plain_forward_hooks(patched):
    path, run_id, act_id, _ = patched
    run, x, y, bad = _run_prompts(path, run_id, act_id)
    S, N, D = x.shape
    bx = np.stack(bad.corrupted_x.to_numpy()).reshape(S, N, D).astype(np.float32)
    by = bad.corrupted_y.to_numpy().reshape(S, N).astype(np.float32)
    model = load_checkpoint(run["checkpoint"]).model.eval().requires_grad_(False)
    clean = (torch.from_numpy(x), torch.from_numpy(y))
    corrupted = (torch.from_numpy(bx), torch.from_numpy(by))
    t = _stored(path, act_id)
    everywhere = torch.ones(2 * N, dtype=torch.bool)
    with torch.no_grad():
        np.testing.assert_allclose(
            t.clean_logit.to_numpy()[: S * N], model(*clean).logits.reshape(-1), atol=ATOL
        )
        np.testing.assert_allclose(
            t.corrupted_logit.to_numpy()[: S * N], model(*corrupted).logits.reshape(-1), atol=ATOL
        )
        for (layer, head), rows in t.groupby(["layer", "head"]):
            want = _hooked_logits(model, clean, corrupted, layer, head, everywhere)
            np.testing.assert_allclose(
                rows.patched_logit.to_numpy(), want.reshape(-1).numpy(), atol=ATOL
            )


def test_path_patches_equal_plain_forward_hooks(patched):
    path, run_id, _, paths_id = patched
    run, x, y, bad = _run_prompts(path, run_id, paths_id)
    S, N, D = x.shape
    bx = np.stack(bad.corrupted_x.to_numpy()).reshape(S, N, D).astype(np.float32)
    by = bad.corrupted_y.to_numpy().reshape(S, N).astype(np.float32)
    model = load_checkpoint(run["checkpoint"]).model.eval().requires_grad_(False)
    clean = (torch.from_numpy(x), torch.from_numpy(y))
    corrupted = (torch.from_numpy(bx), torch.from_numpy(by))
    t = _stored(path, paths_id)
    pairs = t.groupby(["layer", "head", "receiver_layer", "receiver_head"])
    assert len(pairs) == 2 * 2  # L0 H0, H1 -> L1 H0, H1
    with torch.no_grad():
        for (sl, sh, rl, rh), rows in pairs:
            want = _hooked_path(model, clean, corrupted, (sl, sh), (rl, rh), "q")
            np.testing.assert_allclose(
                rows.patched_logit.to_numpy(), want.reshape(-1).numpy(), atol=ATOL
            )


def test_stored_effects_pair_each_prompt_with_its_corruption(patched):
    path, run_id, act_id, _ = patched
    run, x, y, bad = _run_prompts(path, run_id, act_id)
    S, N, D = x.shape
    # the corrupted prompt: the same x; one label flipped, the first positive, where changed
    assert (np.stack(bad.corrupted_x.to_numpy()).reshape(S, N, D) == x).all()
    by = bad.corrupted_y.to_numpy().reshape(S, N)
    changed = bad.differs.to_numpy().reshape(S, N)
    np.testing.assert_array_equal(changed, by != y)
    first_positive = np.argmax(y > 0, axis=1)
    for s in range(S):
        if (y[s] > 0).any():
            assert list(np.flatnonzero(changed[s])) == [first_positive[s]]
            assert y[s, first_positive[s]] == 1 and by[s, first_positive[s]] == -1
    t = _stored(path, act_id)
    moved = t.clean_logit != t.corrupted_logit
    assert t.normalised_effect[~moved].isna().all()
    want = (t.patched_logit - t.corrupted_logit) / (t.clean_logit - t.corrupted_logit)
    np.testing.assert_allclose(t.normalised_effect[moved], want[moved], rtol=1e-5)
    patches = Store(path).read("patches", patch_id=act_id).to_pylist()[0]
    assert patches["n_changed"] == int(changed.any(1).sum()) and patches["kind"] == "activation"


def test_the_ranking_pools_prompts_and_bootstraps_them(patched):
    path, run_id, act_id, paths_id = patched
    ranked = run_query(path, "heads_by_patching_effect", {"patch_id": act_id, "run_id": run_id})
    assert list(ranked["rank"]) == [1, 2, 3, 4]
    t = _stored(path, act_id)
    t["restored"] = (t.patched_logit.astype(float) - t.corrupted_logit) * (
        t.clean_logit.astype(float) - t.corrupted_logit
    )
    t["moved"] = (t.clean_logit.astype(float) - t.corrupted_logit) ** 2
    for _, row in ranked.iterrows():
        mine = t[(t["layer"] == row["layer"]) & (t["head"] == row["head"])]
        per = mine.groupby("sample")[["restored", "moved"]].sum()
        per = per[per.moved > 0]
        assert row.n_moved_prompts == len(per)
        np.testing.assert_allclose(row.restored_share, per.restored.sum() / per.moved.sum())
        idx = resample_indices(len(per))  # attnstore.stats: the bootstrap's draws
        ratios = per.restored.to_numpy()[idx].sum(1) / per.moved.to_numpy()[idx].sum(1)
        lower, upper = np.quantile(ratios, [0.025, 0.975])
        np.testing.assert_allclose(
            [row.restored_share_lower, row.restored_share_upper], [lower, upper]
        )
    assert ranked.restored_share.is_monotonic_decreasing
    matrix = run_query(path, "path_patching_matrix", {"patch_id": paths_id, "run_id": run_id})
    assert len(matrix) == 4 and (matrix.receiver_layer == 1).all() and (matrix.layer == 0).all()
    assert matrix.restored_share.notna().all()
    # another patch's id, or none: every head (pair) is listed, its patch columns null
    for name, other in (("heads_by_patching_effect", paths_id), ("path_patching_matrix", None)):
        empty = run_query(path, name, {"patch_id": other, "run_id": run_id})
        assert len(empty) == 4 and empty.restored_share.isna().all(), name


# --- corruptions -------------------------------------------------------------------------------


def test_swap_function_relabels_with_the_next_prompts_function():
    b = sample_task("conjunction", 5, 10, 6, seed=2)
    bad = corrupt("swap_function", "conjunction", b.x, b.y, b.weights, b.thresholds)
    order = [1, 2, 3, 4, 0]
    np.testing.assert_array_equal(
        bad.y, evaluate("conjunction", b.weights[order], b.thresholds[order], b.x)
    )
    assert (bad.x == b.x).all() and (bad.changed == (bad.y != b.y)).all()


def test_drop_literal_relabels_with_the_kth_literal_gone():
    b = sample_task("conjunction", 20, 10, 6, seed=4)
    bad = corrupt("drop_literal", "conjunction", b.x, b.y, b.weights, b.thresholds, k=0)
    for s in range(20):
        literals = np.flatnonzero(b.weights[s, 0])
        w = b.weights[s : s + 1].copy()
        if len(literals):
            w[0, 0, literals[0]] = 0
        want = evaluate("conjunction", w, b.thresholds[s : s + 1], b.x[s : s + 1])[0]
        np.testing.assert_array_equal(bad.y[s], want)
    # a dropped literal only widens a conjunction: labels go from -1 to +1, never back
    assert (bad.y >= b.y).all() and bad.changed.any()


# --- bad input ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parity_store(tmp_path_factory, tiny_checkpoint):
    path = tmp_path_factory.mktemp("parity") / "store"
    run_id = extract(
        path, checkpoint=str(tiny_checkpoint), task="parity", samples=3, seed=1, batch_size=3
    ).run_id
    return path, run_id


@pytest.mark.parametrize(
    "args, named",
    [
        (["--corruption", "flip_sign"], "flip_sign"),
        (["--corruption", "flip_label", "--target", "o"], "'o'"),
        (["--corruption", "flip_label", "--path", "L1H0->L0H1.q"], "not downstream"),
        (["--corruption", "flip_label", "--path", "L0H0->L1H0.o"], "'o'"),
        (["--corruption", "flip_label", "--path", "L0H0->L2H0.q"], "L2H0"),
        (["--corruption", "flip_label", "--path", "L0H0>L1H0"], "L0H0>L1H0"),
        (["--corruption", "flip_label", "--positions", "16"], "position 16"),
        (["--corruption", "flip_label", "--positions", "xy"], "'xy'"),
        (["--corruption", "flip_label", "--k", "99"], "k=99"),
        (["--corruption", "flip_label", "--run", "nosuchrun"], "nosuchrun"),
        (["--corruption", "flip_label", "--target", "z", "--path", "L0H0->L1H0.q"], "--target"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(patched, tmp_path, args, named):
    path, _, _, _ = patched
    store = tmp_path / "store"
    shutil.copytree(path, store)
    before = store_bytes(store)
    out = CliRunner().invoke(cli, ["patch", "--store", str(store), "--overwrite", *args])
    assert out.exit_code == 2, out.output
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and named in lines[0], lines
    assert store_bytes(store) == before


def test_a_corruption_the_task_cannot_make_is_refused(parity_store):
    path, run_id = parity_store
    before = store_bytes(path)
    out = CliRunner().invoke(
        cli, ["patch", "--store", str(path), "--run", run_id, "--corruption", "drop_literal"]
    )
    assert out.exit_code == 2, out.output
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "'parity'" in lines[0] and "drop_literal" in lines[0], lines
    assert store_bytes(path) == before


def test_the_command_prints_the_id_and_says_when_it_is_stored(patched):
    path, run_id, act_id, _ = patched
    before = store_bytes(path)
    out = CliRunner().invoke(
        cli, ["patch", "--store", str(path), "--run", run_id, "--corruption", "flip_label"]
    )
    assert out.exit_code == 0, out.output
    assert act_id in out.stdout and "already in the store" in out.stderr
    assert store_bytes(path) == before
