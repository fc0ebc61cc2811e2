"""queries.Reader: many named queries on one connection, the answers query() gives, and a new
connection when a commit replaced the files the old one listed."""

from __future__ import annotations

import shutil

import pandas as pd

import attnstore.queries as queries
from attnstore.queries import Reader, query
from attnstore.store import Store
from tests.conftest import TINY_SAMPLES

ASKED = [
    ("head_summary", {"query_kind": "y"}),
    ("head_samples", {}),
    ("head_attention", {"layer": 1, "head": 0, "sample": 2}),
    ("sample_inputs", {"sample": 2}),
    ("head_cluster_labels", {"layer": 0, "head": 1, "sample": 3}),
    ("head_silhouette", {"layer": 0, "head": 1, "sample": 3}),
]


def test_a_reader_answers_as_query_on_one_connection(tiny_analysed_store, monkeypatch):
    path = tiny_analysed_store[0]
    expected = [query(path, name, **params) for name, params in ASKED]
    made = []
    connect = queries.connect
    monkeypatch.setattr(queries, "connect", lambda *a, **k: made.append(a) or connect(*a, **k))
    with Reader(path) as reader:
        for (name, params), answer in zip(ASKED, expected, strict=True):
            pd.testing.assert_frame_equal(reader.query(name, **params), answer)
    assert len(made) == 1


def test_a_reader_reads_a_commit_that_replaced_its_files(tiny_store, tiny_checkpoint, tmp_path):
    """An --overwrite between two queries deletes the files the connection listed: the next
    query is run on a new connection, with the run's lookups made again."""
    from attnstore.extraction import extract

    path = tmp_path / "store"
    shutil.copytree(tiny_store[0], path)
    run_id = tiny_store[1]
    with Reader(path) as reader:
        before = reader.query("sample_inputs", run_id=run_id, sample=1)
        old_files = set(Store(path).files("inputs"))
        again = extract(
            path,
            checkpoint=str(tiny_checkpoint),
            samples=TINY_SAMPLES,
            seed=3,
            batch_size=5,
            overwrite=True,
        )
        assert again.run_id == run_id and not old_files & set(Store(path).files("inputs"))
        after = reader.query("sample_inputs", run_id=run_id, sample=1)
    pd.testing.assert_frame_equal(after, before)  # the same prompts, from the new files
