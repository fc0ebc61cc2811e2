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


# --- an S3 API on 127.0.0.1 ---------------------------------------------------------------------

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server in this process, bound to 127.0.0.1 only, and the environment every AWS
    tool reads (AWS_ENDPOINT_URL and credentials) pointing at it, for this process and the
    subprocesses tests start; stopped and the environment restored at the end."""
    import os
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {**S3_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {k: os.environ.get(k) for k in [*env, "AWS_PROFILE"]}
    os.environ.update(env)
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield env["AWS_ENDPOINT_URL"]
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server, request):
    """A new, empty bucket on the test server: its name."""
    import re

    import boto3

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-b"
    name = f"t{abs(hash(request.node.nodeid)) % 10**8}-{name}"[:63]
    boto3.client("s3").create_bucket(Bucket=name)
    return name
