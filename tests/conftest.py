"""Shared fixtures: one tiny checkpoint and one tiny store, built once per session on CPU."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from attnstore.training import TrainConfig, train

# Ray uses the loopback address for its node (GCS, raylet, workers all bind 127.0.0.1) only when
# this is set before ray is imported; the variable's name is Ray's (issue ray-project/ray#18730).
RAY_LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

TINY = dict(task="conjunction", n_dims=5, n_points=8, n_layers=2, n_heads=2, d_model=16)
TINY_SAMPLES = 12


def pytest_configure(config):
    """Every Ray a test starts, here or in a subprocess, binds 127.0.0.1 only."""
    import os

    for k, v in RAY_LOOPBACK.items():
        os.environ.setdefault(k, v)


def store_bytes(path: Path) -> dict[str, bytes]:
    """Every file of a store folder with its bytes, the lock files (``.locks``) left out:
    equal before and after a command that must change nothing."""
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and ".locks" not in p.relative_to(path).parts
    }


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for every test that needs one (it takes seconds to start): 2 CPUs, no
    dashboard, on 127.0.0.1 only; shut down at the end of the session."""
    ray = pytest.importorskip("ray")
    ray.init(
        address="local",  # a new one, even where another Ray runs on this machine
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
    )
    yield ray
    ray.shutdown()


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


@contextlib.contextmanager
def moto_process(log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """moto's server as a subprocess bound to 127.0.0.1 on a free port, with ``env`` added to
    its environment (moto reads its settings at start): its endpoint, once it accepts
    connections; stopped on exit. A process of its own, so that serving the tests' requests
    does not compete with the tests for their process's GIL. Its log goes to ``log``."""
    import os
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's server did not start:\n{log.read_text()}") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server for the session (:func:`moto_process`), and the environment every AWS
    tool reads (AWS_ENDPOINT_URL and credentials) pointing at it, for this process and the
    subprocesses tests start; the environment restored at the end."""
    import os

    log = tmp_path_factory.mktemp("s3_server") / "log"
    with moto_process(log) as endpoint:
        env = {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}
        saved = {k: os.environ.get(k) for k in [*env, "AWS_PROFILE"]}
        os.environ.update(env)
        os.environ.pop("AWS_PROFILE", None)
        try:
            yield endpoint
        finally:
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
