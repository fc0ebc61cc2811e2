"""The command line: help everywhere, one-line errors for user mistakes, JSON where promised."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from attnstore.cli import cli


def _run(*args):
    return CliRunner().invoke(cli, list(args))


def _commands(group, prefix=()):
    """Every command path under ``group``, asking each group as click does (``plot``'s
    subcommands are built from the figure registry when asked for)."""
    import click

    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


@pytest.mark.parametrize("command", [(), *_commands(cli)], ids=lambda c: " ".join(c) or "top")
def test_every_command_has_help(command):
    result = _run(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and len(result.output.splitlines()) > 3


def test_python_dash_m():
    out = subprocess.run(
        [sys.executable, "-m", "attnstore", "--help"], capture_output=True, text=True, check=True
    )
    assert "extract" in out.stdout and "train" in out.stdout


@pytest.mark.parametrize("command", [(), ("plot",), ("plot", "heads")], ids=" ".join)
def test_help_loads_nothing_heavy(command):
    """--help reads names only: no matplotlib (the figure registry draws lazily), no torch."""
    code = (
        "import sys\n"
        "from attnstore.cli import main\n"
        f"sys.argv = ['attnstore', *{list(command)!r}, '--help']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = {'matplotlib', 'torch', 'pandas', 'duckdb', 'sklearn'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Usage:" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_eval_json(tiny_checkpoint):
    result = _run("eval", "--checkpoint", str(tiny_checkpoint), "--samples", "20", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["task"] == "conjunction" and report["n_samples"] == 20
    assert set(report["accuracy_per_position"]) == {"model", "majority", "elimination"}


def _one_line_error(result, *needles):
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_unknown_task_lists_known(tmp_path):
    result = _run("train", "--task", "conjuction", "--out", str(tmp_path))
    _one_line_error(result, "'conjuction'", "conjunction", "disjunction", "parity")


def test_bad_n_dims_and_sparse_k(tmp_path):
    _one_line_error(_run("train", "--n-dims", "0", "--out", str(tmp_path)), "n_dims=0")
    _one_line_error(
        _run("train", "--task", "sparse_disjunction", "--n-dims", "3", "--out", str(tmp_path)),
        "k=4",
    )


def test_parity_too_large(tmp_path):
    _one_line_error(
        _run("train", "--task", "parity", "--n-dims", "64", "--out", str(tmp_path)), "n_dims=64"
    )


def test_missing_checkpoint(tmp_path):
    _one_line_error(_run("eval", "--checkpoint", str(tmp_path / "nope.pt")), "nope.pt")


def test_file_that_is_not_a_checkpoint(tmp_path):
    bad = tmp_path / "notes.safetensors"
    bad.write_text("hello")
    _one_line_error(_run("eval", "--checkpoint", str(bad)), "notes.safetensors")


def test_points_above_positions(tiny_checkpoint):
    _one_line_error(_run("eval", "--checkpoint", str(tiny_checkpoint), "--points", "500"), "500")


def test_family_other_than_san(tmp_path):
    state = {"_read_in.weight": torch.zeros(4, 2)}
    torch.save(state, tmp_path / "model_1.pt")
    (tmp_path / "config.yaml").write_text(
        "family: gpt2\nn_dims: 2\nn_positions: 3\nn_embd: 4\nn_layer: 1\nn_head: 1\n"
    )
    result = _run(
        "eval",
        "--checkpoint",
        str(tmp_path / "model_1.pt"),
        "--model-config",
        str(tmp_path / "config.yaml"),
    )
    _one_line_error(result, "'gpt2'", "san")


def test_extract_prints_run_id_last(tiny_checkpoint, tmp_path):
    result = _run(
        "extract", "--store", str(tmp_path), "--checkpoint", str(tiny_checkpoint), "--samples", "2"
    )
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip().splitlines()[-1]
    assert (tmp_path / "runs" / f"run_id={run_id}").is_dir()
    again = _run(
        "extract", "--store", str(tmp_path), "--checkpoint", str(tiny_checkpoint), "--samples", "2"
    )
    assert again.stdout.strip().splitlines()[-1] == run_id
    assert "already in the store" in again.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where there is no GPU")
def test_unusable_device_is_named(tmp_path):
    _one_line_error(_run("eval", "--device", "cuda"), "'cuda'", "usable: cpu")
    _one_line_error(_run("extract", "--store", str(tmp_path / "s"), "--device", "tpu"), "'tpu'")
    assert not (tmp_path / "s").exists()


def test_task_params_are_plain_values():
    from attnstore.cli.options import parse_params

    values = parse_params(("a=1e-3", "b=4", "c=true", "d=abc", "e='1'", "f=0.5"))
    assert values == {"a": 0.001, "b": 4, "c": True, "d": "abc", "e": "1", "f": 0.5}
    assert type(values["b"]) is int and type(values["a"]) is float


def test_train_on_short_prompts_prints_its_accuracy(tmp_path):
    """Prompts shorter than 10 points: the card's accuracy_last_N, not a KeyError."""
    result = _run(
        "train", "--n-dims", "3", "--n-points", "6", "--n-layers", "1", "--n-heads", "1",
        "--d-model", "8", "--steps", "2", "--eval-samples", "8", "--out", str(tmp_path / "m"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)["accuracy_last_6"]) == {"model", "majority", "elimination"}


@pytest.mark.parametrize("command", [(), ("query",), ("plot", "--help")], ids=" ".join)
def test_a_group_without_arguments_still_prints_its_help(command):
    result = _run(*command)
    assert "Usage:" in result.output and "Commands:" in result.output, result.output
    assert "Error" not in result.output


# --- what the long commands say (issue 19) ----------------------------------------------------


@pytest.fixture
def analysed_copy(tmp_path, tiny_analysed_store):
    """A copy of the tiny analysed store (two analyses, no intervention): its path and run."""
    import shutil

    src, run_id, _ = tiny_analysed_store
    shutil.copytree(src, tmp_path / "store")
    return tmp_path / "store", run_id


def _progress_lines(stderr: str, desc: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith(f"{desc}: ")]


def test_long_commands_write_plain_progress_lines_in_a_log(
    tiny_checkpoint, analysed_copy, tmp_path, monkeypatch
):
    """extract, analyze and intervene, with stderr no terminal: done/total, rate and ETA."""
    monkeypatch.setenv("ATTNSTORE_PROGRESS_SECONDS", "0")
    args = ["--store", str(tmp_path / "new"), "--checkpoint", str(tiny_checkpoint)]
    r = _run("extract", *args, "--samples", "6", "--batch-size", "3")
    assert r.exit_code == 0, r.output
    assert "\r" not in r.stderr
    assert _progress_lines(r.stderr, "extract")[-1].startswith("extract: 6/6 (100%), ")
    assert _progress_lines(r.stderr, "analyze")[-1].startswith("analyze: 6/6 (100%), ")
    assert " sample/s, ETA 0s" in _progress_lines(r.stderr, "analyze")[-1]
    r = _run("intervene", "--store", str(analysed_copy[0]))
    assert r.exit_code == 0, r.output
    passes = 2  # layers x chunks of the replay, for one intervention
    assert _progress_lines(r.stderr, "intervene")[-1].startswith(
        f"intervene: {passes}/{passes} (100%), "
    )


def test_run_says_what_its_columns_mean_and_what_to_do_next(
    tiny_checkpoint, analysed_copy, tmp_path
):
    store, run_id = analysed_copy
    out = tmp_path / "figures"
    r = _run(
        "run", "--store", str(store), "--checkpoint", str(tiny_checkpoint), "--samples", "12",
        "--seed", "3", "--top", "1", "--out", str(out),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    columns = lines[lines.index("columns:") + 1 : lines.index("figures:")]
    header = lines[lines.index("columns:") - 2].split()
    assert [c.split()[0] for c in columns] == header  # one line per column, in order
    meaning = dict(c.split(None, 1) for c in columns)
    assert meaning["quality"] == "mean over samples of the best silhouette, 0 where none"
    assert meaning["layer"] == "the head's layer, from 0"
    assert "typical" in meaning["sample"]
    assert "Clean clusters are not evidence that a head is used" in r.stdout
    assert f"  attnstore intervene --store {store}   #" in r.stdout
    assert f"  attnstore report --store {store} --out {out / 'report'} --open   #" in r.stdout


def test_an_empty_thresholded_answer_says_what_each_threshold_dropped(analysed_copy):
    """clean_but_inert at min_quality=1 keeps no head; the note counts, by running the query
    with the thresholds relaxed, the rows there are (2 analyses x 2 layers x 2 heads, x
    queries, no intervention yet) and what each threshold drops."""
    store, _ = analysed_copy
    r = _run("query", "clean_but_inert", "--store", str(store), "-p", "min_quality=1")
    assert r.exit_code == 0, r.output
    assert "(no rows)" in r.stdout
    assert r.stderr.strip() == (
        "note: no rows pass min_quality=1 and max_effect=0.01; at the loosest thresholds "
        "(min_quality=-1, max_effect=1) the query has 8 rows, of which min_quality=1 drops 8, "
        "max_effect=0.01 drops 0"
    )
    r = _run("query", "clean_but_inert", "--store", str(store), "-p", "min_quality=-1")
    assert r.exit_code == 0 and r.stderr == ""  # an answer with rows needs no note


@pytest.mark.parametrize(
    "line, needle",
    [
        ("-- Thresholds: top.", "threshold 'top' is not a declared int or float parameter"),
        ("-- Thresholds: min_x.", "threshold 'min_x' is not a declared"),
        ("-- Thresholds: max_q.", "threshold 'max_q' is not a declared"),  # no high bound
    ],
)
def test_a_thresholds_header_names_bounded_min_or_max_parameters(analysed_copy, tmp_path, line,
                                                                 needle):  # fmt: skip
    store, _ = analysed_copy
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "mine.sql").write_text(
        "-- mine: runs.\n--\n-- Parameters:\n--   $top: int[1..] = 3  rows\n"
        "--   $max_q: float[0..] = 1.0  a cap\n"
        f"{line}\n-- Grain: run_id.\n-- Columns:\n--   run_id  the run\n"
        "select run_id from runs where $top > 0 and $max_q >= 0\n"
    )
    r = _run("query", "mine", "--store", str(store), "--query-dir", str(tmp_path / "q"))
    _one_line_error(r, needle)


def test_sweep_names_what_it_writes_and_reads_before_its_first_item(
    tiny_checkpoint, tmp_path, monkeypatch
):
    monkeypatch.setenv("ATTNSTORE_PROGRESS_SECONDS", "0")
    spec = tmp_path / "spec.toml"
    spec.write_text(f'[sweep]\nstore = "elsewhere"\ncheckpoints = ["{tiny_checkpoint}"]\n')
    monkeypatch.chdir(tmp_path)
    r = _run("sweep", str(spec), "--samples", "4")
    assert r.exit_code == 0, r.output
    lines = r.stderr.splitlines()
    store = tmp_path / "elsewhere"
    assert lines[0].endswith(f": 1 items into the store {store}")
    assert lines[1] == f"  reads checkpoint {tiny_checkpoint.name}: {tiny_checkpoint}"
    assert lines[2].startswith("sweep: 1/1 (100%), ")
    assert "A spec is like code" in _run("sweep", "--help").stdout


@pytest.mark.parametrize("command", [("sql",), ("query", "run")], ids=" ".join)
def test_sql_and_query_say_their_bounds(command):
    text = " ".join(_run(*command, "--help").stdout.split())
    assert "--timeout SECONDS" in text and "[default: 60.0]" in text
    assert "--memory-limit SIZE" in text and "[default: 1GB]" in text


# --- attnstore query prints without pandas (issue 20) -----------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("query", "heads_by_cluster_quality"),
        ("query", "heads_by_label_routing", "--format", "csv"),
        ("sql", "select run_id, task, n_layers from runs"),
    ],
    ids=" ".join,
)
def test_query_loads_nothing_heavy(tiny_analysed_store, command):
    """A query whose answer holds numbers and text is printed straight from Arrow: neither
    pandas (a fifth of a second of its start) nor torch, sklearn or matplotlib is loaded, nor
    pyarrow.compute (the store's lookups filter and sort without it: 30 ms)."""
    store, _, _ = tiny_analysed_store
    code = (
        "import sys\n"
        "from attnstore.cli import main\n"
        f"sys.argv = ['attnstore', *{list(command)!r}, '--store', {str(store)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = {'matplotlib', 'torch', 'pandas', 'sklearn', 'scipy'}\n"
        "loaded = {m.split('.')[0] for m in sys.modules} | set(sys.modules)\n"
        "print(sorted((heavy | {'pyarrow.compute'}) & loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) > 2  # the answer, then the modules
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


EDGE_CASES = [  # answers whose text pandas writes in its own way
    "select 1 as a, 2.5::double as b, 'x' as c, true as d, -3::tinyint as e",
    "select * from (values (1, 1.0::float, 1e-5, 'a,b', 'q\"uote'),"
    " (2, 0.85::float, 1e16, 'new\nline', 'tab\there'),"
    " (3, -0.0::float, 123456.789::double, null, 'cr\rx')) t(i, f, d, s, s2)",
    "select x::double / 7 as d, (x / 3)::float as f, x::varchar as s from range(-5, 30) r(x)",
    "select 'nan'::double as n, 'inf'::double as i, '-inf'::double as j, 1e300 as big, "
    "1e-300 as small, 0.1::double + 0.2 as s, 123456789012345678::double as p "
    "union all select null, 2, 3, 4, 5, 6, 7",
    "select 'αβγ' as greek, '日本語' as cjk, '' as empty, ' lead' as lead, "
    "repeat('long', 20) as long_text, 9223372036854775807 as big",
    'select 1 as "my col", 2.5::float as "tab\tname", \'x\' as "comma,name"',
    "select 'a' as s, false as b union all select null, true",
    "select * from (values (1::int, true, null::varchar, null::int), (null, null, null, null),"
    " (300, false, null, null)) t(i, a_long_boolean_name, s, n)",
    "select null::varchar as s, null::bigint as n, null::boolean as b, null::double as d",
    "select case when x < 10000 then null else x::varchar end as s, case when x >= 10000 then"
    " null else x end as i, case when x % 3 = 0 then null else x % 2 = 0 end as b"
    " from range(0, 20000) r(x)",
]


def test_query_text_is_what_pandas_writes(tiny_analysed_store):
    """The table and CSV printed from Arrow are, byte for byte, what pandas writes of the
    DataFrame the library returns: for every named query of the store and for answers that
    test pandas' corners (NaN, inf, float32, quotes, tabs, wide characters); an answer of
    other columns goes through pandas itself."""
    import duckdb

    from attnstore.cli import answers
    from attnstore.cli.query import frame_text
    from attnstore.queries import Reader, frame, load_queries, run_query

    store, _, _ = tiny_analysed_store
    found = []
    with Reader(store) as reader:
        for name, q in load_queries().items():
            values = {p.name: 0 for p in q.params if p.required}
            try:
                found.append(run_query(store, name, values, reader=reader, as_frame=False))
            except Exception:  # noqa: BLE001 - a query this store cannot answer (two runs)
                continue
    con = duckdb.connect()
    found += [con.sql(text).to_arrow_table() for text in EDGE_CASES]
    printed = [a for a in found if a.num_rows and answers.plain(a)]
    assert len(printed) >= 20
    for answer in printed:
        df = frame(answer)
        assert answers.table_text(answer) == frame_text(df, "table"), answer.column_names
        assert answers.csv_text(answer) == frame_text(df, "csv"), answer.column_names
    lists = con.sql("select [1, 2] as l").to_arrow_table()
    assert not answers.plain(lists)  # a list column: printed by pandas


def test_query_of_other_columns_prints_through_pandas(tiny_analysed_store):
    """head_attention's full_weights is a list per row: the answer is printed by pandas."""
    store, _, _ = tiny_analysed_store
    r = _run("query", "head_attention", "--store", str(store), "-p", "layer=0", "-p", "head=0")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0].split() == [
        "run_id", "layer", "head", "sample", "query_pos", "query_kind", "point", "full_weights",
    ]  # fmt: skip


def test_a_named_query_connection_makes_the_shared_views_it_reads(tiny_analysed_store):
    """A named query's connection makes only the shared macros and views its SQL names, and
    theirs in turn (shared_for): each view alone, so made, reads (a view or macro missing from
    the closure is an error as the view is made); every named query's closure is a subset."""
    from attnstore.connection import SHARED_VIEWS, connect, shared_for, view_sql
    from attnstore.queries import load_queries

    store, _, _ = tiny_analysed_store
    for view in SHARED_VIEWS:
        con = connect(store, comments=False, for_sql=f"select * from {view}")
        con.execute(f"select * from {view} limit 0").fetchall()
        made = {r[0] for r in con.execute("select view_name from duckdb_views()").fetchall()}
        con.close()
        assert made & set(SHARED_VIEWS) == set(shared_for(f"select * from {view}")[1]), view
    assert shared_for(view_sql("head_summary"))[1] == [
        "problem_fits", "literal_hits", "head_fits", "head_literals", "head_summary",
    ]  # fmt: skip
    sizes = [len(shared_for(q.sql)[1]) for q in load_queries().values()]
    assert max(sizes) <= len(SHARED_VIEWS) and min(sizes) < len(SHARED_VIEWS) // 2
