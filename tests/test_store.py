"""The store and the extractor: what is written, and that it survives kills and races."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import duckdb
import numpy as np
import pyarrow.dataset as ds
import pytest

from attnstore.connection import connect
from attnstore.errors import ConfigError, SchemaVersionError, StoreError
from attnstore.extraction import extract
from attnstore.schema import SCHEMA_VERSION, TABLES, full_rows
from attnstore.store import Store
from attnstore.transaction import CRASH_ENV
from tests.conftest import TINY, TINY_SAMPLES, store_bytes

ROWS_PER_SAMPLE = TINY["n_layers"] * TINY["n_heads"] * 2 * TINY["n_points"]


def test_attention_rows_are_the_models(tiny_store):
    path, run_id = tiny_store
    con = connect(path)
    n = con.execute("select count(*) from attention").fetchall()[0][0]
    assert n == ROWS_PER_SAMPLE * TINY_SAMPLES
    df = con.sql(
        "select query_pos, query_kind, point, full_weights(weights, 2 * r.n_points) as weights, "
        "mass_x, mass_y, max_weight, argmax_key, entropy from attention join runs r using (run_id)"
    ).df()
    w = np.stack(df.weights.to_numpy())
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-5)
    keys = np.arange(w.shape[1])
    assert np.all(w[keys[None, :] > df.query_pos.to_numpy()[:, None]] == 0)
    np.testing.assert_allclose(df.mass_x + df.mass_y, 1.0, atol=1e-5)
    np.testing.assert_allclose(df.max_weight, w.max(1))
    assert (df.argmax_key == w.argmax(1)).all()
    assert (df.query_kind == np.where(df.query_pos % 2 == 0, "x", "y")).all()
    assert (df.point == df.query_pos // 2).all()
    p = np.where(w > 0, w, 1)
    np.testing.assert_allclose(df.entropy, -(w * np.log(p)).sum(1), atol=1e-4)


def test_attention_matches_a_fresh_forward_pass(tiny_store, tiny_checkpoint):
    import torch

    from attnstore.checkpoint import load_checkpoint

    path, run_id = tiny_store
    s = Store(path)
    inputs = s.read("inputs", run_id=run_id).to_pandas().sort_values(["sample", "point"])
    x = np.stack(inputs.x.to_numpy()).reshape(TINY_SAMPLES, TINY["n_points"], -1)
    y = inputs.y.to_numpy().reshape(TINY_SAMPLES, TINY["n_points"])
    model = load_checkpoint(str(tiny_checkpoint)).model
    with torch.no_grad():
        attn = model(torch.tensor(x).float(), torch.tensor(y).float(), return_attn=True).attention
    rows = s.read("attention", layer=1, head=0, sample=4).sort_by("query_pos")
    full = full_rows(rows.column("weights"), 2 * TINY["n_points"])
    np.testing.assert_array_equal(full, attn[1][4, 0].numpy())  # bit for bit
    rows = rows.to_pandas()
    mass_y_pos = (attn[1][4, 0].numpy()[:, 1::2] * (y[4] > 0)).sum(1)
    np.testing.assert_allclose(rows.mass_y_pos, mass_y_pos, atol=1e-6)


def test_inputs_functions_predictions(tiny_store):
    path, run_id = tiny_store
    con = connect(path)
    assert (
        con.execute("select count(*) from inputs").fetchall()[0][0]
        == TINY_SAMPLES * TINY["n_points"]
    )
    assert (
        con.execute("select count(*) from predictions").fetchall()[0][0]
        == TINY_SAMPLES * TINY["n_points"]
    )
    assert (
        con.execute("select count(*) from functions").fetchall()[0][0]
        == TINY_SAMPLES * TINY["n_dims"]
    )
    # y in predictions agrees with inputs; labels follow the stored conjunction.
    bad = con.execute("""
        with lits as (select sample, literal, sign from functions where weight != 0),
        ok as (
            select i.sample, i.point, i.y,
                   coalesce(bool_and(i.x[l.literal + 1] = l.sign), true) as holds
            from inputs i left join lits l using (sample)
            group by all)
        select count(*) from ok where (y = 1) != holds
    """).fetchall()[0][0]
    assert bad == 0
    run = con.sql("select * from runs").df().iloc[0]
    assert run.run_id == run_id and run.n_samples == TINY_SAMPLES
    assert run.n_layers == TINY["n_layers"] and run.schema_version == SCHEMA_VERSION
    assert json.loads(run.card_json)["task"] == "conjunction"


def test_readers_other_than_attnstore(tiny_store):
    path, run_id = tiny_store
    for name, t in TABLES.items():
        if t.level != "run":
            continue  # analysis tables: tests/test_analysis.py
        con = duckdb.connect()
        rel = con.sql(
            f"select * from read_parquet('{path}/{name}/**/*.parquet', hive_partitioning = true)"
        )
        assert set(rel.columns) == set(t.columns), name
        data = ds.dataset(path / name, format="parquet", partitioning="hive").to_table()
        assert set(data.column_names) == set(t.columns), name
    kv = duckdb.execute(
        f"select key::varchar, value::varchar from parquet_kv_metadata("
        f"'{path}/attention/**/*.parquet')"
    ).fetchall()
    assert ("attnstore.schema_version", str(SCHEMA_VERSION)) in kv
    assert ("attnstore.run_id", run_id) in kv


def test_one_head_is_read_without_the_rest(tiny_store):
    """Each head is its own row group, so a head filter skips the other heads' row groups."""
    import pyarrow.parquet as pq

    path, _ = tiny_store
    f = next((path / "attention").glob("*/layer=0/*.parquet"))
    meta = pq.ParquetFile(f).metadata
    heads = {meta.row_group(i).column(0).statistics.min for i in range(meta.num_row_groups)}
    assert heads == set(range(TINY["n_heads"]))
    for i in range(meta.num_row_groups):
        st = meta.row_group(i).column(0).statistics
        assert st.min == st.max


def test_same_extraction_again_writes_nothing(tiny_checkpoint, tmp_path):
    first = extract(tmp_path, checkpoint=str(tiny_checkpoint), samples=3, seed=0)
    before = store_bytes(tmp_path)
    again = extract(tmp_path, checkpoint=str(tiny_checkpoint), samples=3, seed=0)
    assert again.existed and again.run_id == first.run_id
    assert store_bytes(tmp_path) == before


def test_overwrite_replaces_the_run(tiny_checkpoint, tmp_path):
    first = extract(tmp_path, checkpoint=str(tiny_checkpoint), samples=3, seed=0)
    other = extract(tmp_path, checkpoint=str(tiny_checkpoint), samples=3, seed=1)
    before = store_bytes(tmp_path)
    again = extract(tmp_path, checkpoint=str(tiny_checkpoint), samples=3, seed=0, overwrite=True)
    assert not again.existed and again.run_id == first.run_id
    after = store_bytes(tmp_path)

    def untokened(keys):  # data files are named by their transaction's token
        return {re.sub(r"part-[0-9a-f]{16}", "part-T", k) for k in keys}

    assert untokened(after) == untokened(before)
    old = {k for k in before if first.run_id in k and "part-" in k}
    assert old and not old & after.keys()  # the old version's files are gone
    runs_file = next(k for k in after if k.startswith(f"runs/run_id={first.run_id}"))
    assert after[runs_file] != before[runs_file]  # rewritten (new created_at)
    assert all(after[k] == before[k] for k in after if other.run_id in k)  # others untouched
    con = connect(tmp_path)
    assert con.execute("select count(*) from attention").fetchall()[0][0] == 2 * 3 * ROWS_PER_SAMPLE


def test_runs_differ_by_seed_task_and_samples(tiny_checkpoint, tmp_path):
    ids = {
        extract(tmp_path, checkpoint=str(tiny_checkpoint), samples=2, seed=0).run_id,
        extract(tmp_path, checkpoint=str(tiny_checkpoint), samples=2, seed=1).run_id,
        extract(tmp_path, checkpoint=str(tiny_checkpoint), samples=3, seed=0).run_id,
        extract(
            tmp_path, checkpoint=str(tiny_checkpoint), samples=2, seed=0, task="disjunction"
        ).run_id,
    }
    assert len(ids) == 4
    assert sorted(Store(tmp_path).keys("run")) == sorted(ids)


# --- crashes and races ------------------------------------------------------------------------

_EXTRACT = [
    sys.executable,
    "-m",
    "attnstore",
    "extract",
    "--no-analysis",
    "--samples",
    "40",
    "--batch-size",
    "2",
]


def _count_rows(path):
    con = connect(path)
    return {
        n: con.execute(f"select count(*) from {n}").fetchall()[0][0]
        for n, t in TABLES.items()
        if t.level == "run"
    }


@pytest.mark.parametrize("delay", [0.5, 1.5, 3.0])
def test_sigkill_leaves_no_partial_run_and_rerun_completes(tiny_checkpoint, tmp_path, delay):
    cmd = [*_EXTRACT, "--store", str(tmp_path), "--checkpoint", str(tiny_checkpoint)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if (tmp_path / "attnstore.json").exists():
        counts = _count_rows(tmp_path)
        complete = counts["runs"] == 1
        expected = 40 * ROWS_PER_SAMPLE if complete else 0
        assert counts["attention"] == expected, counts
        assert counts["inputs"] == (40 * TINY["n_points"] if complete else 0), counts
        # After recovery (asked for: readers delete nothing) the raw files agree with the
        # views: no orphan partition anywhere.
        Store(tmp_path).recover()
        raw = (
            duckdb.execute(
                f"select count(*) from read_parquet('{tmp_path}/attention/**/*.parquet',"
                " hive_partitioning = true)"
            ).fetchall()[0][0]
            if list((tmp_path / "attention").glob("**/*.parquet"))
            else 0
        )
        assert raw == expected
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert _count_rows(tmp_path)["attention"] == 40 * ROWS_PER_SAMPLE
    assert out.stdout.strip().splitlines()[-1] in Store(tmp_path).keys("run")


@pytest.mark.parametrize("step", ["written", "committed"])
def test_crash_around_the_commit(tiny_checkpoint, tmp_path, step):
    """A process that dies with every file written but no commit record leaves no run, and its
    files are removed by recovery (not by a reader); one that dies right after the record has
    its run."""
    cmd = [
        *_EXTRACT,
        "--store",
        str(tmp_path),
        "--checkpoint",
        str(tiny_checkpoint),
        "--samples",
        "4",
    ]
    proc = subprocess.run(cmd, env={**os.environ, CRASH_ENV: step}, capture_output=True)
    assert proc.returncode == 137
    assert list((tmp_path / "attention").glob("**/part-*.parquet"))
    counts = _count_rows(tmp_path)  # a reader: shows no orphan, deletes none
    done = step == "committed"
    assert counts["runs"] == int(done)
    assert counts["attention"] == (4 * ROWS_PER_SAMPLE if done else 0)
    assert list((tmp_path / "attention").glob("**/part-*.parquet"))
    Store(tmp_path).recover()
    assert bool(list((tmp_path / "attention").glob("**/*.parquet"))) == done


def test_two_writers_at_once(tiny_checkpoint, tmp_path):
    cmds = [
        [
            *_EXTRACT,
            "--store",
            str(tmp_path),
            "--checkpoint",
            str(tiny_checkpoint),
            "--seed",
            str(seed),
            "--samples",
            "10",
        ]
        for seed in (0, 1)
    ]
    procs = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds
    ]
    outs = [p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ids = {o[0].strip().splitlines()[-1] for o in outs}
    assert ids == set(Store(tmp_path).keys("run")) and len(ids) == 2
    assert _count_rows(tmp_path)["attention"] == 20 * ROWS_PER_SAMPLE


# --- bad input --------------------------------------------------------------------------------


def test_unwritable_store_path(tiny_checkpoint, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="not writable"):
        extract(blocker / "store", checkpoint=str(tiny_checkpoint), samples=2)


def test_newer_schema_version(tiny_checkpoint, tmp_path):
    extract(tmp_path, checkpoint=str(tiny_checkpoint), samples=2)
    (tmp_path / "attnstore.json").write_text(json.dumps({"schema_version": 99}))
    before = store_bytes(tmp_path)
    with pytest.raises(SchemaVersionError, match="99"):
        extract(tmp_path, checkpoint=str(tiny_checkpoint), samples=2, seed=5)
    with pytest.raises(SchemaVersionError):
        connect(tmp_path)
    assert store_bytes(tmp_path) == before


def test_corrupted_parquet_file_is_named(tiny_checkpoint, tmp_path):
    """A truncated data file of one run: every read of it names the file, `attnstore verify`
    names it, and a writer of another run is not held up by it (a writer checks only what it
    writes; it once read every footer of the store first) nor touches it."""
    first = extract(tmp_path, checkpoint=str(tiny_checkpoint), samples=2).run_id
    victim = next((tmp_path / "predictions").glob("**/*.parquet"))
    victim.write_bytes(victim.read_bytes()[:-20])
    before = store_bytes(tmp_path)
    with pytest.raises(StoreError, match=str(victim.name)) as err:
        Store(tmp_path).read("predictions", run_id=first)
    assert str(victim) in str(err.value) and "commit record" in str(err.value)
    with pytest.raises(StoreError, match=str(victim.name)):
        connect(tmp_path)
    with pytest.raises(StoreError, match=str(victim.name)):
        Store(tmp_path).verify()
    assert store_bytes(tmp_path) == before
    other = extract(tmp_path, checkpoint=str(tiny_checkpoint), samples=2, seed=9).run_id
    assert other != first and Store(tmp_path).read("predictions", run_id=other).num_rows > 0
    after = store_bytes(tmp_path)
    assert {k: v for k, v in after.items() if first in k} == {
        k: v for k, v in before.items() if first in k
    }


def test_zero_samples(tiny_checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="samples=0"):
        extract(tmp_path / "s", checkpoint=str(tiny_checkpoint), samples=0)
    assert not (tmp_path / "s").exists()


def test_n_dims_contradicting_the_checkpoint(tiny_checkpoint, tmp_path):
    extract(tmp_path, checkpoint=str(tiny_checkpoint), samples=2)
    before = store_bytes(tmp_path)
    with pytest.raises(ConfigError, match="n_dims=7"):
        extract(tmp_path, checkpoint=str(tiny_checkpoint), samples=2, n_dims=7)
    with pytest.raises(ConfigError, match="k=9"):
        extract(
            tmp_path,
            checkpoint=str(tiny_checkpoint),
            samples=2,
            task="sparse_disjunction",
            task_params={"k": 9},
        )
    assert store_bytes(tmp_path) == before


def test_not_a_store(tmp_path):
    with pytest.raises(StoreError, match="not an attnstore store"):
        Store(tmp_path / "missing")


@pytest.mark.parametrize("points", [1, 3])
def test_too_few_points_for_the_analysis_write_nothing(tiny_checkpoint, tmp_path, points):
    """A run the analysis would refuse (too few query rows for any k) is refused before it is
    extracted: nothing is committed, not even the store folder."""
    from attnstore.analysis.run import AnalysisConfig
    from attnstore.extraction import ExtractConfig
    from attnstore.pipeline import extract_and_analyze

    config = ExtractConfig(checkpoint=str(tiny_checkpoint), samples=2, points=points)
    with pytest.raises(ConfigError, match=f"of {points} points"):
        extract_and_analyze(tmp_path / "s", config, AnalysisConfig())
    assert not (tmp_path / "s").exists()
    config = ExtractConfig(checkpoint=str(tiny_checkpoint), samples=2, points=1)
    run, analysis = extract_and_analyze(tmp_path / "s", config, None)
    assert analysis is None and Store(tmp_path / "s").ids("run") == [run.run_id]


def test_bad_task_or_checkpoint_leave_no_store_folder(tiny_checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="conjuction"):
        extract(tmp_path / "a", checkpoint=str(tiny_checkpoint), samples=2, task="conjuction")
    with pytest.raises(Exception, match="does not exist"):
        extract(tmp_path / "b", checkpoint=str(tmp_path / "nope"), samples=2)
    for bad in ({"points": 0}, {"seed": 2**64}, {"seed": -1}, {"samples": 10**11}):
        with pytest.raises(ConfigError):
            extract(tmp_path / "c", checkpoint=str(tiny_checkpoint), **{"samples": 2, **bad})
    assert not any((tmp_path / n).exists() for n in "abc")


def test_the_filesystem_seam_is_one_protocol_known_only_to_fs():
    """Both filesystems implement every method of fs.FileSystem, and no module but fs.py names
    either of them (nothing else branches on which filesystem it has)."""
    import inspect
    from pathlib import Path

    import attnstore
    from attnstore import fs

    wanted = {
        name
        for name, value in vars(fs.FileSystem).items()
        if not name.startswith("_") and callable(value)
    } | {"has_locks"}
    for cls in (fs.LocalFS, fs.ObjectFS):
        missing = sorted(n for n in wanted if not hasattr(cls, n))
        assert not missing, (cls.__name__, missing)
        for name in wanted - {"has_locks"}:
            ours = inspect.signature(getattr(fs.FileSystem, name)).parameters
            theirs = inspect.signature(getattr(cls, name)).parameters
            assert list(theirs) == list(ours), (cls.__name__, name)
    package = Path(attnstore.__file__).parent
    naming = [
        str(f.relative_to(package))
        for f in package.rglob("*.py")
        if f.name != "fs.py" and ("LocalFS" in f.read_text() or "ObjectFS" in f.read_text())
    ]
    assert naming == []


def test_a_store_made_by_another_writer_meanwhile_is_not_a_stranger(tmp_path, monkeypatch):
    """Two writers making one new store at once (Ray workers of one sweep): the second found no
    attnstore.json, then the first made it before the second listed the folder, which then held
    'attnstore.json' and was refused as a folder of other things (seen in a two-node sweep)."""
    import attnstore.store as store_module
    from attnstore.fs import filesystem_for

    Store(tmp_path / "s", create=True)  # the first writer's store
    fs, root = filesystem_for(tmp_path / "s")
    real_exists = fs.exists
    monkeypatch.setattr(
        fs, "exists", lambda p: False if p.name == "attnstore.json" else real_exists(p)
    )
    store_module._check_place(fs, root, str(root))  # the second writer's check: no error
