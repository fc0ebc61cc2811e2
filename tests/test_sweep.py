"""attnstore sweep: items, resumability, failures, bad input, and Ray against the local executor."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from attnstore.checkpoint import CACHE_ENV
from attnstore.cli import cli
from attnstore.schema import TABLES
from attnstore.store import Store
from attnstore.sweep import make_spec, run_sweep
from tests.conftest import TINY

VOLATILE = {"created_at", "command"}  # differ between any two runs of the same work


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    """The tiny model's recipe with --save-every: a training folder of steps 10 and 20."""
    from attnstore.training import TrainConfig, train

    out = tmp_path_factory.mktemp("sweep_training") / "tiny"
    train(
        TrainConfig(**TINY, steps=20, lr=3e-3, eval_samples=20, save_every=10), out, progress=False
    )
    # --save-every also keeps step 0 (test_train); these tests count steps 10 and 20 alone
    shutil.rmtree(out / "steps" / "step-00000000")
    return out


def invoke(*args: str):
    return CliRunner().invoke(cli, ["sweep", *args])


def snapshot(store: Path) -> dict[str, tuple[int, int, int]]:
    """Every file of a store with its size, inode and mtime: a rewritten file changes."""
    return {
        str(p.relative_to(store)): (p.stat().st_size, p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(store.rglob("*"))
        if p.is_file()
    }


def table(result) -> list[list[str]]:
    lines = result.stdout.strip().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("item "))
    return [ln.split() for ln in lines[start + 1 :]]


def test_sweep_then_rerun_writes_nothing(tmp_path, training):
    store = tmp_path / "store"
    args = ["--store", str(store), "--checkpoints", str(training), "--samples", "5"]
    args += ["--seed", "0", "--seed", "1", "--backend", "torch"]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    rows = table(first)
    assert len(rows) == 4  # 2 steps x 1 task x 2 seeds
    assert [r[0] for r in rows] == ["tiny@10", "tiny@10", "tiny@20", "tiny@20"]
    assert {r[-2] for r in rows} == {"done"}
    runs = Store(store).runs().set_index("run_id")
    sweep_id = first.stdout.split()[1].rstrip(":")
    assert sorted(runs.loc[[r[4] for r in rows], "train_step"]) == [10, 10, 20, 20]
    assert set(runs.sweep_id) == {sweep_id}
    assert len(Store(store).ids("analysis")) == 4

    before = snapshot(store)
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert {r[-2] for r in table(again)} == {"existed"}
    assert [r[4:6] for r in table(again)] == [r[4:6] for r in rows]
    assert snapshot(store) == before  # not a byte written


def test_spec_file_and_flags_override(tmp_path, training):
    spec = tmp_path / "sweep.toml"
    spec.write_text(
        f"""
[sweep]
checkpoints = ["{training}@20"]
tasks = ["conjunction"]
seeds = [3]
samples = [4]
[analysis]
view = "raw"
backend = "torch"
"""
    )
    store = tmp_path / "store"
    r = invoke(str(spec), "--store", str(store), "--samples", "6")
    assert r.exit_code == 0, r.output
    [row] = table(r)
    assert row[:4] == ["tiny@20", "conjunction", "seed=3", "n=6"]
    run = Store(store).run(row[4])
    assert (run["n_samples"], run["seed"], run["train_step"]) == (6, 3, 20)
    assert Store(store).analysis(row[5])["view"] == "raw"


def test_failures_are_reported_and_the_rest_go_on(tmp_path, training, monkeypatch):
    import attnstore.analysis.run as analysis_run

    real = analysis_run.analyze_run

    def flaky(s, run, plan, **kw):
        if run["seed"] == 1:
            raise RuntimeError("boom")
        return real(s, run, plan, **kw)

    monkeypatch.setattr(analysis_run, "analyze_run", flaky)
    store = tmp_path / "store"
    r = invoke(
        "--store", str(store), "--checkpoints", f"{training}@10", "--samples", "4",
        "--seed", "0", "--seed", "1", "--task", "conjunction", "--task", "no_such_task",
    )  # fmt: skip
    assert r.exit_code == 1, r.output
    status = {tuple(row[1:3]): row[-2] for row in table(r)}
    assert status == {
        ("conjunction", "seed=0"): "done",
        ("conjunction", "seed=1"): "failed",
        ("no_such_task", "seed=0"): "failed",
        ("no_such_task", "seed=1"): "failed",
    }
    assert "RuntimeError: boom" in r.stderr
    assert "3 of 4 items failed" in r.stderr
    assert "no_such_task" in r.stderr
    [line] = [ln for ln in r.stderr.splitlines() if "RuntimeError: boom" in ln]
    text = kept_traceback(line, store.resolve())
    assert "RuntimeError: boom" in text and "in flaky" in text  # where it was raised
    assert "Traceback" not in r.stderr  # printed with --verbose only


def kept_traceback(line: str, store: Path | None) -> str:
    """The traceback file a failure's line names, read; beside ``store`` (a folder store) or
    in the current folder (None: an object store)."""
    log = Path(re.search(r"\(traceback: (.+)\)$", line)[1])
    beside = Path.cwd() / "attnstore-sweep-logs" if store is None else Path(f"{store}.sweep-logs")
    assert log.parent.parent == beside, log
    text = log.read_text()
    assert text.startswith(f"item: {line.split(': ', 1)[0].strip()}\n"), text
    assert "Traceback (most recent call last)" in text
    return text


def test_a_failed_item_keeps_its_traceback(tmp_path, training):
    """A corrupt checkpoint fails its item (the others run): its line names the file that
    holds its traceback, beside the store and not in it; --verbose prints the traceback."""
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a safetensors file")
    store = tmp_path / "store"
    args = ["--store", str(store), "--checkpoints", str(bad), "--checkpoints", f"{training}@10"]
    r = invoke(*args, "--samples", "4", "--verbose")
    assert r.exit_code == 1, r.output
    assert [row[-2] for row in table(r)] == ["failed", "done"]
    [line] = [ln for ln in r.stderr.splitlines() if ln.startswith("  broken.safetensors ")]
    assert "is not a readable safetensors checkpoint" in line
    text = kept_traceback(line, store.resolve())
    assert "CheckpointError" in text and "load_checkpoint" in text
    traceback = text[text.index("Traceback (most recent call last)") :].rstrip("\n")
    assert traceback in r.stderr  # --verbose
    Store(store).verify()  # the store holds only its own files
    assert not [p for p in store.rglob("*") if p.suffix == ".txt"]


@pytest.mark.parametrize(
    "case",
    ["unknown_key", "unknown_table", "empty_folder", "missing_step", "missing_path", "executor"],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, training, case):
    store = tmp_path / "store"
    args = ["--store", str(store), "--samples", "4"]
    expect = {
        "unknown_key": "unknown key 'seed' in [sweep]; accepted: store, checkpoints",
        "unknown_table": "unknown table [model]",
        "empty_folder": "holds no checkpoints",
        "missing_step": "step 15 was not saved; saved steps: 10, 20",
        "missing_path": "does not exist",
        "executor": "'dask' is not one of 'local', 'ray'",
    }[case]
    if case in ("unknown_key", "unknown_table"):
        spec = tmp_path / "s.toml"
        table_name, key = ("sweep", "seed") if case == "unknown_key" else ("model", "x")
        spec.write_text(f'[{table_name}]\ncheckpoints = ["{training}"]\n{key} = 1\n')
        args = [str(spec), *args, "--checkpoints", str(training)]
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        args += ["--checkpoints", str(tmp_path / "empty")]
    elif case == "missing_step":
        args += ["--checkpoints", f"{training}@15"]
    elif case == "missing_path":
        args += ["--checkpoints", str(tmp_path / "nope")]
    else:
        args += ["--checkpoints", str(training), "--executor", "dask"]
    r = invoke(*args)
    assert r.exit_code == 2, r.output
    assert len(r.stderr.strip().splitlines()) == 1 and expect in r.stderr, r.stderr
    assert not store.exists()


def test_ray_missing_or_unreachable_is_one_line(tmp_path, training, monkeypatch):
    import socket

    store = tmp_path / "store"
    args = ["--store", str(store), "--checkpoints", str(training), "--executor", "ray"]
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = invoke(*args, "--ray-address", f"127.0.0.1:{port}")
    assert r.exit_code == 2 and "is unreachable" in r.stderr, r.output
    assert len(r.stderr.strip().splitlines()) == 1
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    r = invoke(*args)
    assert r.exit_code == 2 and "pip install 'attnstore[ray]'" in r.stderr, r.output
    assert len(r.stderr.strip().splitlines()) == 1
    assert not store.exists()


def test_killed_sweep_resumes_without_rewriting(tmp_path, training):
    """SIGKILL a sweep once its first items are committed; the rerun finishes the rest, leaves
    every file committed before the kill as it was, and ends with the ids of a sweep that was
    never killed."""
    store, reference = tmp_path / "store", tmp_path / "reference"
    args = ["--checkpoints", str(training), "--samples", "6", "--backend", "torch"]
    args += [a for s in range(4) for a in ("--seed", str(s))]  # 8 items
    proc = subprocess.Popen(
        [sys.executable, "-m", "attnstore", "sweep", "--store", str(store), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if committed(store) >= 2:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    s = Store(store)
    committed_runs, committed_analyses = set(s.ids("run")), set(s.ids("analysis"))
    assert 2 <= len(committed_analyses) < 8, "the kill came too late to test resuming"
    kept = {str(p.relative_to(store)) for p in s.files()}
    before = {k: v for k, v in snapshot(store).items() if k in kept}

    r = invoke("--store", str(store), *args)
    assert r.exit_code == 0, r.output
    rows = table(r)
    assert sum(row[-2] == "existed" for row in rows) >= len(committed_analyses)
    after = snapshot(store)
    assert {k: after[k] for k in before} == before  # nothing committed was written again

    ref = invoke("--store", str(reference), *args)
    assert ref.exit_code == 0, ref.output
    assert [row[4:6] for row in rows] == [row[4:6] for row in table(ref)]
    assert committed_runs <= set(Store(store).ids("run"))
    assert_same_tables(store, reference)


def committed(store: Path) -> int:
    """The analyses committed in a store being written by another process (0 until it is a
    store: its folder comes before its attnstore.json)."""
    from attnstore.errors import StoreError

    try:
        return len(Store(store).ids("analysis")) if (store / "attnstore.json").exists() else 0
    except StoreError:
        return 0


def assert_same_tables(a: Path, b: Path) -> None:
    """Every table of two stores holds the same rows, volatile columns aside."""
    sa, sb = Store(a), Store(b)
    for name, t in TABLES.items():
        cols = [c for c in t.columns if c not in VOLATILE]
        keys = [(c, "ascending") for c in t.grain]
        ta = sa.read(name, columns=cols).sort_by(keys)
        tb = sb.read(name, columns=cols).sort_by(keys)
        assert ta.num_rows == tb.num_rows, name
        assert ta.equals(tb), name


def test_ray_executor_matches_local(tmp_path, training, ray_local):
    spec = make_spec(checkpoints=[str(training)], tasks=["conjunction"], seeds=[0], samples=[5])
    t0 = time.perf_counter()
    local = run_sweep(tmp_path / "local", spec, executor="local")
    t1 = time.perf_counter()
    remote = run_sweep(tmp_path / "ray", spec, executor="ray")
    t2 = time.perf_counter()
    print(f"tiny sweep of 2 items: local {t1 - t0:.2f} s, ray (started) {t2 - t1:.2f} s")
    assert [r.status for r in remote.results] == ["done", "done"], remote.results
    assert remote.sweep_id == local.sweep_id
    assert [(r.run_id, r.analysis_id) for r in remote.results] == [
        (r.run_id, r.analysis_id) for r in local.results
    ]
    assert_same_tables(tmp_path / "local", tmp_path / "ray")
    assert set(Store(tmp_path / "ray").runs().sweep_id) == {local.sweep_id}


def test_incontext_bool_checkpoints_with_their_config(tmp_path):
    """model_N.pt files of an incontext-bool run, swept with the run's config.yaml from the
    spec: each run records N as its train_step."""
    import torch

    from tests.test_checkpoint import _IncontextBoolSAN, _write_config

    pytest.importorskip("transformers")
    files = []
    for step in (5, 10):
        torch.manual_seed(step)
        files.append(tmp_path / f"model_{step}.pt")
        torch.save(_IncontextBoolSAN().state_dict(), files[-1])
    cfg = _write_config(tmp_path / "config.yaml")
    spec = tmp_path / "s.toml"
    spec.write_text(
        f'[sweep]\ncheckpoints = ["{files[0]}", "{files[1]}"]\nmodel_config = "{cfg}"\n'
        'tasks = ["conjunction"]\nsamples = [4]\n'
    )
    store = tmp_path / "store"
    r = invoke(str(spec), "--store", str(store), "--view", "raw")
    assert r.exit_code == 0, r.output
    rows = table(r)
    assert [row[0] for row in rows] == ["model_5.pt", "model_10.pt"]
    runs = Store(store).runs().set_index("run_id")
    assert list(runs.loc[[row[4] for row in rows], "train_step"]) == [5, 10]


def test_sweep_into_an_object_store(training, s3_bucket, tmp_path, monkeypatch):
    """An s3:// store takes a sweep as a folder does; the rerun finds everything committed."""
    url = f"s3://{s3_bucket}/sweeps"
    args = ["--store", url, "--checkpoints", f"{training}@20", "--samples", "4"]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert [row[-2] for row in table(first)] == ["done"]
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert [row[-2] for row in table(again)] == ["existed"]
    assert Store(url).ids("run") == [table(first)[0][4]]

    bad = tmp_path / "broken.safetensors"  # a failed item's traceback: in the current folder
    bad.write_bytes(b"not a safetensors file")
    monkeypatch.chdir(tmp_path)
    failed = invoke("--store", url, "--checkpoints", str(bad), "--samples", "4")
    assert failed.exit_code == 1, failed.output
    [line] = [ln for ln in failed.stderr.splitlines() if ln.startswith("  broken.safetensors ")]
    assert "CheckpointError" in kept_traceback(line, None)


def test_checkpoints_in_an_object_store_expand_from_listings(training, s3_bucket, monkeypatch):
    """s3:// checkpoints expand as local ones do (a training folder: every step; URL@STEP; a
    folder holding a model; a file), from listings alone: the sweep id comes from the ETags,
    no checkpoint byte is read, and it changes when an object is written again. A step not
    saved or a URL holding nothing is one line naming it, and nothing is written."""
    import boto3

    import attnstore.sweep as sweep
    from attnstore.checkpoint import WEIGHTS_FILE, training_steps

    steps = training_steps(training)[-2:]
    s3 = boto3.client("s3")
    for _, folder in steps:
        for f in folder.iterdir():
            s3.upload_file(str(f), s3_bucket, f"tiny/steps/{folder.name}/{f.name}")
    url = f"s3://{s3_bucket}/tiny"
    (n1, f1), (n2, f2) = steps
    monkeypatch.setattr(sweep, "_file_sha256", None)  # reading a checkpoint's bytes fails

    def expand(*given: str) -> list[tuple[str, str]]:
        spec = make_spec(checkpoints=list(given))
        found = sweep.expand_checkpoints(spec)
        sweep.sweep_id_for(spec, found)
        return [(c.label, c.path) for c in found]

    step1, step2 = f"{url}/steps/{f1.name}", f"{url}/steps/{f2.name}"
    assert expand(url) == [(f"tiny@{n1}", step1), (f"tiny@{n2}", step2)]
    assert expand(f"{url}@{n2}") == [(f"tiny@{n2}", step2)]
    assert expand(step1 + "/") == [(f1.name, step1)]
    assert expand(f"{step1}/{WEIGHTS_FILE}") == [(WEIGHTS_FILE, f"{step1}/{WEIGHTS_FILE}")]

    spec = make_spec(checkpoints=[url])
    before = sweep.sweep_id_for(spec, sweep.expand_checkpoints(spec))
    assert before == sweep.sweep_id_for(spec, sweep.expand_checkpoints(spec))
    s3.upload_file(str(f1 / WEIGHTS_FILE), s3_bucket, f"tiny/steps/{f2.name}/{WEIGHTS_FILE}")
    assert sweep.sweep_id_for(spec, sweep.expand_checkpoints(spec)) != before

    for given, expect in (
        (f"{url}@7", f"step 7 was not saved; saved steps: {n1}, {n2}"),
        (f"s3://{s3_bucket}/nothing", "holds no checkpoints"),
        (f"s3://{s3_bucket}/nothing/model.safetensors", "does not exist"),
    ):
        r = invoke("--store", f"s3://{s3_bucket}/store", "--checkpoints", given)
        assert r.exit_code == 2, r.output
        [line] = r.stderr.strip().splitlines()
        assert line.startswith("Error: ") and given in line and expect in line, line
    assert s3.list_objects_v2(Bucket=s3_bucket, Prefix="store/")["KeyCount"] == 0


# --- a sweep across machines: Ray nodes that share no disk, an s3:// store and checkpoints ------


class _CommitGate:
    """An S3 endpoint on 127.0.0.1 that forwards every request to ``upstream`` but stops each
    commit (a create-only put, ``If-None-Match``, of anything but the store's
    ``attnstore.json``), setting ``reached``: with ``after``, until that event is set, then
    forwarded; without, for good (never forwarded, never answered). A node whose
    AWS_ENDPOINT_URL is a gate without ``after`` writes an item's files and waits at its
    commit, to be killed there."""

    def __init__(self, upstream: str, after: threading.Event | None = None) -> None:
        import http.client
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        self.reached, self.closed = threading.Event(), threading.Event()
        gate, host = self, urlsplit(upstream).netloc
        hop = {"connection", "content-length", "expect", "keep-alive", "transfer-encoding"}

        class Forward(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", ""):
                    out = b""
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        out += self.rfile.read(size)
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def forward(self) -> None:
                data = self.body()
                commit = self.command == "PUT" and "If-None-Match" in self.headers
                if commit and not self.path.split("?")[0].endswith("/attnstore.json"):
                    gate.reached.set()
                    if after is None or not wait_any(after, gate.closed):
                        gate.closed.wait()
                        self.close_connection = True  # dropped, unanswered
                        return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
                headers["Content-Length"] = str(len(data))
                conn = http.client.HTTPConnection(host, timeout=60)
                try:
                    conn.request(self.command, self.path, body=data, headers=headers)
                    resp = conn.getresponse()
                    answer = resp.read()
                finally:
                    conn.close()
                self.send_response_only(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in hop:
                        self.send_header(k, v)
                head = self.command == "HEAD"
                length = resp.getheader("Content-Length", "0") if head else str(len(answer))
                self.send_header("Content-Length", length)
                self.end_headers()
                if not head:
                    self.wfile.write(answer)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.closed.set()
        self.server.shutdown()
        self.server.server_close()


def wait_any(event: threading.Event, closed: threading.Event) -> bool:
    """Wait until ``event`` or ``closed`` is set: whether ``event`` was."""
    while not closed.is_set():
        if event.wait(timeout=0.1):
            return True
    return False


def test_a_sweep_across_machines_survives_a_killed_node(
    training, s3_bucket, s3_server, tmp_path, monkeypatch
):
    """A two-node Ray cluster on 127.0.0.1 (a head without CPUs; nodes a and b, one CPU each,
    each in its own working folder with its own temporary folder and checkpoint cache) sweeps
    a training folder that lies only in S3 into an s3:// store, the driver in a folder of its
    own. Each node reaches S3 through a proxy (:class:`_CommitGate`): b's holds its item's
    commit, and b is killed there, its files written and not committed; a's holds its commits
    until b's item got there (so b surely has an item, whatever Ray's choices). The sweep
    reports that item failed (its traceback kept by the driver, in the driver's folder); the
    rerun finishes it; the store holds one run per item, each recording its checkpoint's URL,
    and verifies."""
    import boto3

    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    from attnstore.checkpoint import training_steps

    steps = training_steps(training)[-2:]  # two steps, uploaded; the local copy is deleted
    local = tmp_path / "upload"
    for _, folder in steps:
        shutil.copytree(folder, local / "steps" / folder.name)
    s3 = boto3.client("s3")
    for f in sorted(p for p in local.rglob("*") if p.is_file()):
        s3.upload_file(str(f), s3_bucket, f"runs/tiny/{f.relative_to(local).as_posix()}")
    shutil.rmtree(local)
    checkpoints, store = f"s3://{s3_bucket}/runs/tiny", f"s3://{s3_bucket}/sweeps"
    folders = {name: tmp_path / name for name in ("driver", "a", "b")}
    for folder in folders.values():
        folder.mkdir()

    gate_b = _CommitGate(s3_server)
    gate_a = _CommitGate(s3_server, after=gate_b.reached)
    cluster = Cluster(
        initialize_head=True,
        head_node_args=dict(num_cpus=0, include_dashboard=False, node_ip_address="127.0.0.1"),
    )
    try:
        nodes = {}
        for name in ("a", "b"):
            env = {"TMPDIR": str(folders[name]), CACHE_ENV: str(folders[name] / "cache")}
            env["AWS_ENDPOINT_URL"] = (gate_a if name == "a" else gate_b).endpoint
            monkeypatch.chdir(folders[name])  # the node's processes start here
            nodes[name] = cluster.add_node(
                wait=False, num_cpus=1, node_ip_address="127.0.0.1", env_vars=env
            )
        monkeypatch.chdir(tmp_path)
        cluster.wait_for_nodes()
        sweep = [sys.executable, "-m", "attnstore", "sweep", "--store", store, "--samples", "4"]
        sweep += ["--checkpoints", checkpoints, "--executor", "ray"]
        sweep += ["--ray-address", cluster.address]
        env = {**os.environ, CACHE_ENV: str(folders["driver"] / "cache")}
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)

        def run() -> subprocess.Popen:
            return subprocess.Popen(
                sweep, cwd=folders["driver"], env=env, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True,
            )  # fmt: skip

        first = run()
        try:
            deadline = time.monotonic() + 120
            while not gate_b.reached.wait(timeout=0.1):  # node b's item is at its commit
                assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            cluster.remove_node(nodes["b"], allow_graceful=False)  # SIGKILL, mid-item
            out, err = first.communicate(timeout=120)
        finally:
            first.kill()
            first.wait()
        assert first.returncode == 1, out + err
        assert "1 of 2 items failed" in err, err
        [line] = [ln for ln in err.splitlines() if "(traceback: " in ln]
        log = Path(re.search(r"\(traceback: (.+)\)$", line)[1])
        assert log.parent.parent == folders["driver"] / "attnstore-sweep-logs", log
        assert "Traceback (most recent call last)" in log.read_text()
        assert sorted(r[-2] for r in _rows(out)) == ["done", "failed"]
        sweep_id = re.search(r"^sweep (\w+): ", out, re.M)[1]  # Ray may print lines too

        again = run()
        out, err = again.communicate(timeout=180)
        assert again.returncode == 0, out + err
        rows = _rows(out)
        assert sorted(r[-2] for r in rows) == ["done", "existed"], out
        assert re.search(r"^sweep (\w+): ", out, re.M)[1] == sweep_id  # the same ETags
    finally:
        gate_a.close()
        gate_b.close()
        cluster.shutdown()

    runs = Store(store).runs()
    assert len(runs) == len(Store(store).ids("run")) == 2  # nothing duplicated
    assert sorted(runs.checkpoint) == [f"{checkpoints}/steps/{f.name}" for _, f in steps]
    assert set(runs.sweep_id) == {sweep_id}
    assert len(Store(store).ids("analysis")) == 2
    verify = CliRunner().invoke(cli, ["verify", "--store", store])
    assert verify.exit_code == 0, verify.output
    assert not (folders["driver"] / "cache").exists()  # the driver copied no checkpoint
    for name in ("a", "b"):  # each node copied the checkpoints it ran into its own cache
        assert list((folders[name] / "cache").iterdir()), name
        assert not (folders[name] / "attnstore-sweep-logs").exists()


def _rows(stdout: str) -> list[list[str]]:
    lines = stdout.strip().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("item "))
    return [ln.split() for ln in lines[start + 1 :]]


SHIPPED_SPECS = sorted((Path(__file__).parents[1] / "sweeps").glob("*.toml"))


@pytest.mark.parametrize("path", SHIPPED_SPECS, ids=lambda p: p.name)
def test_shipped_specs_read_and_sweep_what_their_training_writes(path):
    """Every spec in sweeps/ is a valid spec, and its checkpoints are the folders that the
    `attnstore train` command in its header writes (--out, or --out/seed-N for --seeds)."""
    from attnstore.sweep import read_spec
    from attnstore.training import SEED_FOLDER

    spec = make_spec(**read_spec(path))
    header = " ".join(
        ln.lstrip("#").strip().rstrip("\\")
        for ln in path.read_text().splitlines()
        if ln.startswith("#")
    )
    out = re.search(r"attnstore train .*?--out (\S+)", header).group(1)
    seeds = re.search(r"attnstore train .*?--seeds (\S+)", header)
    expected = (
        [f"{out}/{SEED_FOLDER.format(seed=int(s))}" for s in seeds.group(1).split(",")]
        if seeds
        else [out]
    )
    assert list(spec.checkpoints) == expected
