"""attnstore report: a self-contained site, the same bytes twice, opened in a real browser.

The browser test drives Debian's Chromium (/usr/bin/chromium) with Playwright, the network
blocked; it is skipped, saying why, only where that Chromium is absent.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from attnstore.cli import cli
from attnstore.queries import query
from attnstore.report.browser import CHROMIUM, offline_chromium


def _copy(tiny_analysed_store, tmp_path) -> Path:
    src, _, _ = tiny_analysed_store
    dst = tmp_path / "store"
    shutil.copytree(src, dst)
    return dst


def _report(*args: str):
    return CliRunner().invoke(cli, ["report", *args])


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _page_data(page: Path) -> dict:
    """The JSON block of a report page."""
    text = page.read_text()
    return json.loads(re.search(r'id="page-data"[^>]*>(.*?)</script>', text, re.S).group(1))


def _one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def built(tiny_analysed_store, tmp_path_factory):
    """A report of a copy of the tiny analysed store: (store, report folder, run id)."""
    tmp = tmp_path_factory.mktemp("report")
    store = _copy(tiny_analysed_store, tmp)
    out = tmp / "site"
    result = _report("--store", str(store), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out / "index.html")
    return store, out, tiny_analysed_store[1]


def test_pages_and_files(built, tiny_analysed_store):
    store, out, run_id = built
    _, _, analyses = tiny_analysed_store
    assert (out / "assets" / "plotly.min.js").stat().st_size > 1_000_000
    heads = sorted(p.name for p in (out / "heads").glob("*.html"))
    assert heads == ["L0_H0.html", "L0_H1.html", "L1_H0.html", "L1_H1.html"]
    for page in [out / "index.html", out / "heads.html", *(out / "heads").glob("*.html")]:
        text = page.read_text()
        assert "http://" not in text and "https://" not in text, page
    index = (out / "index.html").read_text()
    assert run_id in index and "run_overview" in index and "contents" in index
    heads_page = (out / "heads.html").read_text()
    for name in (
        "heads_by_cluster_quality",
        "heads_by_literals",
        "heads_by_label_routing",
        "heads_by_xy_difference",
        "mean_silhouette (x queries)",
    ):
        assert name in heads_page, name
    head = _page_data(out / "heads" / "L0_H0.html")["head"]
    assert set(head["labels"]) == {"raw", "shared_keys"}


def test_same_bytes_twice(built, tmp_path):
    store, out, _ = built
    again = tmp_path / "again"
    assert _report("--store", str(store), "--out", str(again)).exit_code == 0
    assert _digests(again) == _digests(out)


def test_store_without_analysis(tiny_store, tmp_path):
    src, run_id = tiny_store
    store = tmp_path / "store"
    shutil.copytree(src, store)
    out = tmp_path / "site"
    result = _report("--store", str(store), "--out", str(out))
    assert result.exit_code == 0, result.output
    command = f"attnstore analyze --store {store} --run {run_id}"
    for page in ("index.html", "heads.html", "heads/L1_H1.html"):
        assert command in (out / page).read_text(), page
    assert "0" in _page_data(out / "heads" / "L1_H1.html")["head"]["samples"]


def test_bad_inputs(tiny_analysed_store, tmp_path):
    store = _copy(tiny_analysed_store, tmp_path)
    before = _digests(store)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    _one_line_error(_report("--store", str(store), "--out", str(a_file)), str(a_file))
    _one_line_error(
        _report("--store", str(store), "--out", str(store / "site")), "inside the store"
    )
    _one_line_error(
        _report("--store", str(store), "--run", "feedfacefeedface", "--out", str(tmp_path / "o")),
        "feedfacefeedface",
        tiny_analysed_store[1],
    )
    _one_line_error(
        _report(
            "--store", str(store), "--analysis", "0123456789abcdef", "--out", str(tmp_path / "o")
        ),
        "0123456789abcdef",
    )
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not _writable(locked):  # root writes anywhere: nothing to refuse
            _one_line_error(_report("--store", str(store), "--out", str(locked / "site")), "locked")
    finally:
        locked.chmod(0o700)
        assert _digests(store) == before


def _writable(folder: Path) -> bool:
    try:
        (folder / ".probe").touch()
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent: apt-get install chromium")
def test_in_chromium(built, tmp_path):
    from PIL import Image

    _, out, _ = built
    pages = [out / "index.html", out / "heads.html", *sorted((out / "heads").glob("*.html"))]
    requests: list[str] = []
    errors: list[str] = []
    with offline_chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        for path in pages:
            page.goto(path.as_uri())
            page.wait_for_selector(".js-plotly-plot")
        # From the heads map to a head page: click a cell of the heatmap.
        page.goto((out / "heads.html").as_uri())
        page.wait_for_selector("#map .nsewdrag")
        page.select_option("#metric", index=1)
        page.screenshot(path=str(tmp_path / "heads.png"), full_page=True)
        page.locator("#map").scroll_into_view_if_needed()
        box = page.locator("#map .nsewdrag").bounding_box()
        with page.expect_navigation():
            page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.75)
        assert page.url.endswith("heads/L1_H1.html"), page.url
        # From a ranking table's row to a head page.
        page.go_back()
        with page.expect_navigation():
            page.locator("table.ranking tbody tr").first.click()
        assert "/heads/L" in page.url
        # The attention viewer: switch sample and view, hover a cell, read the tooltip.
        page.goto((out / "heads" / "L1_H0.html").as_uri())
        page.wait_for_selector("#attention .nsewdrag")
        page.select_option("#sample", index=1)
        page.select_option("#view", "raw")
        page.locator("#attention").scroll_into_view_if_needed()
        box = page.locator("#attention .nsewdrag").bounding_box()
        page.mouse.move(box["x"] + 5, box["y"] + 5)
        page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.9, steps=5)
        page.wait_for_selector(".hovertext", state="attached")
        tip = page.locator(".hovertext").first.text_content()
        assert "query y" in tip or "query x" in tip, tip
        assert "key" in tip and "weight" in tip and "cluster of the query (raw)" in tip, tip
        assert "weight" in page.locator("#hover-info").text_content()
        page.screenshot(path=str(tmp_path / "head.png"), full_page=True)
    assert not errors, errors
    assert requests and all(u.startswith(("file://", "data:")) for u in requests), [
        u for u in requests if not u.startswith(("file://", "data:"))
    ]
    for shot in ("heads.png", "head.png"):
        colours = Image.open(tmp_path / shot).convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 50, shot


def test_run_writes_the_report_and_prints_it_first(tiny_checkpoint, tmp_path):
    out = tmp_path / "figures"
    args = ["run", "--store", str(tmp_path / "store"), "--checkpoint", str(tiny_checkpoint)]
    result = CliRunner().invoke(cli, [*args, "--samples", "3", "--top", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    index = out / "report" / "index.html"
    assert result.output.splitlines()[0] == f"report: {index}"
    assert index.is_file() and (out / "report" / "heads" / "L1_H1.html").is_file()


# --- a store with interventions -------------------------------------------------------------


@pytest.fixture(scope="module")
def iv_built(tiny_analysed_store, tmp_path_factory):
    """A report of a copy of the tiny analysed store holding every method one head at a time
    (knockout with two targets), a second resample of another seed, a joint intervention
    (L1 H0 and L1 H1 zeroed together), a position-restricted one (zero at y positions only),
    an activation patch and a path patch: (store, report folder, the one-at-a-time
    intervention ids, the joint id, the positional id, the activation patch id, the path
    patch id)."""
    from attnstore.interventions import intervene
    from attnstore.patching import patch

    tmp = tmp_path_factory.mktemp("iv_report")
    store = _copy(tiny_analysed_store, tmp)
    run_id = tiny_analysed_store[1]
    every = ["zero", "mean", "resample", "knockout"]
    done = intervene(store, run_id, methods=every, targets=["x_to_y_pos", "y_to_x"], batch_size=6)
    done += intervene(store, run_id, methods=["resample"], seed=7, batch_size=6)
    (joint,) = intervene(store, run_id, heads="L1H0,L1H1", batch_size=6)
    (positional,) = intervene(store, run_id, positions="y", batch_size=6)
    activation = patch(store, run_id, corruption="flip_label", batch_size=6).patch_id
    path = patch(store, run_id, corruption="flip_label", paths=["L0H0->L1H1.q"]).patch_id
    out = tmp / "site"
    result = _report("--store", str(store), "--out", str(out))
    assert result.exit_code == 0, result.output
    ids = [r.intervention_id for r in done]
    return store, out, ids, joint.intervention_id, positional.intervention_id, activation, path


def test_heads_page_maps_every_intervention(iv_built):
    store, out, ids, _, positional, _, _ = iv_built
    assert len(set(ids)) == 6  # zero, mean, resample x 2 seeds, knockout x 2 targets
    text = (out / "heads.html").read_text()
    data = _page_data(out / "heads.html")
    maps = [m for m in data["maps"] if m["source"] == "interventions"]
    assert sorted(m["intervention_id"] for m in maps) == sorted([*ids, positional])
    for m in maps:
        assert m["signed"] and m["name"] in text  # offered in the metric picker
        z = np.array(m["z"], dtype=float)
        assert z.shape == (2, 2) and np.isfinite(z).all()
    for method in ("zero", "mean", "resample", "knockout x_to_y_pos", "knockout y_to_x"):
        assert any(method in m["name"] for m in maps), method
    assert not any(m["signed"] for m in data["maps"] if m["source"] == "head_summary")
    for m in maps:  # each map is its intervention's late_delta_accuracy, head by head
        effects = query(store, "intervention_effects", intervention_id=m["intervention_id"])
        for r in effects.itertuples():
            assert m["z"][r.layer][r.head] == pytest.approx(r.late_delta_accuracy, abs=1e-4)
            for bound in ("lower", "upper"):
                expected = getattr(r, f"late_delta_accuracy_{bound}")
                assert m[bound][r.layer][r.head] == pytest.approx(expected, abs=1e-4)
        lower, z, upper = (np.array(m[k], dtype=float) for k in ("lower", "z", "upper"))
        assert (lower <= z + 1e-9).all() and (z <= upper + 1e-9).all()


def test_joint_and_positional_interventions_are_shown_as_what_they_are(iv_built):
    """A joint intervention (layer and head -1) gets no map but a row of the heads page's
    table of sets, with its interval and additivity gap (query additivity_gap), and a row on
    the page of each head of its set; a position-restricted one is labelled so."""
    store, out, _, joint, positional, _, _ = iv_built
    data = _page_data(out / "heads.html")
    assert joint not in {m.get("intervention_id") for m in data["maps"]}
    (named,) = [m["name"] for m in data["maps"] if m.get("intervention_id") == positional]
    assert "positions y only" in named
    others = [m["name"] for m in data["maps"] if m.get("intervention_id") != positional]
    assert not any("positions" in name for name in others), others
    heads = (out / "heads.html").read_text()
    table = re.search(r'<table class="sortable joint">.*?</table>', heads).group(0)
    (gap,) = query(store, "additivity_gap", intervention_id=joint).itertuples()
    assert gap.heads == "L1H0,L1H1" and gap.single_intervention_id is not None
    assert "additivity_gap [95% interval]" in table
    for value in (
        gap.joint_late_delta_accuracy,
        gap.joint_late_delta_accuracy_lower,
        gap.additivity_gap,
        gap.additivity_gap_upper,
    ):
        assert f"{value:.3f}" in table, (value, table)
    for layer, head in ((1, 0), (1, 1), (0, 0)):
        page = (out / "heads" / f"L{layer}_H{head}.html").read_text()
        assert (joint in page) == (layer == 1), (layer, head)


def test_head_pages_lead_with_their_causal_numbers(iv_built):
    """A head page opens on what the head carries: its row of every one-at-a-time
    intervention and of the activation patch, each estimate with its interval."""
    store, out, ids, _, positional, activation, path = iv_built
    patched = query(store, "heads_by_patching_effect", patch_id=activation)
    assert patched["restored_share"].notna().all()
    for layer, head in ((0, 0), (1, 1)):
        page = (out / "heads" / f"L{layer}_H{head}.html").read_text()
        body = page[page.index("<h1>") :]
        first = re.search(r"<h2>(.*?)</h2>", body).group(1)
        assert first == "What the head carries", first
        effects = re.search(r'<table class="sortable effects">.*?</table>', body).group(0)
        assert "late_delta_accuracy [95% interval]" in effects
        for iid in [*ids, positional]:
            rows = query(store, "intervention_effects", intervention_id=iid)
            (r,) = rows[(rows["layer"] == layer) & (rows["head"] == head)].itertuples()
            cell = re.search(rf"<td>{iid}</td><td>\d+</td><td>(.*?)</td>", effects).group(1)
            lo, hi = r.late_delta_accuracy_lower, r.late_delta_accuracy_upper
            assert cell == f"{r.late_delta_accuracy:.3f} [{lo:.3f}, {hi:.3f}]", cell
        series = _page_data(out / "heads" / f"L{layer}_H{head}.html")["head"]["effects"]
        assert sorted(e["intervention_id"] for e in series) == sorted([*ids, positional])
        by_point = query(store, "effect_by_position", layer=layer, head=head)
        for e in series:
            rows = by_point[by_point["intervention_id"] == e["intervention_id"]]
            rows = rows.sort_values("point")
            assert e["point"] == rows["point"].tolist()
            for column in ("delta_accuracy", "delta_accuracy_lower", "delta_accuracy_upper"):
                expected = rows[column].to_numpy(float)
                assert np.array(e[column], dtype=float) == pytest.approx(expected, abs=1e-4)
        table = re.search(r'<table class="sortable patches">.*?</table>', body).group(0)
        (r,) = patched[(patched["layer"] == layer) & (patched["head"] == head)].itertuples()
        assert activation in table and f"{r.restored_share:.3f} [" in table
    heads = (out / "heads.html").read_text()
    assert f"Path patch {path}" in heads and '<table class="sortable paths">' in heads
    maps = [m for m in _page_data(out / "heads.html")["maps"] if m["source"] == "patches"]
    assert [m["patch_id"] for m in maps] == [activation]


def test_same_bytes_twice_with_interventions_and_patches(iv_built, tmp_path):
    """The intervals (seeded bootstraps), the sets and the patches give the same bytes too."""
    store, out = iv_built[:2]
    again = tmp_path / "again"
    assert _report("--store", str(store), "--out", str(again)).exit_code == 0
    assert _digests(again) == _digests(out)


def test_a_head_page_without_interventions_names_the_command(built):
    store, out, run_id = built
    page = (out / "heads" / "L0_H0.html").read_text()
    assert "What the head carries" in page
    assert f"attnstore intervene --store {store} --run {run_id}" in page


def _page_data(page: Path) -> dict:
    text = page.read_text()
    return json.loads(re.search(r'id="page-data"[^>]*>(.*?)</script>', text, re.S).group(1))


def test_report_of_an_older_analysis_of_the_same_view(tiny_analysed_store, tmp_path):
    """--analysis of an older analysis of a view that has a newer one: every head page shows
    that analysis's clusters (query head_clusters of it), not an empty table."""
    from attnstore.analysis.run import analyze

    store = _copy(tiny_analysed_store, tmp_path)
    run_id, older = tiny_analysed_store[1], tiny_analysed_store[2]["shared_keys"]
    newer = analyze(store, run_id, view="shared_keys", k_max=4).analysis_id
    assert newer != older
    out = tmp_path / "site"
    result = _report("--store", str(store), "--analysis", older, "--out", str(out))
    assert result.exit_code == 0, result.output
    for page in sorted((out / "heads").glob("L*_H*.html")):
        layer, head = map(int, re.findall(r"\d+", page.stem))
        sample = int(re.search(r"<h2>Sample (\d+)", page.read_text()).group(1))
        table = re.search(r'<table class="sortable clusters">.*?</table>', page.read_text())
        rows = re.findall(r"<tr>(?:<td>.*?</td>)+</tr>", table.group(0))
        expected = sum(
            len(
                query(
                    store,
                    "head_clusters",
                    analysis_id=older,
                    layer=layer,
                    head=head,
                    sample=sample,
                    query_kind=kind,
                )
            )
            for kind in ("x", "y")
        )
        assert len(rows) == expected > 0, page


def _typical_by_hand(store: Path, analysis_id: str) -> dict[tuple[int, int], tuple[int, int]]:
    """Per head, (typical, cleanest) sample from the fits table, by the definition: a sample's
    silhouette is the mean over x and y of the best silhouette (0 where none); typical is
    the lower median's sample, the lowest on ties; cleanest the highest, the lowest on ties."""
    from attnstore.store import Store

    fits = Store(store).df("fits", analysis_id=analysis_id)
    fits["s"] = fits["best_silhouette"].fillna(0).astype(float)
    out = {}
    for (layer, head), g in fits.groupby(["layer", "head"]):
        per = g.groupby("sample")["s"].mean().sort_index()
        median = np.sort(per.to_numpy())[(len(per) - 1) // 2]
        typical = int(per[per == median].index.min())
        cleanest = int(per[per == per.max()].index.min())
        out[(int(layer), int(head))] = (typical, cleanest)
    return out


def test_head_pages_open_on_the_typical_sample(built, tiny_analysed_store):
    """Each head page shows its typical sample and says so; the cleanest one is in its picker."""
    store, out, _ = built
    by_hand = _typical_by_hand(store, tiny_analysed_store[2]["shared_keys"])
    for (layer, head), (typical, cleanest) in by_hand.items():
        page = (out / "heads" / f"L{layer}_H{head}.html").read_text()
        assert f"<h2>Sample {typical}, typical: nearest the median silhouette" in page
        assert f'src="L{layer}_H{head}_s{typical}.png"' in page
        options = re.findall(r'<option value="(\d+)">sample \d+: ([^<]*)</option>', page)
        assert options[0][0] == str(typical) and options[0][1].startswith("typical")
        why = dict(options)
        assert "cleanest" in why[str(cleanest)]  # a click away
        data = _page_data(out / "heads" / f"L{layer}_H{head}.html")
        assert set(data["head"]["samples"]) == set(why)


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent: apt-get install chromium")
def test_intervention_maps_in_chromium(iv_built, tmp_path):
    """An intervention's map is drawn on the diverging scale centred at 0, a metric's not;
    hovering a head of it shows its interval."""
    out = iv_built[1]
    maps = _page_data(out / "heads.html")["maps"]
    signed = next(i for i, m in enumerate(maps) if m["signed"])
    errors: list[str] = []
    with offline_chromium(tmp_path / "profile", viewport=None) as browser:
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((out / "heads.html").as_uri())
        page.wait_for_selector("#map .nsewdrag")
        trace = (
            "() => { const t = document.getElementById('map').data[0]; return [t.zmid, "
            "JSON.stringify(t.colorscale)]; }"
        )
        zmid, scale = page.evaluate(trace)
        assert zmid is None and "Viridis" in scale
        page.select_option("#metric", str(signed))
        page.wait_for_function("document.getElementById('map').data[0].zmid === 0")
        zmid, scale = page.evaluate(trace)
        assert zmid == 0 and "#67001f" in scale and "#053061" in scale
        page.locator("#map").scroll_into_view_if_needed()
        box = page.locator("#map .nsewdrag").bounding_box()
        page.mouse.move(box["x"] + 5, box["y"] + 5)
        page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.25, steps=5)
        page.wait_for_selector(".hovertext", state="attached")
        tip = page.locator(".hovertext").first.text_content()
        m = maps[signed]
        lo, hi = m["lower"][0][0], m["upper"][0][0]
        shown = re.search(r"95% interval \[(\S+), (\S+)\]", tip)
        assert "layer 0, head 0" in tip and shown, tip
        assert [float(v) for v in shown.groups()] == pytest.approx([lo, hi], abs=1e-3), tip
        # A head page's change by point: one line per intervention, its interval as error bars.
        head = _page_data(out / "heads" / "L0_H0.html")["head"]["effects"]
        page.goto((out / "heads" / "L0_H0.html").as_uri())
        page.wait_for_selector("#effects .nsewdrag")
        drawn = page.evaluate(
            "() => document.getElementById('effects').data.map((t) => [t.name, t.y.length, "
            "t.error_y.array.length, t.error_y.arrayminus.length])"
        )
        assert drawn == [[e["name"], len(e["point"]), len(e["point"]), len(e["point"])]
                         for e in head]  # fmt: skip
    assert not errors, errors


# --- what the pages read, and how the figures are drawn ----------------------------------------


def test_head_pages_show_the_stored_rows(built, tiny_analysed_store):
    """Each head page's attention, tokens and cluster labels, read through named queries, are
    the rows of the attention, inputs and clusters tables (read here with pyarrow)."""
    from attnstore.schema import full_rows
    from attnstore.store import Store

    store, out, run_id = built
    s = Store(store)
    T = 2 * s.run(run_id)["n_points"]
    for page in sorted((out / "heads").glob("L*_H*.html")):
        layer, head = map(int, re.findall(r"\d+", page.stem))
        data = _page_data(page)["head"]
        for sample, weights in data["samples"].items():
            rows = s.read("attention", run_id=run_id, layer=layer, head=head, sample=int(sample))
            rows = rows.sort_by("query_pos")
            expected = np.rint(full_rows(rows.column("weights"), T) * 1000).astype(int)
            np.testing.assert_array_equal(np.array(weights), expected)
            inputs = s.df("inputs", run_id=run_id, sample=int(sample)).sort_values("point")
            tokens = data["tokens"][sample]
            assert [t["kind"] for t in tokens] == ["x", "y"] * len(inputs)
            assert [t["y"] for t in tokens[::2]] == inputs["y"].tolist()
            signs = ["".join("+" if v > 0 else "−" for v in x) for x in inputs["x"]]
            assert [t["x"] for t in tokens[1::2]] == signs
            for view, analysis_id in tiny_analysed_store[2].items():
                clusters = s.df(
                    "clusters",
                    analysis_id=analysis_id,
                    layer=layer,
                    head=head,
                    sample=int(sample),
                )
                expected_labels = [None] * T
                for r in clusters.itertuples():
                    expected_labels[2 * r.point + (r.query_kind == "y")] = int(r.label)
                assert data["labels"][view][sample] == expected_labels, (page, view, sample)


def test_workers_draw_the_same_bytes_from_a_script_without_a_main_guard(built, tmp_path):
    """Figures drawn by two workers give the bytes of the report drawn in one process (the
    tiny store's four heads are drawn in-process). The workers are forked, not spawned: a
    spawned worker runs the calling script again, and one without `if __name__ ==
    "__main__"` then fails in every worker."""
    import os
    import subprocess
    import sys

    from attnstore.report.figures import workers

    store, out, _ = built
    assert workers(4) == 1 and workers(8) == min(2, len(os.sched_getaffinity(0)))
    script = tmp_path / "make_report.py"
    script.write_text(
        "from attnstore.report import build_report\n"
        f"done = build_report({str(store)!r}, {str(tmp_path / 'site')!r}, n_workers=2)\n"
        "print(sum(f.suffix == '.png' for f in done.files))\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "8"  # 4 heads x 2 figures
    assert _digests(tmp_path / "site") == _digests(out)
