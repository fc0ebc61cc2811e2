"""Direct logit attribution measures what it says: the components of every prompt and point
sum to the model's logit less the read-out bias, and each equals what an independent reading
of the model, through plain forward hooks, gives."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from attnstore.attribution import attribute
from attnstore.checkpoint import load_checkpoint
from attnstore.cli import cli
from attnstore.store import Store
from attnstore.vocab import ATTRIBUTION_COMPONENTS
from tests.conftest import store_bytes

TOLERANCE = 1e-4  # |sum of the components - (logit - read-out bias)|, float32 rounding


@pytest.fixture(scope="module")
def attributed(tmp_path_factory, tiny_store):
    src, run_id = tiny_store
    path = tmp_path_factory.mktemp("dla") / "store"
    shutil.copytree(src, path)
    result = attribute(path, run_id, batch_size=5)  # 12 prompts: three batches
    rows = Store(path).read("logit_attribution", attribution_id=result.attribution_id)
    return path, run_id, result, rows.to_pandas()


def test_the_components_sum_to_the_logit_on_every_prompt_and_point(attributed):
    path, run_id, result, rows = attributed
    s = Store(path)
    run = s.run(run_id)
    model = load_checkpoint(run["checkpoint"]).model
    bias = model.read_out.bias.item()
    total = rows.groupby(["sample", "point"]).attribution.sum()
    logits = s.df("predictions", run_id=run_id).set_index(["sample", "point"]).logit
    assert len(total) == run["n_samples"] * run["n_points"]
    gap = (total - (logits.loc[total.index] - bias)).abs()
    assert gap.max() < TOLERANCE, gap.max()
    assert 0 <= result.max_abs_error < TOLERANCE
    stored = s.read("attributions", attribution_id=result.attribution_id).to_pylist()[0]
    assert stored["max_abs_error"] == result.max_abs_error
    L, H = run["n_layers"], run["n_heads"]
    assert stored["n_components"] == 4 + 3 * L + L * H  # 3 embeddings, final norm bias
    assert set(rows.component) == set(ATTRIBUTION_COMPONENTS)


def test_each_component_equals_a_reading_through_plain_forward_hooks(attributed):
    """Independently: the plain forward (the fused attention kernel) with hooks on each
    layer's output projection (its input is every head's z side by side), each MLP and the
    final LayerNorm; the LayerNorm applied by hand with the scale of its own input."""
    path, run_id, result, rows = attributed
    s = Store(path)
    run = s.run(run_id)
    model = load_checkpoint(run["checkpoint"]).model.eval().requires_grad_(False)
    x, y = s.prompts(run)
    x, y = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))
    seen: dict[str, torch.Tensor] = {}
    hooks = []
    for i, block in enumerate(model.blocks):
        hooks.append(
            block.attn.out.register_forward_pre_hook(
                lambda mod, args, i=i: seen.__setitem__(f"z{i}", args[0])
            )
        )
        hooks.append(
            block.mlp.register_forward_hook(
                lambda mod, args, out, i=i: seen.__setitem__(f"mlp{i}", out)
            )
        )
    hooks.append(
        model.ln_f.register_forward_hook(lambda mod, args, out: seen.__setitem__("resid", args[0]))
    )
    with torch.no_grad():
        model(x, y)
    for h in hooks:
        h.remove()
    resid = seen["resid"][:, ::2].double()  # (S, N, d_model)
    sigma = (resid.var(-1, unbiased=False) + model.ln_f.eps).sqrt()
    gamma = model.ln_f.weight.double()
    w = model.read_out.weight[0].double()

    def logit_of(c):  # a component's (S, N, d_model) write, through the frozen LayerNorm
        c = c.double()
        return ((c - c.mean(-1, keepdim=True)) / sigma[..., None] * gamma) @ w

    H, dh = run["n_heads"], run["d_head"]
    expected = {}
    for layer, block in enumerate(model.blocks):
        z = seen[f"z{layer}"][:, ::2]  # (S, N, d_model): heads side by side
        for head in range(H):
            cols = slice(head * dh, (head + 1) * dh)
            write = z[..., cols] @ block.attn.out.weight[:, cols].T
            expected["head", layer, head] = logit_of(write)
        mlp = seen[f"mlp{layer}"][:, ::2] - block.mlp.proj.bias
        expected["mlp", layer, -1] = logit_of(mlp)
    by = rows.set_index(["component", "layer", "head"]).sort_index()
    S, N = y.shape
    for key, want in expected.items():
        got = by.loc[key].sort_values(["sample", "point"]).attribution.to_numpy()
        np.testing.assert_allclose(got.reshape(S, N), want.numpy(), atol=1e-5, err_msg=str(key))
    beta = (w @ model.ln_f.bias.double()).item()
    final = by.loc[("final_norm_bias", -1, -1)].attribution.to_numpy()
    np.testing.assert_allclose(final, beta, rtol=1e-6)


def test_the_command_prints_the_id_and_says_when_it_is_stored(attributed):
    path, run_id, result, _ = attributed
    before = store_bytes(path)
    out = CliRunner().invoke(cli, ["attribute", "--store", str(path), "--run", run_id])
    assert out.exit_code == 0, out.output
    assert result.attribution_id in out.stdout and "already in the store" in out.stderr
    assert store_bytes(path) == before


@pytest.mark.parametrize(
    "args, named",
    [
        (["--run", "nosuchrun"], "nosuchrun"),
        (["--device", "tpu"], "tpu"),
        (["--batch-size", "0"], "batch_size=0"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(attributed, tmp_path, args, named):
    path, _, _, _ = attributed
    store = tmp_path / "store"
    shutil.copytree(path, store)
    before = store_bytes(store)
    out = CliRunner().invoke(cli, ["attribute", "--store", str(store), "--overwrite", *args])
    assert out.exit_code == 2, out.output
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and named in lines[0], lines
    assert store_bytes(store) == before
