"""The report's pages and files, written into one folder that opens from ``file://``.

::

    DIR/index.html                  the run's card, accuracy by point, the store's contents
    DIR/heads.html                  layer × head maps of every head metric, the rankings
    DIR/heads/L{l}_H{h}.html        one head: figure, silhouette, clusters, attention viewer
    DIR/heads/L{l}_H{h}.js          that page's attention rows (only the samples it shows)
    DIR/heads/L{l}_H{h}_*.png       its figures (plots.head_figure, plots.silhouette_figure)
    DIR/assets/                     plotly.min.js (from the plotly package), report.js, .css

Python builds the JSON (:mod:`attnstore.report.data`); ``assets/report.js`` renders it with
Plotly. Every script is loaded with ``<script src>`` by relative path (``fetch`` of
``file://`` is blocked in browsers), nothing from the network, and the same store gives the
same bytes: no dates, sorted keys, rounded floats.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from attnstore.outputs import check_output_folder, write_output
from attnstore.report import data as d
from attnstore.store import Store, open_store

REPORT_DIR = "report"  # the report's folder inside `attnstore run`'s --out
ASSETS = ("report.js", "report.css")


@dataclass
class ReportResult:
    index: Path  # DIR/index.html
    run_id: str
    analysis_id: str | None
    files: list[Path]


def _write(path: Path, content: str | bytes, files: list[Path]) -> None:
    raw = content.encode() if isinstance(content, str) else content
    files.append(write_output(path, lambda f: f.write(raw)))


def _table(t: dict[str, Any], cls: str = "", link: bool = False) -> str:
    """An HTML table of ``{"columns", "rows"}``; ``link``: rows open their head's page."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t["columns"])
    body = []
    cols = t["columns"]
    for row in t["rows"]:
        cells = "".join(f"<td>{_cell(v)}</td>" for v in row)
        attr = ""
        if link and "layer" in cols and "head" in cols:
            rec = dict(zip(cols, row, strict=True))
            attr = f' data-href="heads/L{rec["layer"]}_H{rec["head"]}.html"'
        body.append(f"<tr{attr}>{cells}</tr>")
    return (
        f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{d.DIGITS}g}" if abs(v) < 1e-3 and v else f"{v:.3f}"
    return html.escape(str(v))


def _page(title: str, body: str, data: Any, up: str = "", extra_js: str = "") -> str:
    nav = f'<nav><a href="{up}index.html">overview</a> · <a href="{up}heads.html">heads</a></nav>'
    scripts = "".join(
        f'<script src="{src}"></script>'
        for src in (f"{up}assets/plotly.min.js", *([extra_js] if extra_js else []))
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        f'<link rel="stylesheet" href="{up}assets/report.css"></head>\n'
        f"<body>{nav}<h1>{html.escape(title)}</h1>\n{body}\n"
        f'<script id="page-data" type="application/json">{_json_in_html(data)}</script>\n'
        f'{scripts}<script src="{up}assets/report.js"></script>\n'
        "</body></html>\n"
    )


def _json_in_html(value: Any) -> str:
    return d.dumps(value).replace("</", "<\\/")


def _no_analysis(c: d.Context) -> str:
    return (
        f'<p class="note">Run {c.run_id} has no analysis: clusters, literals and head '
        f"metrics appear once <code>{html.escape(c.analyze_command)}</code> has run.</p>"
    )


def _assets(out: Path, files: list[Path]) -> None:
    import plotly.offline

    _write(out / "assets" / "plotly.min.js", plotly.offline.get_plotlyjs(), files)
    for name in ASSETS:
        text = resources.files("attnstore.report").joinpath("assets", name).read_bytes()
        _write(out / "assets" / name, text, files)


def _index(c: d.Context, out: Path, files: list[Path]) -> None:
    o = d.overview(c)
    card = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{_cell(v)}</td></tr>" for k, v in o["card"].items()
    )
    body = (
        (_no_analysis(c) if c.analysis is None else "")
        + f'<h2>Run</h2><table class="card">{card}</table>'
        + '<h2>Accuracy by point</h2><div id="accuracy" class="chart"></div>'
        + "<p>The model against the majority and elimination baselines on the run's own "
        "prompts (query <code>run_overview</code>).</p>"
        + "<h2>Runs and analyses in the store</h2>"
        + '<p>Query <code>contents</code>.</p><div class="scroll">'
        + _table(o["contents"], "sortable")
        + "</div>"
    )
    data = {"page": "index", "accuracy": o["accuracy"]}
    _write(out / "index.html", _page(f"attnstore report: run {c.run_id}", body, data), files)


def _heads(c: d.Context, out: Path, files: list[Path]) -> None:
    maps = d.head_maps(c)
    ranks = d.rankings(c)
    options = "".join(
        f'<option value="{i}">{html.escape(m["name"])}</option>' for i, m in enumerate(maps)
    )
    body = _no_analysis(c) if c.analysis is None else ""
    if maps:
        body += (
            '<h2>Head metrics</h2><label>metric <select id="metric">'
            f"{options}</select></label>"
            '<div id="map" class="chart"></div><p>Click a head to open its page.</p>'
        )
    else:
        grid = "".join(
            f'<a href="heads/L{layer}_H{head}.html">L{layer} H{head}</a> '
            for layer in range(int(c.run["n_layers"]))
            for head in range(int(c.run["n_heads"]))
        )
        body += f"<h2>Heads</h2><p class='grid'>{grid}</p>"
    for name, t in ranks.items():
        body += (
            f"<h2>{html.escape(name)}</h2><p>Query <code>{name}</code>; click a header to "
            'sort, a row to open its head.</p><div class="scroll">'
            + _table(t, "sortable ranking", link=True)
            + "</div>"
        )
    data = {"page": "heads", "maps": maps, "n_layers": c.run["n_layers"]}
    _write(out / "heads.html", _page(f"Heads of run {c.run_id}", body, data), files)


def _head(c: d.Context, layer: int, head: int, ctx: dict[str, Any], out: Path, files) -> None:
    from attnstore import plots

    stem = f"L{layer}_H{head}"
    samples = d.samples_shown(c, ctx["best"], layer, head)
    T = 2 * int(c.run["n_points"])
    body = "" if c.analysis is not None else _no_analysis(c)
    if c.analysis is not None:
        sample = d.cleanest_sample(ctx["best"], layer, head)
        fig = plots.head_figure_data(
            c.store, c.run_id, c.analysis["analysis_id"], layer, head, sample
        )
        plots.save_figure(plots.head_figure(fig), out / "heads" / f"{stem}_s{sample}.png")
        plots.save_figure(plots.silhouette_figure(fig), out / "heads" / f"{stem}_silhouette.png")
        files += [out / "heads" / f"{stem}_s{sample}.png", out / "heads" / f"{stem}_silhouette.png"]
        body += (
            f"<h2>Sample {sample}, where its clusters are cleanest "
            f"(view {html.escape(c.analysis['view'])})</h2>"
            f'<img class="figure" src="{stem}_s{sample}.png" alt="head figure, sample {sample}">'
            f'<img class="silhouette" src="{stem}_silhouette.png" alt="silhouette against k">'
            "<h2>Clusters</h2><p>Query <code>head_clusters</code>; dominant literals best first, "
            "* where the literal is in the hidden function.</p>"
            + _table(d.head_clusters(c, layer, head, sample), "sortable clusters")
        )
    options = "".join(f'<option value="{s}">sample {s}</option>' for s in samples)
    view_opts = "".join(f'<option value="{v}">{v}</option>' for v in c.views) or (
        '<option value="">no analysis</option>'
    )
    body += (
        '<h2>Attention</h2><div class="controls">'
        f'<label>sample <select id="sample">{options}</select></label> '
        f'<label>cluster labels of view <select id="view">{view_opts}</select></label></div>'
        '<div id="attention" class="chart square"></div>'
        '<p id="hover-info" class="hover-info">Hover a cell: query, key, weight, cluster.</p>'
    )
    att = d.attention(c, layer, head, samples)
    head_data = {
        "layer": layer,
        "head": head,
        "scale": d.WEIGHT_SCALE,
        "samples": {str(s): att[s].tolist() for s in samples},
        "tokens": {str(s): ctx["tokens"][s] for s in samples},
        "labels": d.head_views(ctx["labels"], layer, head, samples, T),
    }
    _write(
        out / "heads" / f"{stem}.js",
        f"window.HEAD_DATA = {d.dumps(d.clean(head_data))};\n",
        files,
    )
    page = _page(
        f"Layer {layer}, head {head}",
        body,
        {"page": "head"},
        up="../",
        extra_js=f"{stem}.js",
    )
    _write(out / "heads" / f"{stem}.html", page, files)


def build_report(
    store: str | Path | Store,
    out: str | Path,
    run_id: str | None = None,
    analysis_id: str | None = None,
    progress: bool = False,
) -> ReportResult:
    """Write the report of ``run_id`` (default: the latest run, or the run of ``analysis_id``)
    and ``analysis_id`` (default: the run's latest; a run with none still gets a report,
    which names the ``attnstore analyze`` command) into the folder ``out`` (made if need be;
    never inside a store). Returns the index page's path and every file written."""
    s = open_store(store)
    out = check_output_folder(out, s.path)
    c = d.context(s, run_id, analysis_id)
    files: list[Path] = []
    _assets(out, files)
    _index(c, out, files)
    _heads(c, out, files)
    best = d.cleanest_samples(c)
    L, H = int(c.run["n_layers"]), int(c.run["n_heads"])
    shown = {(l, h): d.samples_shown(c, best, l, h) for l in range(L) for h in range(H)}
    every = sorted({s for v in shown.values() for s in v})
    ctx = {"best": best, "tokens": d.tokens(c, every), "labels": d.cluster_labels(c, every)}
    from tqdm.auto import tqdm

    for layer, head in tqdm(list(shown), desc="report", disable=not progress):
        _head(c, layer, head, ctx, out, files)
    analysis = None if c.analysis is None else c.analysis["analysis_id"]
    return ReportResult(out / "index.html", c.run_id, analysis, files)
