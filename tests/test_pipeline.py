"""attnstore run: its figures and the report show a head on the same sample, a rerun on a store
that holds what it held keeps the report, and a store with interventions runs through."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from attnstore.cli import cli
from attnstore.extraction import ExtractConfig
from attnstore.pipeline import REPORT_KEY_FILE, run_pipeline
from attnstore.queries import query
from attnstore.report import REPORT_DIR
from tests.conftest import TINY

TOP = 4


@pytest.fixture(scope="module")
def ran(tiny_checkpoint, tmp_path_factory):
    """``run_pipeline`` on the tiny checkpoint: (its folder, the result)."""
    tmp = tmp_path_factory.mktemp("pipeline")
    result = run_pipeline(tmp / "store", tmp / "out", _extract(tiny_checkpoint), top=TOP)
    return tmp, result


def _extract(checkpoint) -> ExtractConfig:
    return ExtractConfig(checkpoint=str(checkpoint), samples=6)


def _report_files(out: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(out)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted((out / REPORT_DIR).rglob("*"))
        if p.is_file()
    }


def test_figures_and_report_show_each_head_on_its_typical_sample(ran):
    tmp, result = ran
    out = tmp / "out"
    typical = query(tmp / "store", "head_samples", analysis_id=result.analysis_id)
    typical = typical.set_index(["layer", "head"])["typical_sample"]
    assert len(result.top) == TOP
    for row in result.top.itertuples():
        assert row.sample == typical[(row.layer, row.head)]
        stem = f"L{row.layer}_H{row.head}"
        assert out / f"head_{stem}_{row.query_kind}_s{row.sample}.png" in result.figures
        page = (out / REPORT_DIR / "heads" / f"{stem}.html").read_text()
        assert f"<h2>Sample {row.sample}, typical:" in page
        assert (out / REPORT_DIR / "heads" / f"{stem}_s{row.sample}.png").is_file()


def test_a_rerun_keeps_the_report_until_the_store_changes(ran, tiny_checkpoint):
    from attnstore.analysis.run import analyze

    tmp, first = ran
    out = tmp / "out"
    assert not first.report_kept and (out / REPORT_KEY_FILE).is_file()
    before = _report_files(out)
    again = run_pipeline(tmp / "store", out, _extract(tiny_checkpoint), top=TOP)
    assert again.report_kept and again.report == first.report
    assert _report_files(out) == before  # not one file written again
    assert again.top.equals(first.top)

    analyze(tmp / "store", first.run_id, view="raw")  # the store changes: a new analysis
    after = run_pipeline(tmp / "store", out, _extract(tiny_checkpoint), top=TOP)
    assert not after.report_kept and after.analysis_id == first.analysis_id
    rewritten = _report_files(out)
    assert rewritten["report/index.html"][0] != before["report/index.html"][0]
    assert "raw" in rewritten["report/index.html"][1].decode()  # the contents list it

    (out / REPORT_DIR / "heads.html").write_text("edited by hand")
    fixed = run_pipeline(tmp / "store", out, _extract(tiny_checkpoint), top=TOP)
    assert not fixed.report_kept  # a report file changed since: written again
    assert _report_files(out)["report/heads.html"][1] == rewritten["report/heads.html"][1]


def test_run_on_a_store_with_interventions(ran, tiny_checkpoint, tmp_path):
    """The issue's case: an intervention in the store made `attnstore run` exit 1."""
    from attnstore.interventions import intervene

    src, result = ran
    store = tmp_path / "store"
    shutil.copytree(src / "store", store)
    intervene(store, result.run_id, methods=["zero", "knockout"], targets=["x_to_y"])
    out = tmp_path / "out"
    args = ["run", "--store", str(store), "--checkpoint", str(tiny_checkpoint), "--out", str(out)]
    ran_again = CliRunner().invoke(cli, [*args, "--samples", "6", "--top", "1"])
    assert ran_again.exit_code == 0, ran_again.output
    assert ran_again.output.splitlines()[0] == f"report: {out / REPORT_DIR / 'index.html'}"
    heads = (out / REPORT_DIR / "heads.html").read_text()
    assert (
        "late_delta_accuracy, zero z" in heads and "late_delta_accuracy, knockout x_to_y" in heads
    )
    kept = CliRunner().invoke(cli, [*args, "--samples", "6", "--top", "1"])  # nothing new
    assert kept.exit_code == 0, kept.output
    said = " (kept: the store holds what it held when it was written)"
    assert kept.output.splitlines()[0] == f"report: {out / REPORT_DIR / 'index.html'}{said}"


def test_extract_plans_its_analysis_once_before_writing(tiny_checkpoint, tmp_path, monkeypatch):
    """extract_and_analyze, what attnstore extract and each sweep item run, checks the analysis
    against the run's shape once, before the run is written."""
    from attnstore.analysis.run import AnalysisConfig
    from attnstore.pipeline import extract_and_analyze

    planned = []
    real = AnalysisConfig.plan

    def plan(self, n_points):
        planned.append((n_points, (tmp_path / "store").exists()))
        return real(self, n_points)

    monkeypatch.setattr(AnalysisConfig, "plan", plan)
    run, done = extract_and_analyze(
        tmp_path / "store", _extract(tiny_checkpoint), AnalysisConfig(view="raw")
    )
    assert planned == [(TINY["n_points"], False)]
    assert not run.existed and not done.existed


def test_run_draws_each_figure_once_and_the_same(ran):
    """The top heads' PNG figures are the report's own (drawn once), byte for byte what
    drawing them again gives."""
    from attnstore import plots

    tmp, result = ran
    out = tmp / "out"
    for row in result.top.itertuples():
        stem = f"L{row.layer}_H{row.head}_{row.query_kind}_s{row.sample}"
        data = plots.head_figure_data(
            tmp / "store", result.run_id, result.analysis_id, row.layer, row.head, row.sample
        )
        drawn = {
            f"head_{stem}.png": plots.figure_bytes(plots.head_figure(data), "png"),
            f"silhouette_{stem}.png": plots.figure_bytes(plots.silhouette_figure(data), "png"),
        }
        for name, raw in drawn.items():
            assert (out / name).read_bytes() == raw, name
