"""The model: shapes, causality, and the two attention paths computing one function."""

from __future__ import annotations

import pytest
import torch

from attnstore.errors import ConfigError
from attnstore.model import InContextModel, ModelConfig


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return InContextModel(ModelConfig(n_dims=4, n_ctx=12, n_layers=2, n_heads=2, d_model=8)).eval()


def _xy(b=3, n=6, d=4):
    g = torch.Generator().manual_seed(0)
    return (
        torch.randint(0, 2, (b, n, d), generator=g) * 2 - 1.0,
        torch.randint(0, 2, (b, n), generator=g) * 2 - 1.0,
    )


def test_attention_is_causal_and_row_stochastic(model):
    x, y = _xy()
    out = model(x, y, return_attn=True)
    logits, attns = out.logits, out.attention
    assert logits.shape == (3, 6)
    assert len(attns) == 2
    for a in attns:
        assert a.shape == (3, 2, 12, 12)  # (batch, head, query_pos, key_pos)
        torch.testing.assert_close(a.sum(-1), torch.ones(3, 2, 12))
        assert torch.all(a.triu(diagonal=1) == 0)


def test_fused_and_explicit_attention_agree(model):
    x, y = _xy()
    with torch.no_grad():
        torch.testing.assert_close(
            model(x, y).logits, model(x, y, return_attn=True).logits, atol=1e-6, rtol=0
        )


def test_prediction_of_y_i_ignores_y_i_and_later(model):
    x, y = _xy()
    y2 = y.clone()
    y2[:, 3:] *= -1
    with torch.no_grad():
        torch.testing.assert_close(model(x, y).logits[:, :4], model(x, y2).logits[:, :4])


def test_too_many_points(model):
    x, y = _xy(n=7)
    with pytest.raises(ConfigError, match="n_points=7"):
        model(x, y)


@pytest.mark.parametrize("field,value", [("n_dims", 0), ("n_heads", 3), ("n_ctx", 7)])
def test_bad_config(field, value):
    args = dict(n_dims=4, n_ctx=12, n_layers=2, n_heads=2, d_model=8) | {field: value}
    with pytest.raises(ConfigError, match=str(value)):
        ModelConfig(**args)
