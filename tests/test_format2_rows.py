"""Store format 2's attention rows: the causal keys only, bit for bit the model's, and the one
way back to full rows (schema.full_rows in Python, the full_weights macro in SQL); the opt-in
float16 precision and the error it states; the extraction's writer thread."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from click.testing import CliRunner

from attnstore.checkpoint import load_checkpoint
from attnstore.cli import cli
from attnstore.connection import connect
from attnstore.errors import ConfigError, StoreError
from attnstore.extraction import ExtractConfig, extract, prepare, run_id_for
from attnstore.schema import TABLES, full_rows
from attnstore.store import Store
from tests.conftest import TINY, TINY_SAMPLES

T = 2 * TINY["n_points"]


def _fresh_attention(path, run_id, checkpoint) -> np.ndarray:
    """A fresh forward pass over the run's stored prompts: (layer, sample, head, T, T)."""
    x, y = Store(path).prompts(Store(path).run(run_id))
    model = load_checkpoint(str(checkpoint)).model
    with torch.no_grad():
        attn = model(torch.tensor(x).float(), torch.tensor(y).float(), return_attn=True).attention
    return np.stack([a.numpy() for a in attn])


def _stored(path, run_id) -> pa.Table:
    t = Store(path).read("attention", run_id=run_id)
    return t.sort_by([(c, "ascending") for c in ("layer", "head", "sample", "query_pos")])


def _model_rows(attn: np.ndarray, t: pa.Table) -> np.ndarray:
    """The fresh pass's row of every stored row, in the stored order: (n_rows, T)."""
    idx = [t.column(c).to_numpy() for c in ("layer", "sample", "head", "query_pos")]
    return attn[tuple(idx)]


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def test_rows_hold_the_causal_keys_bit_for_bit(tiny_store, tiny_checkpoint):
    path, run_id = tiny_store
    t = _stored(path, run_id)
    model = _model_rows(_fresh_attention(path, run_id, tiny_checkpoint), t)
    qp = t.column("query_pos").to_numpy()
    lengths = pa.compute.list_value_length(t.column("weights")).to_numpy()
    np.testing.assert_array_equal(lengths, qp + 1)
    visible = np.arange(T)[None, :] <= qp[:, None]
    stored = t.column("weights").combine_chunks().flatten().to_numpy()
    np.testing.assert_array_equal(_bits(stored), _bits(model[visible]))
    # The keys not stored are exactly +0.0 in the model: nothing is lost by dropping them.
    assert (_bits(model[~visible]) == 0).all()
    np.testing.assert_array_equal(_bits(full_rows(t.column("weights"), T)), _bits(model))
    run = Store(path).run(run_id)
    assert run["precision"] == "float32" and run["max_abs_error"] == 0.0


def test_full_weights_in_sql_gives_back_the_full_rows(tiny_store, tiny_checkpoint):
    path, run_id = tiny_store
    con = connect(path)
    t = con.sql(
        "select layer, head, sample, query_pos, full_weights(a.weights, 2 * r.n_points) as w, "
        "full_weights(a.weights, 2 * r.n_points)::FLOAT[16] as fixed "
        "from attention a join runs r using (run_id) order by all"
    ).arrow()
    t = t.read_all() if hasattr(t, "read_all") else t
    model = _model_rows(_fresh_attention(path, run_id, tiny_checkpoint), t)
    w = t.column("w").combine_chunks()
    assert w.type.value_type == pa.float32()
    np.testing.assert_array_equal(_bits(w.flatten().to_numpy().reshape(-1, T)), _bits(model))
    fixed = t.column("fixed").combine_chunks().flatten().to_numpy().reshape(-1, T)
    np.testing.assert_array_equal(_bits(fixed), _bits(model))
    # And the summaries agree with the full rows.
    (bad,) = con.execute(
        "select count(*) from attention "
        "where list_max(weights) != max_weight or list_position(weights, max_weight) - 1 "
        "!= argmax_key"
    ).fetchone()
    assert bad == 0


def test_full_rows_reads_any_arrow_shape():
    rows = pa.array([[1.0], [0.25, 0.75], [0.5, 0.25, 0.25]], pa.list_(pa.float32()))
    want = np.array([[1, 0, 0, 0], [0.25, 0.75, 0, 0], [0.5, 0.25, 0.25, 0]], np.float32)
    np.testing.assert_array_equal(full_rows(rows, 4), want)
    np.testing.assert_array_equal(full_rows(rows.slice(1), 4), want[1:])
    chunked = pa.chunked_array([rows.slice(0, 1), rows.slice(1)])
    np.testing.assert_array_equal(full_rows(chunked, 4), want)
    assert full_rows(pa.chunked_array([], rows.type), 4).shape == (0, 4)
    with pytest.raises(StoreError, match="do not fit 2 keys"):
        full_rows(rows, 2)


def test_the_attention_table_refuses_rows_that_are_not_causal():
    ok = pa.table(
        {
            "head": pa.array([0, 0], pa.int16()),
            "sample": pa.array([0, 0], pa.int32()),
            "query_pos": pa.array([0, 1], pa.int16()),
            "query_kind": ["x", "y"],
            "point": pa.array([0, 0], pa.int16()),
            "weights": pa.array([[1.0], [0.5, 0.5]], pa.list_(pa.float32())),
            **{c: pa.array([1.0, 1.0], pa.float32()) for c in ("entropy", "max_weight")},
            "argmax_key": pa.array([0, 0], pa.int16()),
            **{c: pa.array([1.0, 1.0], pa.float32()) for c in ("mass_x", "mass_y", "mass_y_pos")},
        }
    )
    attention = TABLES["attention"]
    attention.check(ok)
    full = ok.set_column(5, "weights", pa.array([[1.0, 0.0], [0.5, 0.5]], pa.list_(pa.float32())))
    with pytest.raises(StoreError, match="1 rows do not hold exactly the weights of keys"):
        attention.check(full)
    # The grain check: sorted data in one pass, unsorted data grouped; repeats found in both.
    with pytest.raises(StoreError, match="1 rows repeat the grain"):
        attention.check(ok.take([0, 0]).set_column(5, "weights", ok.column("weights").take([0, 0])))
    attention.check(ok.take([1, 0]))  # unsorted, unique
    with pytest.raises(StoreError, match="1 rows repeat the grain"):
        attention.check(ok.take([1, 0, 1]))


def test_float32_run_ids_are_unchanged_and_float16_is_another_run():
    # The ids the README shows for the bundled model, from before format 2.
    assert prepare(ExtractConfig(samples=200)).run_id == "159e48a0d4cd324a"
    assert prepare(ExtractConfig(samples=1000)).run_id == "8a7ecea5711634ca"
    float16 = ExtractConfig(samples=200, precision="float16")
    assert prepare(float16).run_id not in {"159e48a0d4cd324a"}
    args = ("0" * 64, "conjunction", {}, 8, 12, 3)
    assert run_id_for(*args) == run_id_for(*args, precision="float32")
    assert run_id_for(*args) != run_id_for(*args, precision="float16")


@pytest.fixture(scope="module")
def float16_store(tmp_path_factory, tiny_checkpoint):
    path = tmp_path_factory.mktemp("float16")
    r = extract(
        path,
        checkpoint=str(tiny_checkpoint),
        samples=TINY_SAMPLES,
        seed=3,
        batch_size=5,
        precision="float16",
    )
    return path, r.run_id


def test_a_float16_run_states_its_largest_error_and_it_is_true(
    float16_store, tiny_store, tiny_checkpoint
):
    path, run_id = float16_store
    assert run_id != tiny_store[1]
    run = Store(path).run(run_id)
    assert run["precision"] == "float16"
    t = _stored(path, run_id)
    model = _model_rows(_fresh_attention(path, run_id, tiny_checkpoint), t)
    qp = t.column("query_pos").to_numpy()
    visible = np.arange(T)[None, :] <= qp[:, None]
    stored = t.column("weights").combine_chunks().flatten().to_numpy()
    assert stored.dtype == np.float32
    # Every stored weight is a float16 value, the model's rounded to nearest.
    np.testing.assert_array_equal(_bits(stored), _bits(stored.astype(np.float16)))
    np.testing.assert_array_equal(_bits(stored), _bits(model[visible].astype(np.float16)))
    error = np.abs(stored.astype(np.float64) - model[visible].astype(np.float64)).max()
    assert run["max_abs_error"] == error and 0 < error <= 2.0**-12
    # The summaries are the model's, whatever the precision: those of the float32 run.
    exact = _stored(*tiny_store)
    for c in ("entropy", "max_weight", "argmax_key", "mass_x", "mass_y", "mass_y_pos"):
        assert t.column(c).equals(exact.column(c)), c


def test_a_bad_precision_is_one_line_and_writes_nothing(tmp_path):
    store = tmp_path / "store"
    result = CliRunner().invoke(
        cli, ["extract", "--store", str(store), "--samples", "4", "--precision", "float64"]
    )
    assert result.exit_code == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "'float64'" in lines[0], result.stderr
    assert "float32" in lines[0] and "float16" in lines[0]
    assert not store.exists()
    with pytest.raises(ConfigError, match="precision 'bfloat16' is not one of float32, float16"):
        extract(store, samples=4, precision="bfloat16")
    assert not store.exists()


@pytest.mark.parametrize("where", ["writer", "model"])
def test_a_failure_on_either_thread_commits_nothing(tmp_path, tiny_checkpoint, monkeypatch, where):
    """An error building rows (the writer thread) or computing them (the model, this thread)
    is raised from extract, and the transaction leaves no run and no data file."""
    import attnstore.extraction as extraction

    calls = {"n": 0}

    def boom(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError(f"boom in the {where}")
        return real(*args, **kwargs)

    if where == "writer":
        real = extraction._attention_rows
        monkeypatch.setattr(extraction, "_attention_rows", boom)
    else:
        from attnstore.model import InContextModel

        real = InContextModel.forward
        monkeypatch.setattr(InContextModel, "forward", boom)
    store = tmp_path / "store"
    with pytest.raises(RuntimeError, match=f"boom in the {where}"):
        extract(store, checkpoint=str(tiny_checkpoint), samples=TINY_SAMPLES, batch_size=2)
    s = Store(store)
    assert s.ids("run") == []
    assert not list(store.glob("**/*.parquet"))
