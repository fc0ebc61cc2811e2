"""The report's pages and files, written into one folder that opens from ``file://``.

::

    DIR/index.html                  the run's card, accuracy by point, the store's contents
    DIR/heads.html                  layer × head maps of every head metric, the rankings
    DIR/heads/L{l}_H{h}.html        one head: figure, silhouette, clusters, attention viewer
    DIR/heads/L{l}_H{h}_*.png       its figures (plots.head_figure, plots.silhouette_figure)
    DIR/assets/                     plotly.min.js (from the plotly package), report.js, .css

Python builds the JSON (:mod:`attnstore.report.data`); ``assets/report.js`` renders it with
Plotly. Each page's data is a ``<script type="application/json">`` block (never run: read with
``JSON.parse``; ``fetch`` of ``file://`` is blocked in browsers), every script is a file of
``assets/`` loaded with ``<script src>`` by relative path, nothing comes from the network, and
the same store gives the same bytes: no dates, sorted keys, rounded floats.

A store someone hands you may hold anything, so a report is written as for a hostile one:
every stored string is escaped (:func:`_h` in HTML, :func:`_json_in_html` in the JSON
blocks; ``report.js`` writes text with ``textContent`` only), every page carries a
Content-Security-Policy (:data:`CSP`) that runs no inline script, and a stored value outside
its declared domain (:data:`DOMAINS`: an unknown view, backend, query kind, intervention method
or target) is refused in one line before anything is written.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from attnstore.analysis.backends import BACKENDS
from attnstore.analysis.views import QUERY_KINDS, VIEWS
from attnstore.errors import StoreError, known
from attnstore.outputs import check_output_folder, write_output
from attnstore.report import data as d
from attnstore.store import Store, open_store

REPORT_DIR = "report"  # the report's folder inside `attnstore run`'s --out
ASSETS = ("report.js", "report.css")
# Every page's policy, a <meta> first in <head> (a report opens from file://: no server sends
# headers). Scripts only from files ('self'; from file:// Chromium counts file: URLs as 'self'),
# none inline, no eval; nothing from the network. Written as is: it holds no " nor &.
CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",  # Plotly adds style rules and style attributes
        "img-src 'self' data:",  # Plotly draws a heatmap as a data: PNG
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    )
)
# Stored columns with a declared domain (declared where they are made); a report refuses any
# other value. method and target: :func:`_intervention_domains`.
DOMAINS: dict[str, tuple[str, ...]] = {
    "view": VIEWS,
    "backend": BACKENDS,
    "query_kind": QUERY_KINDS,
}
SHOWN_CHARS = 80  # of a refused value, in its error message


@dataclass
class ReportResult:
    index: Path  # DIR/index.html
    run_id: str
    analysis_id: str | None
    files: list[Path]


def _write(path: Path, content: str | bytes, files: list[Path]) -> None:
    raw = content.encode() if isinstance(content, str) else content
    files.append(write_output(path, lambda f: f.write(raw)))


def _h(value: Any) -> str:
    """``value`` as HTML text or a quoted attribute value: every stored string goes through
    here (``& < > " '`` escaped)."""
    return html.escape(str(value), quote=True)


# JSON inside <script>: no '<' (which could close the block or open a comment), '>', '&', nor
# the line separators that end a JavaScript line; each written as its \\u escape, the same JSON.
_IN_HTML = str.maketrans({c: f"\\u{ord(c):04x}" for c in "<>&\u2028\u2029"})


def _json_in_html(value: Any) -> str:
    return d.dumps(value).translate(_IN_HTML)


def _shown(value: Any) -> str:
    """A stored value for a one-line message: quoted, escapes visible, long ones cut."""
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        return repr(value[:SHOWN_CHARS]) + f" (and {len(value) - SHOWN_CHARS} more characters)"
    return repr(value)


def _refuse_unknown(where: str, column: str, value: Any, accepted: tuple[str, ...]) -> None:
    """StoreError unless ``value`` (of ``column``, held by ``where``) is in ``accepted``."""
    if value not in accepted:
        raise StoreError(
            f"{where} holds {column} {_shown(value)}, not one of {known(accepted)}; "
            "the report shows only declared values"
        )


def _intervention_domains() -> dict[str, tuple[str, ...]]:
    from attnstore.interventions import METHODS, TARGETS, Z_TARGET  # imports torch: only here

    return {"method": METHODS, "target": (Z_TARGET, *TARGETS)}


def _check_stored_values(c: d.Context, labels: Any) -> None:
    """Refuse, before anything is written, a stored value outside its domain that the report
    would show or act on: the views and backends of the store's analyses, the methods and
    targets of the run's interventions, the query kinds of the cluster labels shown."""
    for r in c.store.read("analyses", ["analysis_id", "view", "backend"]).to_pylist():
        for column in ("view", "backend"):
            where = f"analysis {r['analysis_id']}"
            _refuse_unknown(where, column, r[column], DOMAINS[column])
    columns = ["intervention_id", "method", "target"]
    rows = c.store.read("interventions", columns, run_id=c.run_id).to_pylist()
    domains = _intervention_domains() if rows else {}
    for r in rows:
        for column in ("method", "target"):
            where = f"intervention {r['intervention_id']}"
            _refuse_unknown(where, column, r[column], domains[column])
    for kind in sorted(set(labels["query_kind"]), key=str):
        _refuse_unknown("table clusters", "query_kind", kind, DOMAINS["query_kind"])


def _table(t: dict[str, Any], cls: str = "", link: bool = False) -> str:
    """An HTML table of ``{"columns", "rows"}``; ``link``: rows open their head's page. A
    column with a declared domain (:data:`DOMAINS`) holds only its values or nulls."""
    head = "".join(f"<th>{_h(c)}</th>" for c in t["columns"])
    body = []
    cols = t["columns"]
    for row in t["rows"]:
        rec = dict(zip(cols, row, strict=True))
        for column in DOMAINS.keys() & rec.keys():
            if rec[column] is not None:
                _refuse_unknown("the store", column, rec[column], DOMAINS[column])
        cells = "".join(f"<td>{_cell(v)}</td>" for v in row)
        attr = ""
        if link and "layer" in cols and "head" in cols:
            attr = f' data-href="heads/L{int(rec["layer"])}_H{int(rec["head"])}.html"'
        body.append(f"<tr{attr}>{cells}</tr>")
    return (
        f'<table class="{_h(cls)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{d.DIGITS}g}" if abs(v) < 1e-3 and v else f"{v:.3f}"
    return _h(v)


def _page(title: str, body: str, data: Any, up: str = "") -> str:
    """A page: the policy first in <head>, then ``body`` (HTML, escaped by its makers), the
    page's data as a JSON block and the scripts of ``assets/``."""
    nav = f'<nav><a href="{up}index.html">overview</a> · <a href="{up}heads.html">heads</a></nav>'
    scripts = "".join(
        f'<script src="{up}assets/{name}"></script>' for name in ("plotly.min.js", "report.js")
    )
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta charset="utf-8">'
        f"<title>{_h(title)}</title>"
        f'<link rel="stylesheet" href="{up}assets/report.css"></head>\n'
        f"<body>{nav}<h1>{_h(title)}</h1>\n{body}\n"
        f'<script id="page-data" type="application/json">{_json_in_html(data)}</script>\n'
        f"{scripts}\n"
        "</body></html>\n"
    )


def _no_analysis(c: d.Context) -> str:
    return (
        f'<p class="note">Run {_h(c.run_id)} has no analysis: clusters, literals and head '
        f"metrics appear once <code>{_h(c.analyze_command)}</code> has run.</p>"
    )


def _assets(out: Path, files: list[Path]) -> None:
    import plotly.offline

    _write(out / "assets" / "plotly.min.js", plotly.offline.get_plotlyjs(), files)
    for name in ASSETS:
        text = resources.files("attnstore.report").joinpath("assets", name).read_bytes()
        _write(out / "assets" / name, text, files)


def _index(c: d.Context, out: Path, files: list[Path]) -> None:
    o = d.overview(c)
    card = "".join(f"<tr><th>{_h(k)}</th><td>{_cell(v)}</td></tr>" for k, v in o["card"].items())
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
    options = "".join(f'<option value="{i}">{_h(m["name"])}</option>' for i, m in enumerate(maps))
    body = _no_analysis(c) if c.analysis is None else ""
    if maps:
        body += (
            '<h2>Head metrics</h2><label>metric <select id="metric">'
            f"{options}</select></label>"
            '<div id="map" class="chart"></div><p>Click a head to open its page.</p>'
        )
        if any(m["signed"] for m in maps):
            body += (
                f"<p>{_h(d.EFFECT_MAP)} maps (one per intervention of the run, query "
                "<code>intervention_effects</code>): the change of accuracy over the last half "
                "of the points when the head is changed, on a scale centred at 0; negative: "
                "the prediction needs the head.</p>"
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
            f"<h2>{_h(name)}</h2><p>Query <code>{_h(name)}</code>; click a header to "
            'sort, a row to open its head.</p><div class="scroll">'
            + _table(t, "sortable ranking", link=True)
            + "</div>"
        )
    data = {"page": "heads", "maps": maps, "n_layers": c.run["n_layers"]}
    _write(out / "heads.html", _page(f"Heads of run {c.run_id}", body, data), files)


def _head(c: d.Context, layer: int, head: int, ctx: dict[str, Any], out: Path, files) -> None:
    from attnstore import plots

    stem = f"L{layer}_H{head}"
    shown = d.samples_shown(c, ctx["choices"], layer, head)
    samples = list(shown)
    T = 2 * int(c.run["n_points"])
    body = "" if c.analysis is not None else _no_analysis(c)
    if c.analysis is not None:
        sample = samples[0]  # the typical one: the page opens on it
        fig = plots.head_figure_data(
            c.store, c.run_id, c.analysis["analysis_id"], layer, head, sample
        )
        plots.save_figure(plots.head_figure(fig), out / "heads" / f"{stem}_s{sample}.png")
        plots.save_figure(plots.silhouette_figure(fig), out / "heads" / f"{stem}_silhouette.png")
        files += [out / "heads" / f"{stem}_s{sample}.png", out / "heads" / f"{stem}_silhouette.png"]
        body += (
            _why_this_sample(c, ctx["choices"][(layer, head)])
            + f'<img class="figure" src="{stem}_s{sample}.png" alt="head figure, sample {sample}">'
            f'<img class="silhouette" src="{stem}_silhouette.png" alt="silhouette against k">'
            "<h2>Clusters</h2><p>Query <code>head_clusters</code>; dominant literals best first, "
            "* where the literal is in the hidden function.</p>"
            + _table(d.head_clusters(c, layer, head, sample), "sortable clusters")
        )
    options = "".join(
        f'<option value="{s}">sample {s}{": " if why else ""}{_h(why)}</option>'
        for s, why in shown.items()
    )
    view_opts = "".join(f'<option value="{_h(v)}">{_h(v)}</option>' for v in c.views) or (
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
    page = _page(
        f"Layer {layer}, head {head}",
        body,
        {"page": "head", "head": d.clean(head_data)},
        up="../",
    )
    _write(out / "heads" / f"{stem}.html", page, files)


def _why_this_sample(c: d.Context, r: dict[str, Any]) -> str:
    """The head page's heading: which sample it shows and why (query head_samples' row)."""
    return (
        f"<h2>Sample {int(r['typical_sample'])}, typical: nearest the median silhouette "
        f"{r['median_xy_silhouette']:.2f} (view {_h(c.analysis['view'])})</h2>"
        "<p>A head is shown on its typical sample, not its best: the one whose silhouette "
        "(the mean of its x and y queries' best silhouettes, 0 where not clustered) is the "
        f"median over its {int(r['n_samples'])} samples (query <code>head_samples</code>). "
        f"Its cleanest, sample {int(r['cleanest_sample'])} "
        f"({r['cleanest_xy_silhouette']:.2f}), and its least clean, sample "
        f"{int(r['least_clean_sample'])} ({r['least_clean_xy_silhouette']:.2f}), are in the "
        "attention viewer's sample picker below.</p>"
    )


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
    choices = d.head_samples(c)
    L, H = int(c.run["n_layers"]), int(c.run["n_heads"])
    shown = {(l, h): d.samples_shown(c, choices, l, h) for l in range(L) for h in range(H)}
    every = sorted({s for v in shown.values() for s in v})
    ctx = {"choices": choices, "tokens": d.tokens(c, every), "labels": d.cluster_labels(c, every)}
    _check_stored_values(c, ctx["labels"])
    files: list[Path] = []
    _assets(out, files)
    _index(c, out, files)
    _heads(c, out, files)
    from attnstore.progress import progress_bar

    for layer, head in progress_bar(list(shown), desc="report", unit="head", enabled=progress):
        _head(c, layer, head, ctx, out, files)
    analysis = None if c.analysis is None else c.analysis["analysis_id"]
    return ReportResult(out / "index.html", c.run_id, analysis, files)
