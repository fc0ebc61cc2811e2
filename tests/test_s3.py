"""A store at ``s3://bucket/prefix``, used the way a user uses one: the command line (in this
process through click's runner, and as ``python -m attnstore`` processes where a process must be
killed or two must race) and the library, against moto's S3 server on 127.0.0.1 (conftest's
``s3_server``).

- the same commands give the same answers from an S3 store as from a local one: every table,
  every named query, a figure byte for byte; a query racing an --overwrite reads one version;
  docs/object-storage.md's DuckDB macro reads the committed rows with no attnstore code;
- a writer killed at each step of its commit, or at a random moment, leaves its run whole or
  absent, never part of it, and a rerun completes it;
- two writers at once: two runs both land whole; two writers of one run leave one whole run;
- bad input (an endpoint that is closed or never answers, refused credentials, a missing
  bucket, another URL scheme, no bucket) is one line, exit status 2, and writes nothing.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pandas as pd
import pytest
from click.testing import CliRunner

import attnstore
from attnstore import queries, transaction
from attnstore.cli import cli
from attnstore.connection import connect
from attnstore.errors import StoreError
from attnstore.queries import get_query, load_queries, query
from attnstore.schema import PRIMARY, TABLES
from attnstore.store import Store
from attnstore.transaction import CRASH_ENV
from tests.conftest import moto_process

SAMPLES = 6  # prompts per run: enough for every table and query to have rows
PROVENANCE = ("created_at", "command")  # when and by which command line: differ by design
RUN_TABLES = [name for name, t in TABLES.items() if t.level == "run"]


def _cli(*args, **kwargs):
    return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)


def _ok(result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def _extract_args(store, checkpoint, seed: int = 3) -> list:
    """``attnstore extract`` of a tiny run (analysis included unless --no-analysis is added)."""
    return ["extract", "--store", store, "--checkpoint", checkpoint] + [
        "--samples", SAMPLES, "--seed", seed]  # fmt: skip


def _new_bucket(name: str) -> str:
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@functools.cache
def _client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint)


def _s3():
    """A client of the test server, made once (making one costs more than a request)."""
    return _client(os.environ["AWS_ENDPOINT_URL"])


def _objects(bucket: str | None = None, prefix: str = "") -> dict[str, list[str]]:
    """Every object of ``bucket`` (of every bucket when None) on the test server whose key
    starts with ``prefix``, by bucket."""
    s3 = _s3()
    names = [bucket] if bucket else [b["Name"] for b in s3.list_buckets()["Buckets"]]
    out = {}
    for name in names:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix)
        out[name] = sorted(o["Key"] for page in pages for o in page.get("Contents", []))
    return out


def _frame(table) -> pd.DataFrame:
    """A table or query result as pandas, provenance columns dropped, rows sorted by every
    column that holds scalars (list columns such as ``weights`` ride along)."""
    df = table if isinstance(table, pd.DataFrame) else table.to_pandas()
    df = df.drop(columns=[c for c in df.columns if c.endswith(PROVENANCE)])
    scalar = [c for c in df.columns if not df[c].map(lambda v: hasattr(v, "__array__")).any()]
    if not len(df):
        return df
    # Floats last, and sorted on 9 significant digits: an aggregate whose summation order
    # DuckDB's threads choose may differ in its last bits, which must not reorder the rows.
    floats = [c for c in scalar if pd.api.types.is_float_dtype(df[c])]
    keys = df[[c for c in scalar if c not in floats] + floats].copy()
    for c in floats:
        keys[c] = keys[c].map(lambda v: float(f"{v:.9g}"))
    order = keys.sort_values(list(keys.columns), kind="stable").index
    return df.loc[order].reset_index(drop=True)


def _same(a, b, exact: bool = True) -> None:
    """Equal frames: bit for bit (``exact``: stored values), or within a relative 1e-9 (an
    aggregate whose order of summation DuckDB's threads choose)."""
    pd.testing.assert_frame_equal(_frame(a), _frame(b), check_exact=exact, rtol=1e-9)


# --- one run, stored locally and on S3 by the same commands ------------------------------------


@pytest.fixture(scope="module")
def stores(tmp_path_factory, tiny_checkpoint, s3_server):
    """The same commands (extract, with its default analysis, then intervene) run into a local
    folder and into an S3 prefix: (folder, URL, run id)."""
    local = tmp_path_factory.mktemp("s3_compare") / "store"
    url = f"s3://{_new_bucket('s3-compare-stores')}/stores/one"
    for store in (local, url):
        run_id = _ok(_cli(*_extract_args(store, tiny_checkpoint))).splitlines()[-1]
        _ok(_cli("intervene", "--store", store))
    return local, url, run_id


def test_s3_store_holds_what_a_local_store_holds(stores):
    """Store and connect from Python, on a URL: every table equal to the local store's."""
    local, url, run_id = stores
    s3, here = attnstore.Store(url), attnstore.Store(local)
    assert s3.path == url and s3.ids("run") == [run_id]
    for level in PRIMARY:
        assert s3.keys(level) == here.keys(level)
    assert all(s3.keys(level) for level in ("run", "analysis", "intervention"))
    for name in TABLES:  # the tables these commands write hold rows; every table is equal
        assert s3.read(name).num_rows > 0 or TABLES[name].level not in ("run", "analysis"), name
        _same(s3.read(name), here.read(name))
    sql = "select layer, head, count(*) as n, sum(entropy) as e from attention group by all"
    _same(attnstore.connect(url).execute(sql).df(), attnstore.connect(local).execute(sql).df())


def _params(name: str, run_id: str) -> dict:
    params = {p.name: 0 for p in get_query(name).params if p.required}
    if name == "compare_runs":
        params |= {"run_a": run_id, "run_b": run_id}
    if name == "clean_but_inert":  # the tiny model's heads are neither clean nor inert enough
        params |= {"min_quality": -1, "max_effect": 1}
    return params


def test_every_named_query_answers_the_same_on_s3(stores):
    local, url, run_id = stores
    s3 = Store(url)  # opened once (the commands open it by its URL: the test below)
    for name in sorted(load_queries()):
        params = _params(name, run_id)
        from_s3 = query(s3, name, **params)
        local_answer = query(local, name, **params)
        assert len(from_s3) > 0 or len(local_answer) == 0, name  # (patching: no patch here)
        try:
            _same(from_s3, local_answer, exact=False)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


def test_commands_on_s3_print_and_draw_what_they_do_locally(stores, tmp_path):
    """attnstore query prints the same CSV, attnstore plot draws the same bytes, and a figure
    manifest may name the store by its URL (not read as a folder beside the manifest)."""
    local, url, _ = stores
    args = ["query", "heads_by_cluster_quality", "-p", "top=3", "--format", "csv"]
    printed = [_ok(_cli(*args, "--store", store)) for store in (local, url)]
    assert printed[0] == printed[1] and len(printed[0].splitlines()) == 4
    head = ["plot", "head", "--layer", 1, "--head", 0, "--sample", 2]
    files = [tmp_path / "local.png", tmp_path / "s3.png"]
    for store, out in zip((local, url), files, strict=True):
        assert _ok(_cli(*head, "--store", store, "--out", out)).split() == [str(out)]
    manifest = tmp_path / "figures.toml"
    figure = 'kind = "head"\nlayer = 1\nhead = 0\nsample = 2\nout = "manifest.png"'
    manifest.write_text(f'store = "{url}"\n[[figure]]\n{figure}\n')
    assert _ok(_cli("plot", "--manifest", manifest)).split() == [str(tmp_path / "manifest.png")]
    assert files[0].read_bytes() == files[1].read_bytes()
    assert files[0].read_bytes() == (tmp_path / "manifest.png").read_bytes()


def test_a_query_during_an_overwrite_answers_from_one_version(
    stores, tiny_checkpoint, s3_bucket, monkeypatch
):
    """A query lists the files, then an --overwrite of the run commits and deletes them before
    the query reads them: the query answers from one version, the old one it holds or the new
    one it lists again (through s3fs
    behind pyarrow's fsspec handler this read could hang: ObjectFS.arrow)."""
    url = f"s3://{s3_bucket}/over"
    again = dict(checkpoint=str(tiny_checkpoint), samples=SAMPLES, seed=3)
    attnstore.extract(url, **again)
    connections = []

    def connect_then_overwrite(store, *args, **kwargs):
        con = connect(store, *args, **kwargs)
        if not connections:
            attnstore.extract(url, **again, overwrite=True)
        connections.append(con)
        return con

    expected = query(stores[0], "run_overview")
    monkeypatch.setattr(queries, "connect", connect_then_overwrite)
    _same(query(url, "run_overview"), expected)
    # Either the connection had read the old version's files before they went (connect()
    # reads each table's first file, and keeps small files in memory: one version, no retry)
    # or it lists again and reads the new one.
    assert 1 <= len(connections) <= 2


def test_the_documented_duckdb_macro_reads_committed_rows(stores, s3_bucket):
    """docs/object-storage.md's macro, in plain DuckDB over s3fs, on a copy of the store with a
    killed writer's file beside each committed one: the committed rows, as attnstore reads them.
    """
    import duckdb
    import s3fs

    local, url, _ = stores
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3")
    for key in _objects(bucket)[bucket]:
        copy = f"doc/{key.removeprefix(prefix + '/')}"
        for to in [copy] + ([copy[:-24] + "0123456789abcdef.parquet"] if "/part-" in key else []):
            s3.copy_object(Bucket=s3_bucket, Key=to, CopySource={"Bucket": bucket, "Key": key})
    doc = (Path(__file__).resolve().parent.parent / "docs" / "object-storage.md").read_text()
    macro = re.search(r"```sql\n(-- committed\(store, tbl\).*?)```", doc, re.S).group(1)
    con = duckdb.connect()
    con.register_filesystem(s3fs.S3FileSystem())
    con.execute(macro)
    here = Store(local)
    for name in TABLES:
        if name in PRIMARY.values() or not here.files(name):  # records; tables with no file
            continue
        want = here.df(name)
        rows = con.sql(f"select * from committed('s3://{s3_bucket}/doc', '{name}')").df()
        _same(rows[list(want.columns)].astype(want.dtypes.to_dict()), want)


# --- kills and races ----------------------------------------------------------------------------


def _reference(stores) -> dict[str, pd.DataFrame]:
    """The run's tables as the local store holds them: what 'whole' means."""
    here = Store(stores[0])
    return {name: _frame(here.read(name)) for name in RUN_TABLES}


def _visible(url: str, reference: dict[str, pd.DataFrame]) -> str:
    """'absent' or 'whole' (every run table equal to ``reference``), through the views of one
    connection, as a query sees the store; anything else fails the test."""
    con = attnstore.connect(url, verify=False)
    seen = {name: con.sql(f"select * from {name}").to_arrow_table() for name in RUN_TABLES}
    if all(t.num_rows == 0 for t in seen.values()):
        return "absent"
    for name, t in seen.items():
        _same(t, reference[name])
    return "whole"


class Watcher(threading.Thread):
    """A reader that reads every run table of one store over and over (``Store.read``) while a
    writer works, failing if a table ever holds other than none or all of the run's rows (one
    per store, so that slow reads of one store never leave another unwatched)."""

    def __init__(self, url: str, reference: dict[str, pd.DataFrame]) -> None:
        super().__init__(daemon=True)
        self.url, self.rows = url, {name: len(df) for name, df in reference.items()}
        self.reads = 0
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        store = None
        while not self.done.wait(0.1):
            try:
                store = store or Store(self.url)
                for name, rows in self.rows.items():
                    assert store.read(name).num_rows in (0, rows), (self.url, name)
                    self.reads += 1
            except StoreError as e:  # no store yet: nothing to see
                if "is not an attnstore store" not in str(e):
                    self.error = e
                    return
            except BaseException as e:  # noqa: BLE001 - raised again by finish()
                self.error = e
                return

    def finish(self) -> int:
        """Stop; the number of table reads done (an error seen is raised)."""
        self.done.set()
        self.join()
        if self.error is not None:
            raise self.error
        return self.reads


def _writer(args: list, env: dict | None = None) -> subprocess.Popen:
    """``python -m attnstore ARGS`` as a user runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "attnstore", *map(str, args)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _data_files(bucket: str, prefix: str) -> list[str]:
    return [k for k in _objects(bucket, prefix)[bucket] if "/part-" in k]


def _until_writing(proc: subprocess.Popen, bucket: str, prefix: str) -> None:
    """Wait until ``proc`` has written its first data file (or has ended); polls every 50 ms
    (a listing costs the server CPU that the writers need)."""
    while proc.poll() is None and not _data_files(bucket, prefix):
        time.sleep(0.05)


def test_sigkill_during_an_s3_commit_then_rerun(stores, tiny_checkpoint, s3_bucket, monkeypatch):
    """Three writers at once, killed with every data file written but no commit record
    ('written'), right after the record ('committed'), and at a random moment once its files
    appear: a reader watching each store throughout sees the run absent or whole, never part
    of it; a rerun leaves it whole. The killed writer's files stay hidden (nothing on an object
    store proves their writer dead) until recovery finds them stale: STALE_AFTER is set to 0
    here to see them go."""
    reference = _reference(stores)
    run_id = reference["runs"].run_id[0]
    n_files = len(RUN_TABLES) - 2 + reference["runs"].n_layers[0]  # attention: one per layer
    kills = ["written", "committed", random.Random(0).uniform(0.0, 0.4)]
    prefixes = [f"kill{i}/" for i in range(len(kills))]
    urls = [f"s3://{s3_bucket}/{prefix}" for prefix in prefixes]
    watchers = [Watcher(url, reference) for url in urls]
    procs = []
    try:
        for url, kill in zip(urls, kills, strict=True):
            env = {CRASH_ENV: kill} if isinstance(kill, str) else {}
            procs.append(_writer([*_extract_args(url, tiny_checkpoint), "--no-analysis"], env))
        for watcher in watchers:
            watcher.start()
        _until_writing(procs[2], s3_bucket, prefixes[2])
        time.sleep(kills[2])
        procs[2].send_signal(signal.SIGKILL)
        for proc, kill in zip(procs, kills, strict=True):
            _, err = proc.communicate(timeout=120)
            # a writer may commit before the random moment comes (then it is whole)
            ended = (0,) if not isinstance(kill, str) else ()
            assert proc.returncode in (137, -signal.SIGKILL, *ended), err
    finally:
        reads = {watcher.url: watcher.finish() for watcher in watchers}
    for url, prefix, kill in zip(urls, prefixes, kills, strict=True):
        assert reads[url] > 0, kill
        after_kill = _visible(url, reference)
        assert after_kill == {"written": "absent", "committed": "whole"}.get(kill, after_kill)
        if kill == "written":  # its files were all written, and no reader shows them
            assert len(_data_files(s3_bucket, prefix)) == n_files
        rerun = _cli(*_extract_args(url, tiny_checkpoint), "--no-analysis")
        _ok(rerun)
        assert ("already in the store" in rerun.stderr) == (after_kill == "whole"), kill
        assert _visible(url, reference) == "whole"
    monkeypatch.setattr(transaction, "STALE_AFTER", transaction.timedelta(0))
    for url, prefix in zip(urls, prefixes, strict=True):
        Store(url).recover()  # attnstore recover: removes what is stale
        token = Store(url).commits("run")[run_id]
        assert all(k.endswith(f"part-{token}.parquet") for k in _data_files(s3_bucket, prefix))
        assert _visible(url, reference) == "whole"


def test_two_writers_of_different_runs_both_land(stores, tiny_checkpoint, s3_bucket):
    """A process writes one run and, once its first file is there, this process writes
    another into the same store: both runs whole, each with its own rows."""
    url = f"s3://{s3_bucket}/shared"
    other = _writer([*_extract_args(url, tiny_checkpoint, seed=4), "--no-analysis"])
    _until_writing(other, s3_bucket, "shared/")
    mine = _ok(_cli(*_extract_args(url, tiny_checkpoint, seed=5), "--no-analysis"))
    out, err = other.communicate(timeout=120)
    assert other.returncode == 0, err
    run_ids = [out.splitlines()[-1], mine.splitlines()[-1]]
    store = Store(url)
    assert sorted(store.keys("run")) == sorted(run_ids) and len(set(run_ids)) == 2
    for run_id, seed in zip(run_ids, (4, 5), strict=True):
        run = store.run(run_id)
        assert run["seed"] == seed and run["n_samples"] == SAMPLES
        assert store.read("inputs", run_id=run_id).num_rows == SAMPLES * run["n_points"]
        n_rows = run["n_layers"] * run["n_heads"] * SAMPLES * 2 * run["n_points"]
        assert store.read("attention", run_id=run_id).num_rows == n_rows


def test_two_writers_of_one_run(stores, tiny_checkpoint, s3_bucket, monkeypatch):
    """A process writes a run while this one writes the same run, holding back its commit
    until the other's record is there (so that both wrote every file): the store ends with one
    whole run, the other process's, and this writer says the run is there (ids are content
    hashes: the run kept is the same run), with none of its own files left."""
    reference = _reference(stores)
    run_id = reference["runs"].run_id[0]
    url = f"s3://{s3_bucket}/race"
    record = f"race/runs/run_id={run_id}/commit.parquet"
    s3 = boto3.client("s3")

    def record_exists() -> bool:
        return s3.list_objects_v2(Bucket=s3_bucket, Prefix=record)["KeyCount"] > 0

    def wait_for_the_other(step: str) -> None:
        while step == "written" and not record_exists() and other.poll() is None:
            time.sleep(0.02)

    args = [*_extract_args(url, tiny_checkpoint), "--no-analysis"]
    other = _writer(args)
    monkeypatch.setattr(transaction, "_crash_at", wait_for_the_other)
    this = _cli(*args)
    _, err = other.communicate(timeout=120)
    assert other.returncode == 0 and record_exists(), err
    lines = this.stderr.strip().splitlines()
    assert this.exit_code == 0, this.output
    assert any("already in the store" in line for line in lines), this.stderr
    assert _visible(url, reference) == "whole"
    token = Store(url).commits("run")[run_id]
    assert all(k.endswith(f"part-{token}.parquet") for k in _data_files(s3_bucket, "race/"))


# --- bad input ---------------------------------------------------------------------------------


def _refused(result, *words: str) -> str:
    """One line on stderr, exit status 2, no traceback; the line holds every word."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, (result.exit_code, result.output)
    assert lines[0].startswith("Error: ") and "Traceback" not in result.output
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.fixture
def nothing_written(s3_server, tmp_path, monkeypatch):
    """Checks, after the test, that no bucket, object or local file was made (the test runs in
    an empty folder)."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    before = _objects()
    yield
    assert _objects() == before
    assert list(work.iterdir()) == []


def _extract(store, checkpoint, env=None):
    return _cli(*_extract_args(store, checkpoint), "--no-analysis", env=env)


@pytest.mark.parametrize(
    ("store", "words"),
    [
        ("gs://bucket/store", ["'gs://bucket/store'", "'gs'", "s3://bucket/prefix"]),
        ("http://127.0.0.1/store", ["'http://127.0.0.1/store'", "'http'", "s3://bucket/prefix"]),
        ("s3://", ["'s3://'", "no bucket", "s3://bucket/prefix"]),
        ("s3:///store", ["'s3:///store'", "no bucket", "s3://bucket/prefix"]),
        ("s3://bucket/../store", ["'s3://bucket/../store'", "'..'", "s3://bucket/prefix"]),
        ("s3:/bucket/store", ["'s3:/bucket/store'", "s3://bucket/store"]),
        (
            "s3://no-such-bucket/store",
            ["'s3://no-such-bucket/store'", "'no-such-bucket'", "does not exist"],
        ),
    ],
)
def test_bad_store_urls_write_nothing(store, words, tiny_checkpoint, nothing_written):
    _refused(_extract(store, tiny_checkpoint), *words)
    _refused(_cli("query", "contents", "--store", store), *words)


def test_a_prefix_that_is_no_store_is_named(stores, nothing_written):
    url = f"s3://{stores[1].split('/')[2]}/stores/none"
    for args in (
        ["query", "contents"],
        ["plot", "heads", "--out", "h.png"],
        ["report", "--out", "r"],
    ):
        _refused(_cli(*args, "--store", url), f"'{url}' is not an attnstore store")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_endpoints_fail_in_seconds(tiny_checkpoint, nothing_written):
    """A closed port, and a port that accepts connections but never answers: one line naming
    the endpoint, well before any retry loop would give up (minutes)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        for port in (_closed_port(), silent.getsockname()[1]):
            endpoint = f"http://127.0.0.1:{port}"
            start = time.monotonic()
            result = _extract("s3://bucket/store", tiny_checkpoint, {"AWS_ENDPOINT_URL": endpoint})
            _refused(result, "'s3://bucket/store'", f"cannot reach {endpoint}", "AWS_ENDPOINT_URL")
            assert time.monotonic() - start < 30  # not a hang: seconds, not minutes
    finally:
        silent.close()


@pytest.fixture(scope="module")
def auth_server(s3_server, tmp_path_factory):
    """A second moto server that checks credentials (moto reads the setting at start), with a
    bucket and a user who may only read: (endpoint, key id, secret). The first four requests
    (the setup below) are let through unsigned."""
    log = tmp_path_factory.mktemp("auth_server") / "log"
    with moto_process(log, {"INITIAL_NO_AUTH_ACTION_COUNT": "4"}) as endpoint:
        iam = boto3.client("iam", endpoint_url=endpoint)
        iam.create_user(UserName="reader")
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        read = {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject"], "Resource": "*"}
        policy = {"Version": "2012-10-17", "Statement": [read]}
        iam.put_user_policy(UserName="reader", PolicyName="read", PolicyDocument=json.dumps(policy))
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="locked")
        yield endpoint, key["AccessKeyId"], key["SecretAccessKey"]


def test_refused_credentials_write_nothing(auth_server, tiny_checkpoint, nothing_written):
    endpoint, key_id, secret = auth_server
    reader = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": key_id}
    url = "s3://locked/store"
    cases = [
        ({"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, ["credentials", "refused"]),
        ({"AWS_ACCESS_KEY_ID": "AKIANOSUCHKEY0000000"}, ["credentials", "refused"]),
        ({"AWS_SECRET_ACCESS_KEY": secret}, ["may not write"]),  # a reader's key
    ]
    for env, words in cases:
        _refused(_extract(url, tiny_checkpoint, reader | env), f"'{url}'", *words)
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret
    )
    assert s3.list_objects_v2(Bucket="locked")["KeyCount"] == 0


def test_no_credentials_at_all(tiny_checkpoint, tmp_path, nothing_written):
    """No key, no profile: named at once (botocore's search of the EC2 instance metadata, an
    address off this machine, is switched off)."""
    env = {
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": None,
        "AWS_SECRET_ACCESS_KEY": None,
        "AWS_PROFILE": None,
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
    }
    _refused(
        _extract("s3://any/store", tiny_checkpoint, env), "'s3://any/store'", "no AWS credentials"
    )


# --- requests: what opening a store costs, and overwrites isolated by ETag ----------------------

_REQUEST = re.compile(r'"(GET|PUT|HEAD|POST|DELETE) (\S+) HTTP')


@pytest.fixture(scope="module")
def counted(tmp_path_factory):
    """A moto server of its own whose log holds one line per request it answered (werkzeug
    writes it before the response goes out): a function giving the requests so far, as
    (method, path), and the server's endpoint."""
    log = tmp_path_factory.mktemp("counted") / "log"
    with moto_process(log) as endpoint:

        def requests() -> list[tuple[str, str]]:
            return [m.groups() for m in map(_REQUEST.search, log.read_text().splitlines()) if m]

        yield requests, endpoint


def _fake_ids(url: str, n: int) -> None:
    """``n`` runs, each with an analysis, of fake rows (test_store_recovery's writer)."""
    from tests.test_store_recovery import WRITER

    for i in range(n):
        for level in ("run", "analysis"):
            args = [url, level, f"{i:016x}", "3", "0"]
            result = subprocess.run([sys.executable, "-c", WRITER, *args], capture_output=True)
            assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("runs", [1, 2])
def test_opening_costs_a_constant_and_one_get_per_commit_record(
    s3_server, counted, monkeypatch, runs
):
    """Opening an S3 store and finding every table's committed files (what connect() needs)
    costs one LIST to check the bucket, one GET of attnstore.json, one LIST of each level's
    primary folder, and one GET (whole, no HEAD) per commit record: here 2 records a run."""
    requests, endpoint = counted
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    bucket = f"counted-{runs}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/store"
    _fake_ids(url, runs)
    before = len(requests())
    s = Store(url)
    files = s.files()
    got = requests()[before:]
    assert len(files) > 2 * runs
    lists = [p for m, p in got if m == "GET" and "list-type=2" in p]
    gets = [p for m, p in got if m == "GET" and "list-type=2" not in p]
    assert [m for m, _ in got if m != "GET"] == []  # no HEAD, no PUT
    assert len(lists) == 1 + len(PRIMARY)
    assert sorted(gets) == sorted(
        [f"/{bucket}/store/attnstore.json"]
        + [f"/{bucket}/store/runs/run_id={i:016x}/commit.parquet" for i in range(runs)]
        + [f"/{bucket}/store/analyses/analysis_id={i:016x}/commit.parquet" for i in range(runs)]
    )
    assert len(got) == 2 + len(PRIMARY) + 2 * runs
    before = len(requests())
    s.files()  # again: the listings, and no record read again (their ETags are unchanged)
    assert len(requests()) - before == len(PRIMARY)


def test_two_overwrites_of_one_id_at_once_the_loser_fails_cleanly(s3_bucket):
    """Two --overwrite writers of one run on S3 (no locks): each replaces the record only if it
    is still the version it read when it started (If-Match on its ETag). The other commits
    first; this one's put is refused, it removes its own files and says so in one line; the
    store holds the other's version, whole, and none of the replaced files."""
    from attnstore.errors import CommitConflict
    from tests.test_store_recovery import KEY, _write_all, write

    url = f"s3://{s3_bucket}/store"
    assert write(url, "run", 3).returncode == 0
    first = Store(url).record("run", KEY["run"]).token
    s = Store(url)
    with pytest.raises(CommitConflict) as err, s.transaction("run", KEY["run"], True) as txn:
        _write_all(txn, "run", 4)
        other = write(url, "run", 5, overwrite=True)  # commits while this one is open
        assert other.returncode == 0, other.stderr
    assert "replaced by another writer" in str(err.value) and "\n" not in str(err.value)
    after = Store(url)
    record = after.record("run", KEY["run"])
    assert record.token not in (first, txn.token) and after.read("inputs").num_rows == 5
    tokens = {k.rsplit("part-", 1)[1][:16] for k in _data_files(s3_bucket, "store/")}
    assert tokens == {record.token}


def test_a_committed_file_of_other_bytes_on_s3_is_named(s3_bucket):
    """An S3 object cut short after its commit: sizes are not asked on the way (each costs a
    request), so the read fails, and the error names the file and its record's bytes."""
    from tests.test_store_recovery import KEY, write

    url = f"s3://{s3_bucket}/store"
    assert write(url, "run", 3).returncode == 0
    (entry,) = [e for e in Store(url).record("run", KEY["run"]).files if "inputs" in e.path]
    key = f"store/{entry.path}"
    body = _s3().get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    _s3().put_object(Bucket=s3_bucket, Key=key, Body=body[:-10])
    with pytest.raises(StoreError, match=f"holds {len(body) - 10} bytes.*says {entry.bytes}"):
        Store(url).read("inputs", run_id=KEY["run"])
    with pytest.raises(StoreError, match=f"holds {len(body) - 10} bytes"):
        Store(url).verify()
