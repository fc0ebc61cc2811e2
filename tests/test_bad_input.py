"""Every bad input named in issues 11 and 23, through the real command line: exit status 2, one
line on stderr naming the offending value, no traceback, and the store's files byte-identical.

Each case runs ``attnstore`` (in process, and a few as ``python -m attnstore``) in a fresh
temporary folder, on a fresh copy of the tiny analysed store.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import pickle
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
from click.testing import CliRunner

from attnstore.cli import cli

NOT_UTF8 = b"\xff\xfe\x00 not text"

# Files every case finds in its folder ({tmp}): a regular file where a folder would go, a link
# into the store, and figure manifests.
MANIFESTS = {
    "layer_text.toml": '[[figure]]\nkind = "head"\nlayer = "1"\nhead = 0\nsample = 0\n'
    'out = "a.png"\n',
    "figure_list.toml": "figure = [1, 2]\n",
    "figure_int.toml": "figure = 3\n",
    "figure_table.toml": '[figure]\nkind = "heads"\nout = "a.png"\n',
    "entry_not_table.toml": 'figure = [{ kind = "heads", out = "a.png" }, "b"]\n',
    "out_int.toml": '[[figure]]\nkind = "heads"\nout = 3\n',
    "store_list.toml": 'store = ["store"]\n[[figure]]\nkind = "heads"\nout = "a.png"\n',
    "kind_missing.toml": '[[figure]]\nout = "a.png"\n',
    "params_list.toml": '[[figure]]\nkind = "query"\nquery = "heads_by_cluster_quality"\n'
    'params = [1]\ncolumn = "quality"\nout = "a.png"\n',
    "out_in_store.toml": '[[figure]]\nkind = "heads"\nout = "fine.png"\n\n'
    '[[figure]]\nkind = "heads"\nout = "store/runs/heads.png"\n',
    "out_jpg.toml": '[[figure]]\nkind = "heads"\nout = "fine.png"\n\n'
    '[[figure]]\nkind = "heads"\nout = "heads.jpg"\n',
    "seeds.toml": f"[sweep]\nseeds = {list(range(100_000))}\nsamples = [100]\n",
}

P = "heads_by_cluster_quality"  # a query with one row per head for --param view=raw
RECURSIVE = "with recursive t(n) as (select 1 union all select n + 1 from t) select count(*) from t"
GROUPS = "select k, count(*) from (select i % 3000000 as k from range(6000000) t(i)) group by k"
HEAD = ["--layer", "0", "--head", "0", "--sample", "0"]
XY = ["--query-kind", "x"]

CASES = [
    # 1. exit status 2 for the library's errors and click's own
    ("missing checkpoint", ["eval", "--checkpoint", "{tmp}/nope.pt"], "nope.pt"),
    ("format xls", ["sql", "--store", "{store}", "select 1", "--format", "xls"], "'xls'"),
    ("unknown option", ["eval", "--samplez", "3"], "--samplez"),
    ("model config a folder", ["eval", "--checkpoint", "{ckpt}", "--model-config", "{tmp}"],
     "'{tmp}' is a directory"),
    # 2. outputs into a store
    ("query --out a store file",
     ["query", P, "--store", "{store}", "-p", "view=raw", "--format", "parquet",
      "--out", "{store}/runs/run_id={run}/part-0.parquet"],
     "output '{store}/runs/run_id={run}/part-0.parquet' lies inside the store '{real_store}'"),
    ("sql --out store/../store", ["sql", "--store", "{store}", "select 1", "--out",
                                   "{store}/../store/runs/x.csv"],
     "output '{store}/../store/runs/x.csv' lies inside the store '{real_store}'"),
    ("sql --out through a link", ["sql", "--store", "{store}", "select 1", "--out",
                                   "{tmp}/link/x.csv"],
     "output '{tmp}/link/x.csv' lies inside the store '{real_store}'"),
    ("sql --out attnstore.json", ["sql", "--store", "{store}", "select 1", "--format", "json",
                                   "--out", "{store}/attnstore.json"],
     "'{store}/attnstore.json' lies inside the store"),
    ("sql --out another store", ["sql", "--store", "{store}", "select 1", "--out",
                                  "{other}/x.csv"],
     "output '{other}/x.csv' lies inside the store '{real_other}'"),
    ("plot --out in store", ["plot", "heads", "--store", "{store}", "--out", "{store}/h.png"],
     "output '{store}/h.png' lies inside the store"),
    ("manifest out in store", ["plot", "--manifest", "{tmp}/out_in_store.toml", "--store",
                               "{store}"],
     "output '{tmp}/store/runs/heads.png' lies inside the store '{real_store}'"),
    ("run --out in store", ["run", "--store", "{store}", "--checkpoint", "{ckpt}", "--samples",
                            "2", "--out", "{store}/figures"],
     "output '{store}/figures' lies inside the store '{real_store}'"),
    ("run --out is store", ["run", "--store", "{store}", "--checkpoint", "{ckpt}", "--samples",
                            "2", "--out", "{store}"],
     "output '{store}' is the store '{real_store}'"),
    ("run --out in new store", ["run", "--store", "{tmp}/new", "--checkpoint", "{ckpt}",
                                "--samples", "2", "--out", "{tmp}/new/figures"],
     "output '{tmp}/new/figures' lies inside the store"),
    ("extract into a store's folder", ["extract", "--store", "{store}/runs", "--checkpoint",
                                       "{ckpt}", "--samples", "2"],
     "store '{store}/runs' lies inside the store '{real_store}'"),
    ("train --out in store", ["train", "--out", "{store}/model", "--steps", "1"],
     "output '{store}/model' lies inside the store"),
    # 3. outputs that cannot be written
    ("sql --out under /proc", ["sql", "--store", "{store}", "select 1", "--out",
                               "/proc/attnstore-test/x.csv"],
     "cannot write '/proc/attnstore-test/x.csv': "),
    ("query --out under a file", ["query", P, "--store", "{store}", "-p", "view=raw",
                                  "--format", "parquet", "--out", "{tmp}/afile/x.parquet"],
     "cannot write '{tmp}/afile/x.parquet': '{tmp}/afile' is a file, not a folder"),
    ("sql --out empty", ["sql", "--store", "{store}", "select 1", "--out", ""],
     "the output path is empty"),
    ("plot --out under /proc", ["plot", "heads", "--store", "{store}", "--out",
                                "/proc/attnstore-test.png"],
     "cannot write '/proc/attnstore-test.png': "),
    ("plot --out under a file", ["plot", "head", "--store", "{store}", *HEAD, "--out",
                                 "{tmp}/afile/deeper/h.svg"],
     "cannot write '{tmp}/afile/deeper/h.svg': '{tmp}/afile' is a file, not a folder"),
    ("run --out under /proc", ["run", "--store", "{store}", "--checkpoint", "{ckpt}",
                               "--samples", "2", "--out", "/proc/attnstore-figures"],
     "cannot write '/proc/attnstore-figures': "),
    ("train --out under a file", ["train", "--out", "{tmp}/afile/model", "--steps", "1"],
     "'{tmp}/afile' is a file, not a folder"),
    ("train --out empty", ["train", "--out", "", "--steps", "1"], "the output path is empty"),
    # 4. figure manifests with wrong types
    ("manifest layer text", ["plot", "--manifest", "{tmp}/layer_text.toml", "--store", "{store}"],
     "layer = '1' is not an int"),
    ("manifest figure list", ["plot", "--manifest", "{tmp}/figure_list.toml", "--store",
                              "{store}"],
     "figure 1 of '{tmp}/figure_list.toml' is 1, not a table"),
    ("manifest figure int", ["plot", "--manifest", "{tmp}/figure_int.toml", "--store", "{store}"],
     "figure = 3 is not an array of tables"),
    ("manifest [figure]", ["plot", "--manifest", "{tmp}/figure_table.toml", "--store",
                           "{store}"],
     "figure = {{'kind': 'heads', 'out': 'a.png'}} is not an array of tables"),
    ("manifest entry not a table", ["plot", "--manifest", "{tmp}/entry_not_table.toml",
                                    "--store", "{store}"],
     "figure 2 of '{tmp}/entry_not_table.toml' is 'b', not a table"),
    ("manifest out int", ["plot", "--manifest", "{tmp}/out_int.toml", "--store", "{store}"],
     "out = 3 is not a string"),
    ("manifest store list", ["plot", "--manifest", "{tmp}/store_list.toml"],
     "store = ['store'] is not a string"),
    ("manifest kind missing", ["plot", "--manifest", "{tmp}/kind_missing.toml", "--store",
                               "{store}"],
     "has no kind; known: emergence, head, heads"),
    ("manifest params list", ["plot", "--manifest", "{tmp}/params_list.toml", "--store",
                              "{store}"],
     "params = [1] is not a table"),
    ("manifest jpg", ["plot", "--manifest", "{tmp}/out_jpg.toml", "--store", "{store}"],
     "figure file '{tmp}/heads.jpg' must end in one of: .pdf, .png, .svg"),
    ("manifest not UTF-8", ["plot", "--manifest", "{tmp}/binary.toml", "--store", "{store}"],
     "'{tmp}/binary.toml' is not UTF-8"),
    ("manifest a folder", ["plot", "--manifest", "{tmp}", "--store", "{store}"],
     "'{tmp}' is a directory"),
    # 6. --task-param values that are not plain
    ("task-param python tag",
     ["eval", "--checkpoint", "{ckpt}", "--task-param",
      'p_plant=!!python/object/apply:os.system ["true"]'],
     "--task-param p_plant: '!!python/object/apply:os.system [\"true\"]' is not a plain value"),
    ("task-param binary tag",
     ["extract", "--store", "{store}", "--checkpoint", "{ckpt}", "--samples", "2",
      "--task-param", "p_plant=!!binary aGk="],
     "--task-param p_plant: '!!binary aGk=' is not a plain value"),
    ("task-param list", ["eval", "--checkpoint", "{ckpt}", "--task-param", "p_plant=[0.1, 0.2]"],
     "'[0.1, 0.2]' is not a plain value"),
    ("task-param mapping", ["train", "--out", "{tmp}/m", "--task-param", "p_plant={{a: 1}}"],
     "'{{a: 1}}' is not a plain value"),
    ("task-param broken yaml", ["run", "--store", "{store}", "--checkpoint", "{ckpt}",
                                "--samples", "2", "--out", "{tmp}/f", "--task-param",
                                "p_plant=[1,"],
     "'[1,' is not a plain value"),
    ("task-param date", ["eval", "--checkpoint", "{ckpt}", "--task-param", "p_plant=2024-01-01"],
     "'2024-01-01' is not a plain value"),
    ("task-param without =", ["eval", "--checkpoint", "{ckpt}", "--task-param", "p_plant"],
     "--task-param 'p_plant' is not of the form name=value"),
    ("task-param twice", ["extract", "--store", "{store}", "--checkpoint", "{ckpt}", "--samples",
                          "2", "--task-param", "p_plant=0.1", "--task-param", "p_plant=0.2"],
     "--task-param p_plant is given twice"),
    # 7. bad values of other options
    ("samples -1", ["eval", "--checkpoint", "{ckpt}", "--samples", "-1"], "samples=-1"),
    ("samples text", ["eval", "--samples", "many"], "'many' is not a valid integer"),
    ("points 0", ["extract", "--store", "{store}", "--checkpoint", "{ckpt}", "--samples", "2",
                  "--points", "0"], "points=0"),
    ("layer 99", ["plot", "head", "--store", "{store}", "--layer", "99", "--head", "0",
                  "--sample", "0", "--out", "{tmp}/h.png"], "layer 99 not in run"),
    ("empty store", ["sql", "--store", "", "select 1"], "the store path is empty"),
    ("empty store for run", ["run", "--store", "", "--out", "{tmp}/f"],
     "the store path is empty"),
    ("device tpu", ["extract", "--store", "{store}", "--checkpoint", "{ckpt}", "--samples", "2",
                    "--device", "tpu"], "'tpu'"),
    ("run format xls", ["run", "--store", "{store}", "--format", "xls"], "'xls'"),
    ("store is a file", ["analyze", "--store", "{tmp}/afile"], "'{tmp}/afile' is a file"),
    ("not a store", ["analyze", "--store", "{tmp}"], "'{tmp}' is not an attnstore store"),
    ("k range", ["analyze", "--store", "{store}", "--k-min", "5", "--k-max", "3"], "5..3"),
    ("unknown run", ["analyze", "--store", "{store}", "--run", "nope"], "unknown run 'nope'"),
    ("metric", ["plot", "heads", "--store", "{store}", "--metric", "nope", "--out", "{tmp}/h.png"],
     "'nope' is not one of"),
    ("column not numeric", ["plot", "query", P, "--store", "{store}", "-p", "view=raw",
                            "--column", "query_kind", *XY, "--out", "{tmp}/q.png"],
     "column 'query_kind' is not numeric"),
    ("query param", ["query", P, "--store", "{store}", "-p", "top=x"], "top='x'"),
    ("query param without =", ["query", P, "--store", "{store}", "-p", "view"],
     "parameter 'view' is not of the form name=value"),
    ("sql that writes", ["sql", "--store", "{store}", "delete from runs"], "got delete"),
    ("query dir missing", ["query", "list", "--query-dir", "{tmp}/nope"], "'{tmp}/nope'"),
    ("top 0", ["run", "--store", "{store}", "--checkpoint", "{ckpt}", "--samples", "2",
               "--out", "{tmp}/f", "--top", "0"], "top=0"),
    ("checkpoint not a checkpoint", ["eval", "--checkpoint", "{tmp}/afile"], "afile"),
    # 8. issue 23: tracebacks, hangs, misleading and silently wrong answers
    ("train seed -1", ["train", "--out", "{tmp}/m", "--seed", "-1"],
     "seed=-1 is not accepted; accepted: 0 <= seed <= "),
    ("train batch-size 0", ["train", "--out", "{tmp}/m", "--batch-size", "0"],
     "batch_size=0 must be at least 1"),
    ("train lr inf", ["train", "--out", "{tmp}/m", "--lr", "inf"],
     "lr=inf is not accepted; accepted: a finite number above 0"),
    ("train lr nan", ["train", "--out", "{tmp}/m", "--lr", "nan"], "lr=nan is not accepted"),
    ("train lr -1", ["train", "--out", "{tmp}/m", "--lr", "-1"], "lr=-1.0 is not accepted"),
    ("train n-dims 100000", ["train", "--out", "{tmp}/m", "--n-dims", "100000"],
     "is 256,000,000, above the limit of 67,108,864 (attnstore.limits.MAX_PROMPT_VALUES)"),
    ("train eval too large", ["train", "--out", "{tmp}/m", "--eval-samples", "1000000"],
     "the evaluation of 1,000,000 prompts x 40 points x 10 dims"),
    ("analyze k-max 100000", ["analyze", "--store", "{store}", "--k-max", "100000"],
     "k_max=100000 is above 32767"),
    ("analyze top-paths 0", ["analyze", "--store", "{store}", "--top-paths", "0"],
     "top_paths=0; accepted: 1 <= top_paths <= 32767"),
    ("intervene seed -1", ["intervene", "--store", "{store}", "--seed", "-1"],
     "seed=-1 is out of range"),
    ("sql lone surrogate", ["sql", "--store", "{store}", "select '\udcff'"],
     "SQL: character '\\udcff' at position 8 is not UTF-8 text"),
    ("query param surrogate", ["query", "head_emergence", "--store", "{store}", "-p",
                               "metric=x\udcff"],
     "parameter metric='x\\udcff' of query 'head_emergence': character '\\udcff' at position 1"),
    ("query param nan", ["query", "head_emergence", "--store", "{store}", "-p", "threshold=nan"],
     "parameter threshold='nan' of query 'head_emergence': not a finite number"),
    ("query param inf", ["query", "clean_but_inert", "--store", "{store}", "-p",
                         "min_quality=-inf"],
     "min_quality='-inf' of query 'clean_but_inert': not a finite number; accepted: -1 <= "),
    ("query param past int64", ["query", P, "--store", "{store}", "-p", "top=" + "9" * 30],
     "out of range; accepted: an int64"),
    ("sql runs forever", ["sql", "--store", "{store}", RECURSIVE, "--timeout", "1"],
     "SQL stopped at its time limit of 1 s"),
    ("query timeout 0", ["query", P, "--store", "{store}", "--timeout", "0"],
     "time limit 0.0 s is not accepted"),
    ("sql timeout nan", ["sql", "--store", "{store}", "select 1", "--timeout", "nan"],
     "time limit nan s is not accepted"),
    ("sql answer too large", ["sql", "--store", "{store}",
                              "select repeat('a', 1000) as s from range(100000)",
                              "--memory-limit", "10MB"],
     "SQL: its answer holds more than the memory limit of 10MB"),
    ("sql out of memory", ["sql", "--store", "{store}", GROUPS, "--memory-limit", "2MB"],
     "SQL needs more memory than its limit of 2MB"),
    ("sql memory-limit text", ["sql", "--store", "{store}", "select 1", "--memory-limit", "lots"],
     "memory limit 'lots' is not a size"),
    ("query memory-limit 1KB", ["query", P, "--store", "{store}", "--memory-limit", "1KB"],
     "memory limit '1KB' is below 1MB"),
    ("sweep 10^9 samples", ["sweep", "--store", "{tmp}/sw", "--checkpoints", "{ckpt}",
                            "--samples", "1000000000"],
     "samples (the prompts of one run) is 1,000,000,000, above the limit of 1,000,000"),
    ("sweep 100,000 seeds", ["sweep", "{tmp}/seeds.toml", "--store", "{tmp}/sw",
                             "--checkpoints", "{ckpt}"],
     "is 100,000, above the limit of 10,000 (attnstore.limits.MAX_SWEEP_ITEMS)"),
    ("sweep seed -1", ["sweep", "--store", "{tmp}/sw", "--checkpoints", "{ckpt}", "--seed", "-1"],
     "sweep: seed=-1 is out of range"),
]  # fmt: skip


@pytest.fixture
def place(tmp_path, monkeypatch, tiny_analysed_store, tiny_checkpoint):
    """A fresh folder (the working directory) holding a copy of the tiny analysed store, a
    second store, a regular file, a link into the store and the manifests; the values that
    fill the cases' ``{names}``."""
    src, run_id, _ = tiny_analysed_store
    store = tmp_path / "store"
    shutil.copytree(src, store)
    other = tmp_path / "other"
    shutil.copytree(src, other)
    (tmp_path / "afile").write_text("a regular file\n")
    (tmp_path / "link").symlink_to(store / "runs")
    (tmp_path / "binary.toml").write_bytes(NOT_UTF8)
    (tmp_path / "raw.pt").write_bytes(pickle.dumps({"a": [1, 2]}, protocol=4))  # torch warns
    for name, text in MANIFESTS.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    return {
        "tmp": str(tmp_path),
        "store": str(store),
        "real_store": str(store.resolve()),
        "other": str(other),
        "real_other": str(other.resolve()),
        "ckpt": str(tiny_checkpoint),
        "run": run_id,
    }


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes (None for a folder) under ``root``, lock files left out."""
    return {
        str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes())
        for p in sorted(root.rglob("*"))
        if ".locks" not in p.relative_to(root).parts
    }


def listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def assert_one_line(result, *needles: str) -> str:
    """Exit status 2, nothing on stdout, one line on stderr that holds every needle, and no
    exception escaped (CliRunner keeps an escaped exception out of the output: show it)."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError("".join(traceback.format_exception(*result.exc_info)))
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert "Traceback" not in result.output
    assert result.stdout.strip() == "", result.stdout
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def run_cli(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("args, needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_the_store_is_unchanged(args, needle, place):
    tmp, store = Path(place["tmp"]), Path(place["store"])
    stores = {p: snapshot(p) for p in (store, Path(place["other"]))}
    before = listing(tmp)
    result = run_cli(*(a.format(**place) for a in args))
    assert_one_line(result, needle.format(**place))
    for path, files in stores.items():
        assert snapshot(path) == files, f"{path} changed"
    assert listing(tmp) == before, "a file or folder was made beside the store"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["eval", "--checkpoint", "{ckpt}", "--task-param", "k=!!python/object/apply:os.system "
          '["touch pwned"]'], "--task-param k: '!!python/object/apply:os.system"),
        (["query", P, "--store", "{store}", "-p", "view=raw", "--format", "csv", "--out",
          "{store}/runs/run_id={run}/part-0.parquet"], "lies inside the store '{real_store}'"),
        (["plot", "heads", "--store", "{store}", "--out", "/proc/attnstore-test.png"],
         "cannot write '/proc/attnstore-test.png'"),
        (["plot", "--manifest", "{tmp}/store_list.toml"], "store = ['store'] is not a string"),
        (["sql", "--store", "{store}", "select 1", "--format", "xls"], "'xls'"),
        (["eval", "--checkpoint", "{tmp}/raw.pt"], "'{tmp}/raw.pt' is not a checkpoint"),
        (["sql", "--store", "{store}", "select '\udcff'"], "is not UTF-8 text"),
        (["sql", "--store", "{store}", RECURSIVE, "--timeout", "2"], "time limit of 2 s"),
    ],
    ids=["task-param tag", "query into store", "plot under /proc", "manifest store", "usage",
         "raw pickle", "SQL bytes not UTF-8", "SQL runs forever"],
)  # fmt: skip
def test_python_dash_m(args, needle, place):
    """The same through ``python -m attnstore``: the real exit status and stderr."""
    store = Path(place["store"])
    before = snapshot(store)
    proc = subprocess.run(
        [sys.executable, "-m", "attnstore", *(a.format(**place) for a in args)],
        capture_output=True,
        text=True,
        cwd=place["tmp"],
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert len(lines) == 1 and needle.format(**place) in lines[0], proc.stderr
    assert snapshot(store) == before
    assert not (Path(place["tmp"]) / "pwned").exists()


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A folder that refuses new files, as a read-only folder does for anyone but root (the
    tests may run as root, which file modes do not stop): opening a file for writing under it
    fails with EACCES."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def denied(path) -> bool:
        return Path(os.fsdecode(path)).absolute().is_relative_to(folder)

    def fail(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))

    real_os_open, real_open = os.open, builtins.open

    def os_open(path, flags, *args, **kwargs):
        if flags & writes and denied(path):
            fail(path)
        return real_os_open(path, flags, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        path_like = isinstance(file, (str, bytes, os.PathLike))
        if path_like and set(mode) & set("wax+") and denied(file):
            fail(file)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    return folder


@pytest.mark.parametrize(
    "args",
    [
        ["sql", "--store", "{store}", "select 1 as a", "--format", "csv", "--out", "{ro}/a.csv"],
        ["query", P, "--store", "{store}", "-p", "view=raw", "--format", "parquet", "--out",
         "{ro}/q.parquet"],
        ["plot", "heads", "--store", "{store}", "--out", "{ro}/heads.pdf"],
    ],
    ids=["sql csv", "query parquet", "plot pdf"],
)  # fmt: skip
def test_a_read_only_folder_is_one_line(args, place, read_only):
    before = snapshot(Path(place["store"]))
    result = run_cli(*(a.format(ro=read_only, **place) for a in args))
    out = args[-1].format(ro=read_only)
    assert_one_line(result, f"cannot write '{out}': Permission denied")
    assert list(read_only.iterdir()) == []
    assert snapshot(Path(place["store"])) == before


# --- 5. temporary files a killed writer left ---------------------------------------------------


def _stale(path: Path, tag: str, age_s: float = 3600) -> Path:
    """A zero-byte temporary file of ``path``, as a writer killed mid-write leaves it."""
    tmp = path.with_name(f".{path.name}.{tag}.tmp")
    tmp.write_bytes(b"")
    then = time.time() - age_s
    os.utime(tmp, (then, then))
    return tmp


@pytest.mark.parametrize(
    "args, name",
    [
        (["plot", "heads", "--store", "{store}", "--out", "{tmp}/figs/heads.png"], "heads.png"),
        (["sql", "--store", "{store}", "select 1 as a", "--format", "csv", "--out",
          "{tmp}/figs/a.csv"], "a.csv"),
    ],
    ids=["figure", "query output"],
)  # fmt: skip
def test_a_later_save_removes_a_killed_writers_temporary_files(args, name, place):
    import fcntl

    figs = Path(place["tmp"]) / "figs"
    figs.mkdir()
    out = figs / name
    stale = [_stale(out, "deadbeef"), _stale(out, "0123456789abcdef0123456789abcdef")]
    recent = _stale(out, "feedface", age_s=0)  # perhaps a writer that is just starting
    held = _stale(out, "c0ffee00")  # a live writer holds its lock, however long it takes
    other = _stale(figs / "other.png", "deadbeef")  # another output's: not ours to remove
    fd = os.open(held, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        result = run_cli(*(a.format(**place) for a in args))
    finally:
        os.close(fd)
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0
    assert not any(p.exists() for p in stale)
    assert recent.exists() and held.exists() and other.exists()
    assert sorted(p.name for p in figs.iterdir()) == sorted(
        [name, recent.name, held.name, other.name]
    )


def test_a_failed_save_leaves_no_temporary_file(place, monkeypatch):
    """A figure whose drawing fails while it is written leaves neither file nor temporary."""
    from matplotlib.figure import Figure

    from attnstore.plots.style import save_figure

    def boom(*args, **kwargs):
        raise RuntimeError("the renderer failed")

    fig = Figure()
    monkeypatch.setattr(fig, "savefig", boom)
    out = Path(place["tmp"]) / "figs" / "f.png"
    with pytest.raises(RuntimeError, match="the renderer failed"):
        save_figure(fig, out)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # drawn before any write


# --- 8. issue 23: a runs row that is not its checkpoint's, S3 endpoints, the environment -------


def _rewrite_runs_row(store: Path, **values) -> None:
    """The store's one runs row with ``values`` in place of its own, written back with its
    schema and metadata (a commit record edited by hand, not by pandas)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (record,) = store.glob("runs/run_id=*/commit.parquet")
    t = pq.read_table(record)
    for name, value in values.items():
        i = t.schema.get_field_index(name)
        t = t.set_column(i, t.schema.field(i), pa.array([value], t.schema.field(i).type))
    pq.write_table(t, record)


@pytest.mark.parametrize(
    "values, needle",
    [
        ({"n_layers": 1}, "runs row says n_layers=1, but its checkpoint '{ckpt}' has n_layers=2"),
        ({"n_heads": 4}, "runs row says n_heads=4, but its checkpoint '{ckpt}' has n_heads=2"),
        # as many prompt points in inputs as the row says, but more points than the positions
        ({"n_points": 16, "n_samples": 6}, "runs row says n_points=16, but its checkpoint"),
    ],
    ids=["n_layers", "n_heads", "n_points"],
)
def test_intervene_refuses_a_runs_row_that_is_not_its_checkpoints(place, values, needle):
    store = Path(place["store"])
    _rewrite_runs_row(store, **values)
    before = snapshot(store)
    result = run_cli("intervene", "--store", str(store))
    assert_one_line(result, needle.format(**place), "extract the run again")
    assert snapshot(store) == before


def test_an_endpoint_that_is_not_a_url_is_one_line(place, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "not a url")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    result = run_cli("sql", "--store", "s3://bucket/store", "select 1")
    assert_one_line(result, "Invalid endpoint: not a url (AWS_ENDPOINT_URL)")


@pytest.fixture
def not_s3():
    """An HTTP server on 127.0.0.1 that answers every request 200 with a body that is not S3's
    XML: its URL."""
    import http.server
    import threading

    class Garbage(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the standard library's name
            self.send_response(200)
            self.send_header("Content-Length", "7")
            self.end_headers()
            self.wfile.write(b"garbage")

        do_HEAD = do_PUT = do_POST = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_endpoint_that_is_not_s3_is_named_so(place, monkeypatch, not_s3):
    """Not 'Internal Server Error' (botocore's status for a 200 it cannot parse)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", not_s3)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    result = run_cli("sql", "--store", "s3://bucket/store", "select 1")
    line = assert_one_line(result, f"{not_s3} answered listing the bucket with something that "
                           "is not an S3 API response")  # fmt: skip
    assert "Internal Server Error" not in line


def test_a_bad_progress_interval_is_one_line(place, monkeypatch):
    store = Path(place["store"])
    before = snapshot(store)
    monkeypatch.setenv("ATTNSTORE_PROGRESS_SECONDS", "soon")
    result = run_cli("analyze", "--store", str(store), "--view", "per_example")
    assert_one_line(result, "ATTNSTORE_PROGRESS_SECONDS='soon' is not accepted")
    assert snapshot(store) == before


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "NaN", "-Infinity"])
def test_query_parameters_refuse_non_finite_floats_in_python_too(place, value):
    from attnstore import query
    from attnstore.errors import ConfigError

    with pytest.raises(ConfigError, match="not a finite number"):
        query(place["store"], "clean_but_inert", min_quality=value)
