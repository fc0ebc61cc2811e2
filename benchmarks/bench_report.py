"""Size and load time of the HTML report (``attnstore report``), in one run.

    python benchmarks/bench_report.py --store /tmp/x             # a store there (the bundled
                                                                 # model's run if it is empty)
    python benchmarks/bench_report.py --store /tmp/big --big --samples 1000   # a 12 × 8 model
    python benchmarks/bench_report.py --store /tmp/x --screenshots docs      # docs/report-*.png

``--big`` builds the store, if it is empty, from a randomly initialised 12-layer, 8-head
model (n_dims 10, n_ctx 80, d_model 256; task conjunction) with ``--samples`` prompts and the
default analysis. Then it writes the report into a temporary folder ``--repeats`` times each
with its figures drawn by this process alone and by the default pool of workers
(attnstore/report/figures.py), alternating, and prints the median of each, their ratio, the
machine's load (the 1-minute load average before and after: two cores are often shared)
and that the two reports are the same bytes; then the report's size and file count and, in
Debian's Chromium (/usr/bin/chromium, headless, network blocked), the time each kind of page
takes to open from file:// until its Plotly charts are drawn, in one tab: the first load
(the first page also starts the tab's renderer) and the median of ``--repeats`` loads after
it. ``--no-browser`` leaves the browser out.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from attnstore.report import build_report
from attnstore.report.browser import offline_chromium
from attnstore.report.figures import workers
from attnstore.store import Store


def build_store(path: Path, big: bool, samples: int) -> None:
    from attnstore.analysis.run import AnalysisConfig
    from attnstore.extraction import ExtractConfig
    from attnstore.pipeline import extract_and_analyze

    if (path / "attnstore.json").exists() and Store(path).ids("run"):
        return
    checkpoint = "default"
    if big:
        from attnstore.checkpoint import save_checkpoint
        from attnstore.model import InContextModel, ModelConfig

        checkpoint = str(path.parent / f"{path.name}-checkpoint")
        model = InContextModel(
            ModelConfig(n_dims=10, n_ctx=80, n_layers=12, n_heads=8, d_model=256)
        )
        save_checkpoint(model, {"task": "conjunction"}, checkpoint)
    t = time.perf_counter()
    config = ExtractConfig(checkpoint=checkpoint, samples=samples)
    extract_and_analyze(path, config, AnalysisConfig(), progress=True)
    print(f"store: {samples} samples extracted and analysed in {time.perf_counter() - t:.0f} s")


def load_times(out: Path, repeats: int, shots: Path | None) -> None:
    heads = sorted((out / "heads").glob("*.html"))
    pages = {"index.html": out / "index.html", "heads.html": out / "heads.html"}
    pages[f"heads/{heads[-1].name}"] = heads[-1]
    with tempfile.TemporaryDirectory() as profile, offline_chromium(profile) as browser:
        page = browser.new_page()
        for name, path in pages.items():
            times = []
            for _ in range(1 + repeats):  # the first load of a page, then again (cached)
                t = time.perf_counter()
                page.goto(path.as_uri())
                page.wait_for_selector(".js-plotly-plot .main-svg")
                times.append(time.perf_counter() - t)
            print(
                f"  {name:<20} opens in {times[0]:.2f} s the first time, "
                f"{statistics.median(times[1:]):.2f} s again (median of {repeats})"
            )
        page.close()
        if shots is not None:
            page = browser.new_page()
            page.goto((out / "heads.html").as_uri())
            page.wait_for_selector("#map .main-svg")
            page.screenshot(path=str(shots / "report-heads.png"))
            page.goto(heads[0].with_name("L1_H3.html").as_uri())
            page.locator("#attention").scroll_into_view_if_needed()
            box = page.locator("#attention .nsewdrag").bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.6, steps=5)
            page.wait_for_selector(".hovertext", state="attached")
            page.screenshot(path=str(shots / "report-head.png"))
            print(f"screenshots: {shots}/report-heads.png, {shots}/report-head.png")


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(folder)).encode() + f.read_bytes())
    return h.hexdigest()


def write_times(store: Path, out: Path, repeats: int) -> None:
    """The report written ``repeats`` times by this process alone and by the default pool,
    alternating; the medians, their ratio and the load."""
    run = Store(store).run()
    pool = workers(int(run["n_layers"]) * int(run["n_heads"]))
    kinds = {"one process": 1, f"{pool} workers (default)": None}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    digests = set()
    load = os.getloadavg()[0]
    for _ in range(repeats):
        for kind, n in kinds.items():
            shutil.rmtree(out, ignore_errors=True)
            t = time.perf_counter()
            build_report(store, out, n_workers=n)
            times[kind].append(time.perf_counter() - t)
            digests.add(_digest(out))
    medians = {k: statistics.median(v) for k, v in times.items()}
    for kind, median in medians.items():
        print(f"report written in {median:.1f} s with {kind} (median of {repeats})")
    one, default = medians.values()
    print(
        f"  ratio one process / default: {one / default:.2f}; the same bytes: "
        f"{len(digests) == 1}; load average {load:.1f} before, {os.getloadavg()[0]:.1f} after, "
        f"{os.cpu_count()} cores"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--big", action="store_true", help="A random 12 x 8 model's store.")
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--screenshots", type=Path, default=None, help="Folder for docs images.")
    ap.add_argument("--no-browser", action="store_true", help="Time the writing only.")
    args = ap.parse_args(argv)
    build_store(args.store, args.big, args.samples)
    run = Store(args.store).run()
    print(f"run {run['run_id']}: {run['n_layers']} x {run['n_heads']}, {run['n_samples']} samples")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report"
        write_times(args.store, out, args.repeats)
        files = [f for f in out.rglob("*") if f.is_file()]
        size = sum(f.stat().st_size for f in files)
        print(f"report: {size / 1e6:.1f} MB in {len(files)} files")
        if not args.no_browser:
            load_times(out, args.repeats, args.screenshots)


if __name__ == "__main__":
    sys.exit(main())
