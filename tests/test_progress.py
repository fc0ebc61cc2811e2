"""Progress on stderr: a bar on a terminal, plain lines in a log."""

from __future__ import annotations

import io
import sys

import pytest

from attnstore.errors import ConfigError
from attnstore.progress import DEFAULT_SECONDS, PlainLines, plain_seconds, progress_bar


def test_a_line_says_done_of_total_rate_time_left_and_the_postfix():
    bar = PlainLines(total=5000, desc="train", unit="step", every=0, file=io.StringIO())
    bar.update(1200)
    bar.set_postfix(loss="0.4123")
    assert bar.line(100.0) == "train: 1,200/5,000 (24%), 12 step/s, ETA 5m17s, loss=0.4123"
    assert bar.line(0.0) == "train: 1,200/5,000 (24%), 0 step/s, loss=0.4123"  # no rate yet


def test_without_a_total_a_line_says_done_and_rate():
    bar = PlainLines(desc="extract", unit="sample", every=0, file=io.StringIO())
    bar.update(30)
    assert bar.line(4.0) == "extract: 30, 7.5 sample/s"


def test_lines_are_written_whole_as_the_work_moves_on():
    out = io.StringIO()
    for _ in PlainLines(range(3), desc="report", unit="head", every=0, file=out):
        pass
    lines = out.getvalue().splitlines()
    assert [ln.split(",")[0] for ln in lines] == [
        "report: 1/3 (33%)",
        "report: 2/3 (67%)",
        "report: 3/3 (100%)",
    ]
    assert "\r" not in out.getvalue()


def test_nothing_is_written_before_the_interval_has_passed():
    out = io.StringIO()
    bar = PlainLines(total=10, desc="sweep", unit="item", every=3600, file=out)
    for _ in range(10):
        bar.update(1)
    bar.close()
    assert out.getvalue() == ""


def test_where_stderr_is_no_terminal_the_bar_is_plain_lines(monkeypatch):
    monkeypatch.setenv("ATTNSTORE_PROGRESS_SECONDS", "2.5")
    bar = progress_bar(total=3, desc="analyze", unit="sample")  # pytest's stderr: no terminal
    assert isinstance(bar, PlainLines) and bar.every == 2.5
    assert not isinstance(progress_bar(total=3, desc="analyze", enabled=False), PlainLines)


@pytest.mark.parametrize("text, seconds", [("", DEFAULT_SECONDS), ("0", 0.0), (" 12.5 ", 12.5)])
def test_the_interval_comes_from_the_environment(monkeypatch, text, seconds):
    monkeypatch.setenv("ATTNSTORE_PROGRESS_SECONDS", text)
    assert plain_seconds() == seconds


@pytest.mark.parametrize("text", ["soon", "-1", "inf", "nan"])
def test_an_interval_that_is_not_seconds_is_refused(monkeypatch, text):
    monkeypatch.setenv("ATTNSTORE_PROGRESS_SECONDS", text)
    with pytest.raises(ConfigError, match=f"ATTNSTORE_PROGRESS_SECONDS='{text}' is not accepted"):
        plain_seconds()


def test_a_process_that_imported_ipykernel_still_prints_plain_lines(monkeypatch, capsys):
    """The test process imports ipykernel once the notebook test has run: only a running
    kernel gets tqdm's notebook bar."""
    import importlib

    importlib.import_module("ipykernel")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(progress_bar(total=3, desc="x"), PlainLines)
