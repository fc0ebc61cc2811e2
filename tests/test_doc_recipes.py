"""The docs' recipes for reading a store without attnstore, run as written (the store's place
aside): docs/store.md's plain DuckDB rule on a folder, and docs/object-storage.md's DuckDB
macro (on a folder and on S3), DuckDB over s3fs, pyarrow over s3fs, pyarrow's own S3 client
and Polars (where installed) against moto's S3 server (conftest's ``s3_server``).

Each recipe is the fenced block after a ``<!-- recipe: NAME -->`` line. Every answer must be
the rows of one committed version, whole: with a killed writer's files beside it, while an
overwrite has every file half written, after that overwrite (a reader that cached the
store's listing would read the old files), and in a loop while a writer overwrites the run
again and again, where a query that meets a file an overwrite just deleted is run again, as
the docs say."""

from __future__ import annotations

import importlib.util
import re
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from attnstore.store import Store
from tests.test_store_recovery import KEY, _write_all, write

DOCS = Path(__file__).resolve().parent.parent / "docs"
RECIPE = re.compile(r"<!-- recipe: ([\w-]+) -->\n( *)```\w+\n(.*?)\n *```", re.S)
VERSIONS = (3, 5)  # attention rows of the versions the writers commit, in turn


def recipes(doc: str) -> dict[str, str]:
    """The recipes of a page of docs/, by name, as written."""
    text = (DOCS / doc).read_text()
    found = {m[1]: textwrap.dedent(textwrap.indent(m[3], m[2])) for m in RECIPE.finditer(text)}
    assert found, f"no recipe in docs/{doc}"
    return found


def run_python(code: str, bucket: str) -> dict:
    """A Python recipe run as written, on ``bucket``'s store in place of attn/store."""
    code = code.replace("s3://attn/store", f"s3://{bucket}/store")
    namespace: dict = {}
    exec(compile(code.replace("attn/store", f"{bucket}/store"), "recipe", "exec"), namespace)
    return namespace


# --- the recipes, each a function answering the rows it reads -----------------------------------


def local_recipes(path: Path) -> dict[str, Callable[[], int]]:
    """Recipes on a folder: attention rows read."""
    rule = recipes("store.md")["duckdb-rule"]
    page = recipes("object-storage.md")

    def duckdb_rule() -> int:
        return len(duckdb.sql(rule.replace("STORE", str(path))).fetchall())

    def duckdb_macro() -> int:
        con = duckdb.connect()
        con.execute(page["duckdb-macro"])
        use = page["duckdb-macro-use"].replace("s3://attn/store", str(path))
        return len(con.sql(use).fetchall())  # one row per layer x head: the fake rows' heads

    return {"duckdb-rule": duckdb_rule, "duckdb-macro": duckdb_macro}


def s3_recipes(bucket: str) -> dict[str, Callable[[], int]]:
    """Recipes on s3://bucket/store: attention rows read (runs, for pyarrow's own client,
    which reads the commit records alone)."""
    page = recipes("object-storage.md")

    def duckdb_macro() -> int:
        ns = run_python(page["duckdb-s3"], bucket)
        assert len(ns["runs"].fetchall()) == 1
        ns["con"].execute(page["duckdb-macro"])
        use = page["duckdb-macro-use"].replace("s3://attn/store", f"s3://{bucket}/store")
        return len(ns["con"].sql(use).fetchall())

    def pyarrow_s3fs() -> int:
        return run_python(page["pyarrow-s3fs"], bucket)["attention"].num_rows

    def pyarrow_own_client() -> int:
        return run_python(page["pyarrow-own-client"], bucket)["runs"].num_rows

    out = {
        "duckdb-macro": duckdb_macro,
        "pyarrow-s3fs": pyarrow_s3fs,
        "pyarrow-own-client": pyarrow_own_client,
    }
    if importlib.util.find_spec("polars"):  # not a dependency of attnstore
        out["polars"] = lambda: run_python(page["polars"], bucket)["attention"].collect().height
    return out


def answers(found: dict[str, Callable[[], int]], rows: int) -> None:
    """Every recipe reads one whole version of ``rows`` attention rows (one run row)."""
    for name, read in found.items():
        want = 1 if name == "pyarrow-own-client" else rows
        assert read() == want, name


def _vanished(e: Exception) -> bool:
    """The error of a file an overwrite deleted (or replaced: a commit record) between a
    query's listing and its reading, as the docs name them."""
    text = f"{type(e).__name__}: {e} {e.__cause__!r}"
    words = ("No such file", "NoSuchKey", "FileNotFoundError", "Not Found", "no longer exists")
    return isinstance(e, FileNotFoundError) or any(w in text for w in words)


def again(read: Callable[[], int], tries: int = 10) -> int:
    """``read()``, run again, as the docs say, when a file it listed was deleted (or replaced)
    before it read it, or when it shows the committed run with no rows."""
    for attempt in range(tries):
        try:
            rows = read()
        except Exception as e:
            if not _vanished(e) or attempt == tries - 1:
                raise
            continue
        if rows or attempt == tries - 1:
            return rows
    raise AssertionError("unreachable")


def while_overwritten(found: dict[str, Callable[[], int]], where: str | Path) -> None:
    """The recipes read in turn while another process overwrites the run four times, each
    version whole: every answer one version's rows, never a mix or none."""
    errors: list[str] = []

    def overwrite() -> None:
        for n in (*VERSIONS, *VERSIONS):
            proc = write(where, "run", n, overwrite=True)
            if proc.returncode:
                errors.append(proc.stderr)

    writer = threading.Thread(target=overwrite)
    writer.start()
    reads = 0
    try:
        while writer.is_alive() or reads < len(found):
            for name, read in found.items():
                got = again(read)
                assert got in ((1,) if name == "pyarrow-own-client" else VERSIONS), (name, got)
                reads += 1
    finally:
        writer.join()
    assert not errors, errors
    answers(found, VERSIONS[-1])


def _story(where: str | Path, found: dict[str, Callable[[], int]]) -> None:
    old, new = VERSIONS
    assert write(where, "run", old).returncode == 0
    killed = write(where, "run", 4, overwrite=True, crash_at="written")
    assert killed.returncode == 137, killed.stderr  # its files stay, uncommitted
    answers(found, old)
    with Store(where).transaction("run", KEY["run"], overwrite=True) as txn:
        _write_all(txn, "run", new)  # every file of the new version written, none closed
        answers(found, old)
    answers(found, new)  # after the overwrite: nothing read from a stale listing
    while_overwritten(found, where)


def test_the_local_recipes_read_one_whole_version(tmp_path):
    path = tmp_path / "store"
    _story(path, local_recipes(path))


def test_the_s3_recipes_read_one_whole_version(s3_bucket):
    _story(f"s3://{s3_bucket}/store", s3_recipes(s3_bucket))


def test_the_polars_recipe(s3_bucket):
    pytest.importorskip("polars")
    where = f"s3://{s3_bucket}/store"
    assert write(where, "run", 3).returncode == 0
    assert s3_recipes(s3_bucket)["polars"]() == 3


def test_every_recipe_is_run():
    """A recipe added to the docs without a runner here fails this test."""
    assert set(recipes("store.md")) == {"duckdb-rule"}
    assert set(recipes("object-storage.md")) == {
        "duckdb-s3",
        "duckdb-macro",
        "duckdb-macro-use",
        "pyarrow-s3fs",
        "pyarrow-own-client",
        "polars",
    }
