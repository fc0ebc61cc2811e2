"""The report of a store someone hands you (issue 23, item 1): every stored string is text on
every page, in Chromium; every page carries the Content-Security-Policy; a stored value outside
its declared domain (a view, backend, query kind, intervention method or target) is refused.

The hostile store is a copy of the tiny analysed store whose commit records (and ``fits`` data
files) are rewritten with pyarrow: each free-text column holds markup, script, a ``</script>``,
a comment opener, an entity and the line separators, and the rewritten files keep their names
and their commit tokens, so the store stays committed as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from attnstore.cli import cli
from attnstore.report.browser import CHROMIUM, offline_chromium
from attnstore.report.site import CSP, DOMAINS
from attnstore.schema import TABLES

MARK = "xss-ran"  # what the hostile strings' scripts would log, set or alert
HOSTILE_VIEW = 'shared_keys"><img src=x onerror=alert(1)><script>alert(2)</script>'  # the issue's


def hostile(column: str) -> str:
    """A stored string that would run a script wherever it were written unescaped: in text, in
    an attribute (either quote), in a JSON block, as a URL; the column's name first."""
    return (
        f"{column}\"'><img src=x onerror=\"alert('{MARK}')\">"
        f"<script>window.XSS='{MARK}';alert('{MARK}')</script>"
        f"<svg onload=console.log('{MARK}')></svg>"
        f"</script><!--<script>alert('{MARK}')</script>-->"
        f"<a href=\"javascript:alert('{MARK}')\">{MARK}</a>&amp;&lt;\u2028\u2029"
    )


def _rewrite(path: Path, values: dict[str, object], tmp: Path) -> None:
    """Set ``values`` (column -> a value for every row, or a dict old -> new) in the Parquet
    file ``path``, keeping its schema and key-value metadata (the commit token): replaced in
    one rename."""
    table = pq.ParquetFile(path).read()
    metadata = table.schema.metadata
    for column, value in values.items():
        field = table.schema.field(column)
        i = table.schema.get_field_index(column)
        old = table.column(column).to_pylist()
        new = [value.get(v, v) for v in old] if isinstance(value, dict) else [value] * len(old)
        table = table.set_column(i, field, pa.array(new, field.type))
    pq.write_table(table.replace_schema_metadata(metadata), tmp / "rewrite.parquet")
    os.replace(tmp / "rewrite.parquet", path)


def _free_text(table: str) -> list[str]:
    """The text columns of a primary table a user could fill with anything: neither its ids
    nor the columns with a declared domain."""
    t = TABLES[table]
    ids = {key for key, _ in t.partition} | {"run_id"}
    declared = set(DOMAINS) | {"method", "target"}
    return [
        f.name for f in t.full_schema if pa.types.is_string(f.type) and f.name not in ids | declared
    ]


def _poison(store: Path, tmp: Path) -> list[str]:
    """Every free-text column of the store's runs and analyses, and the fits' notes, set to
    :func:`hostile`; returns the columns poisoned."""
    poisoned = []
    for table in ("runs", "analyses"):
        columns = _free_text(table)
        for record in sorted((store / table).rglob("commit.parquet")):
            _rewrite(record, {c: hostile(c) for c in columns}, tmp)
        poisoned += [f"{table}.{c}" for c in columns]
    for part in sorted((store / "fits").rglob("part-*.parquet")):
        _rewrite(part, {"notes": hostile("notes")}, tmp)
    for record in sorted((store / "analyses").rglob("commit.parquet")):
        _restate_bytes(store, record, tmp)
    return [*poisoned, "fits.notes"]


def _restate_bytes(store: Path, record: Path, tmp: Path) -> None:
    """The manifest of the commit record ``record`` (its files' bytes, which readers check)
    made to name the bytes of its files as they are now: the rewritten ones stay committed."""
    from attnstore.transaction import FILES_KEY

    table = pq.ParquetFile(record).read()
    metadata = dict(table.schema.metadata)
    files = json.loads(metadata[FILES_KEY.encode()])
    for entry in files:
        entry["bytes"] = (store / entry["path"]).stat().st_size
    metadata[FILES_KEY.encode()] = json.dumps(files, separators=(",", ":")).encode()
    pq.write_table(table.replace_schema_metadata(metadata), tmp / "rewrite.parquet")
    os.replace(tmp / "rewrite.parquet", record)


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _report(*args: str):
    return CliRunner().invoke(cli, ["report", *args])


def _pages(out: Path) -> list[Path]:
    return [out / "index.html", out / "heads.html", *sorted((out / "heads").glob("*.html"))]


@pytest.fixture(scope="module")
def hostile_reports(tiny_analysed_store, tiny_store, tmp_path_factory):
    """Two reports: of a poisoned copy of the tiny analysed store, and of a poisoned copy of
    the tiny store (no analysis: its pages print the analyze command, the store's path
    included) in a folder whose name is markup too. (report folders, poisoned columns)."""
    tmp = tmp_path_factory.mktemp("hostile")
    analysed = tmp / "analysed"
    shutil.copytree(tiny_analysed_store[0], analysed)
    columns = _poison(analysed, tmp)
    bare = tmp / "bare <b>&amp;'\" onmouseover=alert(1)"
    shutil.copytree(tiny_store[0], bare)
    _poison(bare, tmp)
    outs = []
    for store, name in ((analysed, "site"), (bare, "bare-site")):
        result = _report("--store", str(store), "--out", str(tmp / name))
        assert result.exit_code == 0, result.output
        outs.append(tmp / name)
    return outs, columns


def test_hostile_strings_are_escaped_in_the_page_source(hostile_reports):
    outs, columns = hostile_reports
    index = (outs[0] / "index.html").read_text()
    for column in ("runs.task", "runs.task_params_json", "runs.checkpoint", "runs.command"):
        # shown, as the text it is: the card or the contents table holds it escaped
        assert _escaped(hostile(column.split(".")[1])) in index, column
    assert any(column.endswith("card_json") for column in columns)
    for out in outs:
        for page in _pages(out):
            text = page.read_text()
            head = re.search(r"<head>(.*?)</head>", text, re.S).group(1)
            assert head.startswith(f'<meta http-equiv="Content-Security-Policy" content="{CSP}">')
            for made in ("<img src=x", "<svg", '<a href="javascript'):
                assert made not in text, (page, made)
            scripts = re.findall(r"<script([^>]*)>(.*?)</script>", text, re.S)
            for attrs, body in scripts:  # no inline code: data blocks and files of assets/
                if body:
                    assert attrs == ' id="page-data" type="application/json"', attrs
                    assert not re.search("[<>&\u2028\u2029]", body), page
                    json.loads(body)
                else:
                    assert re.fullmatch(r' src="(\.\./)?assets/[a-z.]+\.js"', attrs), attrs
    bare_index = (outs[1] / "index.html").read_text()
    assert "attnstore analyze --store" in bare_index and "onmouseover=alert" in bare_index
    assert '" onmouseover' not in bare_index  # the store's path: its quote is escaped


def _escaped(s: str) -> str:
    import html

    return html.escape(s, quote=True)


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent: apt-get install chromium")
def test_hostile_store_runs_no_script_in_chromium(hostile_reports, tmp_path):
    """Every page of both reports, opened from file:// and used (tables sorted, metrics and
    samples and views picked, charts hovered and clicked): no dialog, no script of the data
    run, no console error (a blocked inline script would log a CSP violation), no element the
    data made, the policy first in <head>."""
    outs, _ = hostile_reports
    dialogs: list[str] = []
    console: list[str] = []
    with offline_chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        states = {}
        for out in outs:
            for path in _pages(out):
                page.goto(path.as_uri())
                if page.locator(".chart").count():  # a heads page without maps has none
                    page.wait_for_selector(".js-plotly-plot .main-svg")
                _use(page)
                states[path] = _state(page)
    assert not dialogs, dialogs
    assert not console, console
    assert len(states) == 2 * 6
    for path, state in states.items():
        assert state["xss"] is None and state["made"] == 0, (path, state)
        scripts = ["page-data application/json", "plotly.min.js", "report.js"]
        assert state["scripts"] == scripts, (path, state["scripts"])
        assert state["first"].startswith('<meta http-equiv="Content-Security-Policy"'), path
        assert state["csp"] == CSP, path


def _use(page) -> None:
    """Sort every table, pick every option of every select, hover and click each chart."""
    for table in page.locator("table.sortable").all():
        for th in table.locator("th").all()[:3]:
            th.scroll_into_view_if_needed()
            th.click()
    for select in page.locator("select").all():
        for value in select.locator("option").evaluate_all("os => os.map(o => o.value)"):
            select.select_option(value)
    for chart in page.locator(".js-plotly-plot").all():
        chart.scroll_into_view_if_needed()
        box = chart.locator(".nsewdrag").first.bounding_box()
        for fx, fy in ((0.2, 0.2), (0.5, 0.5), (0.8, 0.8)):
            page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy, steps=3)
    if page.locator("#attention").count():
        assert "weight" in page.locator("#hover-info").text_content()


def _state(page) -> dict:
    """What a page's data could have made: a global, elements with handlers, scripts; and
    the first element of its <head>."""
    return page.evaluate(
        """() => ({
            xss: window.XSS === undefined ? null : String(window.XSS),
            made: document.querySelectorAll("img[src=x], svg[onload], [onerror], [onmouseover],"
                + " a[href^=javascript]").length,
            scripts: Array.from(document.scripts).map(s => s.hasAttribute("src")
                ? s.getAttribute("src").split("/").pop() : s.id + " " + s.type),
            first: document.head.firstElementChild.outerHTML,
            csp: document.head.firstElementChild.getAttribute("content"),
        })"""
    )


# --- values outside their declared domain -------------------------------------------------------


@pytest.fixture(scope="module")
def intervened_store(tiny_analysed_store, tmp_path_factory):
    """A copy of the tiny analysed store with one intervention (method zero): its record is
    where a method and a target are stored."""
    from attnstore.interventions import intervene

    store = tmp_path_factory.mktemp("declared") / "store"
    shutil.copytree(tiny_analysed_store[0], store)
    intervene(store, tiny_analysed_store[1], methods=["zero"], batch_size=6)
    return store


@pytest.mark.parametrize(
    ("table", "file", "column", "value", "accepted"),
    [
        ("analyses", "commit.parquet", "view", HOSTILE_VIEW, "per_example, raw, shared_keys"),
        ("analyses", "commit.parquet", "backend", "sklearn<script>", "sklearn, torch"),
        ("interventions", "commit.parquet", "method", "zero\nsecond line", "knockout"),
        ("interventions", "commit.parquet", "target", "<b>z</b>" * 50, "x_to_y_pos"),
        ("clusters", "part-*.parquet", "query_kind", "x'><script>", "x, y"),
    ],
    ids=["view", "backend", "method", "target", "query_kind"],
)
def test_values_outside_their_domain_are_refused(
    request, tiny_analysed_store, tmp_path, table, file, column, value, accepted
):
    """The report refuses, in one line naming the value and what is accepted, writing nothing
    and changing nothing in the store."""
    store = tmp_path / "store"
    if table == "interventions":
        shutil.copytree(request.getfixturevalue("intervened_store"), store)
    else:
        shutil.copytree(tiny_analysed_store[0], store)
    # The analysis of view raw: not the run's latest (shared_keys), which the report shows,
    # but its view is offered in every head page's view picker (as in the issue).
    raw = f"analysis_id={tiny_analysed_store[2]['raw']}"
    first = sorted((store / table).rglob(file), key=lambda f: (raw not in str(f), f))[0]
    # the x rows only where a column is in the grain, so that no row repeats another
    new = {"x": value} if column == "query_kind" else value
    _rewrite(first, {column: new}, tmp_path)
    if file != "commit.parquet":  # a data file: its record names its new bytes
        key = next(p for p in first.relative_to(store).parts if p.startswith("analysis_id="))
        _restate_bytes(store, store / "analyses" / key / "commit.parquet", tmp_path)
    before = _digests(store)
    out = tmp_path / "site"
    result = _report("--store", str(store), "--out", str(out))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    shown = repr(value if len(value) <= 80 else value[:80])
    assert f"{column} {shown}" in lines[0] and accepted in lines[0], lines[0]
    assert _digests(store) == before
    assert not out.exists()  # refused before anything is written


def test_json_in_pages_cannot_close_its_block():
    from attnstore.report.site import _json_in_html

    value = {"a": "</script><!--<script>&\u2028\u2029", "</script>": [1.5, None]}
    text = _json_in_html(value)
    assert not re.search("[<>&\u2028\u2029]", text), text
    assert json.loads(text) == value


def test_positions_outside_their_grammar_are_refused(intervened_store, tmp_path):
    """An intervention whose stored positions (params_json) are not all, x, y, N or N..M is
    refused in one line naming them, nothing written, the store unchanged."""
    store = tmp_path / "store"
    shutil.copytree(intervened_store, store)
    (record,) = sorted((store / "interventions").rglob("commit.parquet"))
    value = "<b>y</b>"
    params = json.loads(pq.ParquetFile(record).read().column("params_json")[0].as_py())
    _rewrite(record, {"params_json": json.dumps({**params, "positions": value})}, tmp_path)
    before = _digests(store)
    out = tmp_path / "site"
    result = _report("--store", str(store), "--out", str(out))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert f"changed_positions {value!r}, not all, x, y, N or N..M" in lines[0], lines[0]
    assert _digests(store) == before and not out.exists()


@pytest.fixture(scope="module")
def patched_store(tiny_analysed_store, tmp_path_factory):
    """A copy of the tiny analysed store with one activation patch: its record is where the
    corruption, target and positions are stored."""
    from attnstore.patching import patch

    store = tmp_path_factory.mktemp("patched") / "store"
    shutil.copytree(tiny_analysed_store[0], store)
    patch(store, tiny_analysed_store[1], corruption="flip_label", batch_size=6)
    return store


@pytest.mark.parametrize(
    ("column", "value", "accepted"),
    [
        ("corruption", "flip_label<script>", "flip_label, swap_function, drop_literal"),
        ("patch_target", "<b>z</b>", "z, q, k, v"),
        ("positions", "x'><img src=x>", "not all, x, y, N or N..M"),
    ],
)
def test_a_patch_outside_its_domain_is_refused(patched_store, tmp_path, column, value, accepted):
    store = tmp_path / "store"
    shutil.copytree(patched_store, store)
    (record,) = sorted((store / "patches").rglob("commit.parquet"))
    _rewrite(record, {column: value}, tmp_path)
    before = _digests(store)
    out = tmp_path / "site"
    result = _report("--store", str(store), "--out", str(out))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: patch "), result.output
    assert f"{column} {value!r}" in lines[0] and accepted in lines[0], lines[0]
    assert _digests(store) == before and not out.exists()
