"""Loading checkpoints: attnstore's own, incontext-bool's, and every way that can go wrong."""

from __future__ import annotations

import pytest
import torch
import yaml

from attnstore.checkpoint import load_checkpoint, save_checkpoint
from attnstore.errors import CheckpointError
from attnstore.model import InContextModel, ModelConfig

N_DIMS, N_POINTS, N_LAYERS, N_HEADS, D_MODEL = 5, 7, 2, 4, 32


class _IncontextBoolSAN(torch.nn.Module):
    """The incontext-bool 'san' model as that code builds it, around a Hugging Face GPT2Model."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2Model

        cfg = GPT2Config(
            n_positions=2 * N_POINTS,
            n_embd=D_MODEL,
            n_layer=N_LAYERS,
            n_head=N_HEADS,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            use_cache=False,
        )
        cfg._attn_implementation = "eager"
        self._read_in = torch.nn.Linear(N_DIMS, D_MODEL)
        self._backbone = GPT2Model(cfg)
        self._read_out = torch.nn.Linear(D_MODEL, 1)

    def forward(self, xs, ys):
        b, n, d = xs.shape
        ys_wide = torch.cat((ys.view(b, n, 1), torch.zeros(b, n, d - 1)), dim=2)
        zs = torch.stack((xs, ys_wide), dim=2).view(b, 2 * n, d)
        out = self._backbone(inputs_embeds=self._read_in(zs), output_attentions=True)
        return self._read_out(out.last_hidden_state)[:, ::2, 0], out.attentions


def _write_config(path, **overrides):
    raw = {
        "family": "san",
        "n_dims": N_DIMS,
        "n_positions": N_POINTS,
        "n_embd": D_MODEL,
        "n_layer": N_LAYERS,
        "n_head": N_HEADS,
        **overrides,
    }
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def hf_model():
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = _IncontextBoolSAN().eval()
    # Random, non-trivial LayerNorm parameters so the test also checks them.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def _inputs():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 2, (3, N_POINTS, N_DIMS), generator=g).float() * 2 - 1
    y = torch.randint(0, 2, (3, N_POINTS), generator=g).float() * 2 - 1
    return x, y


@pytest.mark.parametrize("layout", ["model_N.pt", "state.pt"])
def test_incontext_bool_checkpoint_is_the_same_function(hf_model, tmp_path, layout):
    state = hf_model.state_dict()
    path = tmp_path / layout
    torch.save(
        state if layout == "model_N.pt" else {"model_state_dict": state, "train_step": 3}, path
    )
    cfg = _write_config(tmp_path / "config.yaml")
    loaded = load_checkpoint(path, model_config=cfg)
    assert loaded.source == "incontext-bool"
    x, y = _inputs()
    with torch.no_grad():
        ref_pred, ref_attn = hf_model(x, y)
        out = loaded.model(x, y, return_attn=True)
        pred, attn = out.logits, out.attention
    torch.testing.assert_close(pred, ref_pred, atol=1e-5, rtol=0)
    assert len(attn) == N_LAYERS
    for a, r in zip(attn, ref_attn, strict=True):
        assert a.shape == (3, N_HEADS, 2 * N_POINTS, 2 * N_POINTS)
        torch.testing.assert_close(a, r, atol=1e-5, rtol=0)


def test_nested_model_config_is_read(hf_model, tmp_path):
    path = tmp_path / "model_5.pt"
    torch.save(hf_model.state_dict(), path)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"model": yaml.safe_load(_write_config(cfg).read_text())}))
    assert load_checkpoint(path, model_config=cfg).config.n_heads == N_HEADS


def test_own_checkpoint_round_trips(tmp_path):
    torch.manual_seed(0)
    model = InContextModel(ModelConfig(N_DIMS, 2 * N_POINTS, N_LAYERS, N_HEADS, D_MODEL))
    save_checkpoint(model, {"task": "conjunction"}, tmp_path / "ck")
    loaded = load_checkpoint(tmp_path / "ck")
    assert loaded.card == {"task": "conjunction"}
    assert len(loaded.sha256) == 64
    x, y = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x, y).logits, model.eval()(x, y).logits)


def test_default_checkpoint_loads():
    loaded = load_checkpoint("default")
    assert loaded.config.n_layers >= 3 and loaded.config.n_heads >= 4
    assert loaded.card["task"] == "conjunction"


# --- bad input ----------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("just some text")
    with pytest.raises(CheckpointError, match="not a checkpoint") as err:
        load_checkpoint(bad, model_config=_write_config(tmp_path / "c.yaml"))
    assert "weights_only" not in str(err.value)  # never torch's advice to unpickle


def test_pickled_code_is_never_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("raise SystemExit('executed')",))

    bad = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, bad)
    with pytest.raises(CheckpointError, match="never unpickles code") as err:
        load_checkpoint(bad, model_config=_write_config(tmp_path / "c.yaml"))
    assert "weights_only=False" not in str(err.value)  # never torch's advice to unpickle


def test_state_dict_without_config(hf_model, tmp_path):
    path = tmp_path / "model_1.pt"
    torch.save(hf_model.state_dict(), path)
    with pytest.raises(CheckpointError, match="--model-config"):
        load_checkpoint(path)


def test_shapes_contradict_config(hf_model, tmp_path):
    path = tmp_path / "model_1.pt"
    torch.save(hf_model.state_dict(), path)
    cfg = _write_config(tmp_path / "config.yaml", n_dims=N_DIMS + 1)
    with pytest.raises(CheckpointError, match="_read_in|read_in.weight"):
        load_checkpoint(path, model_config=cfg)


def test_family_other_than_san(hf_model, tmp_path):
    path = tmp_path / "model_1.pt"
    torch.save(hf_model.state_dict(), path)
    cfg = _write_config(tmp_path / "config.yaml", family="lstm")
    with pytest.raises(CheckpointError, match="'lstm'"):
        load_checkpoint(path, model_config=cfg)


# --- hostile or broken attnstore checkpoints ---------------------------------------------------


def _saved(tmp_path, card=None):
    model = InContextModel(ModelConfig(N_DIMS, 2 * N_POINTS, N_LAYERS, N_HEADS, D_MODEL))
    save_checkpoint(model, card or {"task": "conjunction"}, tmp_path)
    return model


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not readable JSON"),
        ("[1, 2]", "holds a list; expected a JSON object"),
        ('"card"', "holds a str"),
    ],
)
def test_card_that_is_not_a_json_object(tmp_path, text, message):
    _saved(tmp_path)
    (tmp_path / "card.json").write_text(text)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path)


def _resave(tmp_path, tensors, config):
    import json

    from safetensors.torch import save_file

    meta = {"attnstore": json.dumps({"format": "attnstore-model-v1", "config": config})}
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata=meta)


def test_metadata_with_an_unknown_key(tmp_path):
    model = _saved(tmp_path)
    config = {**model.cfg.to_dict(), "n_experts": 8}
    _resave(tmp_path, {k: v.contiguous() for k, v in model.state_dict().items()}, config)
    with pytest.raises(CheckpointError, match="expected the keys n_dims, n_ctx"):
        load_checkpoint(tmp_path)


def test_config_too_large_to_allocate_is_refused_before_allocating(tmp_path):
    model = _saved(tmp_path)
    config = {**model.cfg.to_dict(), "n_layers": 4096, "d_model": 65536}
    _resave(tmp_path, {k: v.contiguous() for k, v in model.state_dict().items()}, config)
    with pytest.raises(CheckpointError, match="GiB, more than this machine's"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_that_are_not_finite_are_refused_naming_the_tensor(tmp_path, bad):
    model = _saved(tmp_path)
    tensors = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    tensors["blocks.1.attn.qkv.weight"][0, 3] = bad
    _resave(tmp_path, tensors, model.cfg.to_dict())
    with pytest.raises(CheckpointError, match=r"blocks\.1\.attn\.qkv\.weight holds 1 NaN"):
        load_checkpoint(tmp_path)


def test_model_config_that_is_not_utf8_or_not_yaml(hf_model, tmp_path):
    path = tmp_path / "model_1.pt"
    torch.save(hf_model.state_dict(), path)
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe n_dims: 5")
    with pytest.raises(CheckpointError, match="is not UTF-8 text"):
        load_checkpoint(path, model_config=bad)
    bad.write_text("n_dims: [5\nn_layer: 2\n")
    with pytest.raises(CheckpointError, match="is not valid YAML at line") as err:
        load_checkpoint(path, model_config=bad)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="is not a file"):
        load_checkpoint(path, model_config=tmp_path)


def test_empty_checkpoint_is_refused():
    with pytest.raises(CheckpointError, match="the checkpoint is empty"):
        load_checkpoint("")


def _upload(folder, bucket, prefix):
    import boto3

    s3 = boto3.client("s3")
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        s3.upload_file(str(f), bucket, f"{prefix}/{f.relative_to(folder).as_posix()}")


def test_a_checkpoint_in_an_object_store_is_the_same_model(s3_bucket, tmp_path, monkeypatch):
    """A training folder in S3: its steps listed from the bucket, each step and the final model
    loaded through the local cache with the bytes (and so the identity) of the local files, a
    second load reusing the copy; a URL holding no model is one line."""
    from attnstore.checkpoint import (
        CACHE_ENV,
        WEIGHTS_FILE,
        save_step,
        training_steps,
        url_training_steps,
    )

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    model = InContextModel(ModelConfig(N_DIMS, 2 * N_POINTS, N_LAYERS, N_HEADS, D_MODEL))
    folder = tmp_path / "trained"
    save_checkpoint(model, {"format": "attnstore-card-v1", "step": 30}, folder)
    for step in (0, 10):
        save_step(model, {"format": "attnstore-card-v1", "step": step}, folder, step)
    _upload(folder, s3_bucket, "runs/seed-1")
    url = f"s3://{s3_bucket}/runs/seed-1"
    steps = url_training_steps(url)
    assert [s for s, _ in steps] == [s for s, _ in training_steps(folder)] == [0, 10]
    assert steps[1][1] == f"{url}/steps/step-00000010"
    local = load_checkpoint(folder)
    remote = load_checkpoint(url)
    assert remote.sha256 == local.sha256 and remote.card == local.card
    assert load_checkpoint(steps[0][1]).card["step"] == 0
    assert load_checkpoint(f"{url}/{WEIGHTS_FILE}").sha256 == local.sha256
    copies = sorted((tmp_path / "cache").iterdir())
    load_checkpoint(url)
    assert sorted((tmp_path / "cache").iterdir()) == copies  # reused, not copied again
    for missing in (f"s3://{s3_bucket}/nothing-here", f"s3://{s3_bucket}/runs/seed-1/steps"):
        with pytest.raises(CheckpointError, match="does not exist") as err:
            load_checkpoint(missing)
        assert "\n" not in str(err.value)
