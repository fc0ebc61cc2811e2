"""Shared fixtures: one tiny checkpoint and one tiny store, built once per session on CPU."""

from __future__ import annotations

import pytest

from attnstore.training import TrainConfig, train

TINY = dict(task="conjunction", n_dims=5, n_points=8, n_layers=2, n_heads=2, d_model=16)
TINY_SAMPLES = 12


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A 2-layer, 2-head model trained for a few steps: enough to have real, varied attention."""
    out = tmp_path_factory.mktemp("tiny_checkpoint")
    train(TrainConfig(**TINY, steps=30, lr=3e-3, eval_samples=50), out, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory, tiny_checkpoint):
    """A store holding one extraction of the tiny checkpoint (no analysis)."""
    from attnstore.extraction import extract

    path = tmp_path_factory.mktemp("tiny_store")
    result = extract(
        path, checkpoint=str(tiny_checkpoint), samples=TINY_SAMPLES, seed=3, batch_size=5
    )
    return path, result.run_id


@pytest.fixture(scope="session")
def tiny_analysed_store(tmp_path_factory, tiny_store):
    """A copy of the tiny store with two analyses (views raw and shared_keys, torch backend).
    Read-only for tests: copy it before writing."""
    import shutil

    from attnstore.analysis.run import analyze

    src, run_id = tiny_store
    path = tmp_path_factory.mktemp("tiny_analysed") / "store"
    shutil.copytree(src, path)
    raw = analyze(path, run_id, view="raw").analysis_id
    shared = analyze(path, run_id, view="shared_keys").analysis_id
    return path, run_id, {"raw": raw, "shared_keys": shared}
