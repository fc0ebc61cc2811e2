"""The report's pages and files, written into one folder that opens from ``file://``.

::

    DIR/index.html                  the run's card, accuracy by point, the store's contents;
                                    matched heads across training seeds, if matched
    DIR/heads.html                  layer × head maps of every head metric, intervention and
                                    activation patch; heads changed together, path patches,
                                    the rankings
    DIR/heads/L{l}_H{h}.html        one head: what it carries (interventions, sets, patches),
                                    figure, silhouette, clusters, attention viewer
    DIR/heads/L{l}_H{h}_*.png       its figures (plots.head_figure, plots.silhouette_figure)
    DIR/assets/                     plotly.min.js (from the plotly package), report.js, .css

Python builds the JSON (:mod:`attnstore.report.data`, every row through a named query, all on
one connection); ``assets/report.js`` renders it with Plotly; the PNG figures are drawn in a
pool of processes (:mod:`attnstore.report.figures`). Each page's data is a ``<script
type="application/json">`` block (never run: read with ``JSON.parse``; ``fetch`` of
``file://`` is blocked in browsers), every script is a file of ``assets/`` loaded with
``<script src>`` by relative path, nothing comes from the network, and the same store gives
the same bytes: no dates, sorted keys, rounded floats.

A store someone hands you may hold anything, so a report is written as for a hostile one:
every stored string is escaped (:func:`_h` in HTML, :func:`_json_in_html` in the JSON
blocks; ``report.js`` writes text with ``textContent`` only), every page carries a
Content-Security-Policy (:data:`CSP`) that runs no inline script, and a stored value outside
its declared domain (:data:`DOMAINS`: an unknown view, backend, query kind, intervention method
or target; positions outside their grammar; an unknown corruption or patch target) is refused
in one line before anything is written: every page's data is read before the first file is
written.

Every estimate with a 95% interval beside it (columns ``C``, ``C_lower``, ``C_upper``, as the
queries name them) is shown with it: ``C [lower, upper]`` in tables, on hover in the maps.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from attnstore.errors import StoreError, known
from attnstore.outputs import check_output_folder, write_output
from attnstore.queries import Reader
from attnstore.report import data as d
from attnstore.report.figures import Drawer, workers
from attnstore.store import Store, open_store
from attnstore.vocab import BACKENDS, QUERY_KINDS, VIEWS

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


def _check_declared(contents: dict[str, Any], interventions: Any, n_points: int) -> None:
    """Refuse, before anything is written, a stored value outside its domain that the report
    would show or act on: the views and backends of the store's analyses (``contents``, the
    query's table), the methods, targets and positions of the run's ``interventions`` (query
    run_interventions; its prompts have ``n_points`` points)."""
    for row in contents["rows"]:
        r = dict(zip(contents["columns"], row, strict=True))
        if r["analysis_id"] is None:  # a run with no analysis
            continue
        for column in ("view", "backend"):
            where = f"analysis {r['analysis_id']}"
            _refuse_unknown(where, column, r[column], DOMAINS[column])
    rows = interventions.to_dict("records")
    domains = _intervention_domains() if rows else {}
    for r in rows:
        where = f"intervention {r['intervention_id']}"
        for column in ("method", "target"):
            _refuse_unknown(where, column, r[column], domains[column])
        _refuse_positions(where, "changed_positions", r["changed_positions"], n_points)


def _refuse_positions(where: str, column: str, value: Any, n_points: int) -> None:
    """StoreError unless ``value`` names query positions of a prompt of ``n_points`` points
    as ``attnstore intervene --positions`` and ``attnstore patch --positions`` take them."""
    from attnstore.errors import ConfigError
    from attnstore.interventions import query_positions  # imports torch: only here

    try:
        query_positions(str(value), n_points)
    except ConfigError:
        raise StoreError(
            f"{where} holds {column} {_shown(value)}, not all, x, y, N or N..M within its "
            "prompts; the report shows only declared values"
        ) from None


def _check_patches(causal: d.Causal, n_points: int) -> None:
    """Refuse, before anything is written, a patch whose corruption, target or positions
    the report would show is outside its domain."""
    from attnstore.vocab import CORRUPTIONS, PATCH_TARGETS

    for patch_id, df in [*causal.patches.items(), *causal.paths.items()]:
        r = next(df.dropna(subset=["patch_id"]).itertuples(index=False))
        where = f"patch {patch_id}"
        _refuse_unknown(where, "corruption", r.corruption, tuple(CORRUPTIONS))
        _refuse_unknown(where, "patch_target", r.patch_target, PATCH_TARGETS)
        _refuse_positions(where, "positions", r.positions, n_points)


def _check_query_kinds(heads: list[d.HeadPage]) -> None:
    """Refuse, before anything is written, a query kind of the cluster labels shown that is
    not one of QUERY_KINDS."""
    for kind in sorted(set().union(*(h.query_kinds for h in heads)), key=str):
        _refuse_unknown("table clusters", "query_kind", kind, DOMAINS["query_kind"])


def _intervals(columns: list[str]) -> dict[str, tuple[str, str]]:
    """The columns of a table that have a 95% interval beside them (``C_lower``, ``C_upper``,
    as every query names it): column → its bounds' columns."""
    return {
        c: (f"{c}_lower", f"{c}_upper")
        for c in columns
        if f"{c}_lower" in columns and f"{c}_upper" in columns
    }


def _table(t: dict[str, Any], cls: str = "", link: bool = False) -> str:
    """An HTML table of ``{"columns", "rows"}``; ``link``: rows open their head's page. A
    column with a declared domain (:data:`DOMAINS`) holds only its values or nulls. A column
    with its interval beside it (:func:`_intervals`) is one cell, ``estimate [lower,
    upper]`` (the estimate alone where there is no interval: one prompt)."""
    cols = t["columns"]
    bounds = _intervals(cols)
    shown = [c for c in cols if c not in {b for pair in bounds.values() for b in pair}]
    head = "".join(f"<th>{_h(c)}{' [95% interval]' if c in bounds else ''}</th>" for c in shown)
    body = []
    for row in t["rows"]:
        rec = dict(zip(cols, row, strict=True))
        for column in DOMAINS.keys() & rec.keys():
            if rec[column] is not None:
                _refuse_unknown("the store", column, rec[column], DOMAINS[column])
        cells = "".join(f"<td>{_estimate(rec, c, bounds.get(c))}</td>" for c in shown)
        attr = ""
        if link and "layer" in cols and "head" in cols:
            attr = f' data-href="heads/L{int(rec["layer"])}_H{int(rec["head"])}.html"'
        body.append(f"<tr{attr}>{cells}</tr>")
    return (
        f'<table class="{_h(cls)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _estimate(rec: dict[str, Any], column: str, bounds: tuple[str, str] | None) -> str:
    """A table cell: ``column``'s value, with its interval where ``bounds`` names one."""
    text = _cell(rec[column])
    if bounds is None or rec[bounds[0]] is None or rec[bounds[1]] is None:
        return text
    return f"{text} [{_cell(rec[bounds[0]])}, {_cell(rec[bounds[1]])}]"


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


def _index(c: d.Context, pages: Pages, out: Path, files: list[Path]) -> None:
    o = pages.overview
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
        + _seeds(pages.seeds)
    )
    data = {"page": "index", "accuracy": o["accuracy"]}
    _write(out / "index.html", _page(f"attnstore report: run {c.run_id}", body, data), files)


def _seeds(seeds: dict[str, Any] | None) -> str:
    """The index page's table of matched heads across training seeds (none without a
    matching)."""
    if seeds is None:
        return ""
    return (
        "<h2>Across training seeds</h2><p>Query <code>matched_emergence</code> at the last "
        "step every training has: trainings with other seeds name the same computation with "
        "other head indices, so each is read in the head indices of the reference lineage "
        f"{_h(seeds['reference_lineage'])} through the stored matching of its heads (<code>"
        "attnstore match</code>: each head paired with the head whose attention is nearest; "
        "matched_heads gives each training's own index); a low margin in query <code>"
        "head_matches</code> means a weak correspondence. Per head and metric: the mean over "
        "seeds with its 95% interval (Student's t over seeds), the least and the greatest "
        'seed.</p><div class="scroll">' + _table(seeds["table"], "sortable seeds") + "</div>"
    )


def _heads(c: d.Context, pages: Pages, out: Path, files: list[Path]) -> None:
    maps, ranks = pages.maps, pages.rankings
    options = "".join(f'<option value="{i}">{_h(m["name"])}</option>' for i, m in enumerate(maps))
    body = _no_analysis(c) if c.analysis is None else ""
    if maps:
        body += (
            '<h2>Head metrics</h2><label>metric <select id="metric">'
            f"{options}</select></label>"
            '<div id="map" class="chart"></div><p>Click a head to open its page.</p>'
        )
        if any(m["source"] == "interventions" for m in maps):
            body += (
                f"<p>{_h(d.EFFECT_MAP)} maps (one per intervention of the run that changed "
                "each head alone, query <code>intervention_effects</code>): the change of "
                "accuracy over the last half of the points when the head is changed, on a "
                "scale centred at 0; negative: the prediction needs the head. Hover a head "
                "for its 95% interval (a paired bootstrap over prompts). An intervention "
                "restricted to some query positions says so in its name.</p>"
            )
        if any(m["source"] == "patches" for m in maps):
            body += (
                f"<p>{_h(d.PATCH_MAP)} maps (one per activation patch of the run, query "
                "<code>heads_by_patching_effect</code>): the share of the corruption's change "
                "of logit that patching the head from the clean prompt brings back (1: the "
                "clean logits), on a scale centred at 0; hover a head for its 95% "
                "interval.</p>"
            )
    else:
        grid = "".join(
            f'<a href="heads/L{layer}_H{head}.html">L{layer} H{head}</a> '
            for layer in range(int(c.run["n_layers"]))
            for head in range(int(c.run["n_heads"]))
        )
        body += f"<h2>Heads</h2><p class='grid'>{grid}</p>"
    body += _joint(pages.joint) + _paths(pages.causal)
    for name, t in ranks.items():
        body += (
            f"<h2>{_h(name)}</h2><p>Query <code>{_h(name)}</code>; click a header to "
            'sort, a row to open its head.</p><div class="scroll">'
            + _table(t, "sortable ranking", link=True)
            + "</div>"
        )
    data = {"page": "heads", "maps": maps, "n_layers": c.run["n_layers"]}
    _write(out / "heads.html", _page(f"Heads of run {c.run_id}", body, data), files)


def _joint(joint: dict[str, Any] | None) -> str:
    """The heads page's table of the joint interventions (heads changed together)."""
    if joint is None:
        return ""
    return (
        "<h2>Heads changed together</h2><p>Query <code>additivity_gap</code>: each "
        "intervention that changed a set of heads at once (<code>attnstore intervene "
        "--heads</code>), its change of accuracy over the last half of the points, the sum of "
        "its heads' changes alone, and the gap between the two (negative: together they cost "
        "more than their parts), each with its 95% interval (a paired bootstrap over "
        'prompts).</p><div class="scroll">' + _table(joint, "sortable joint") + "</div>"
    )


PATH_COLUMNS = [
    "layer",
    "head",
    "receiver_layer",
    "receiver_head",
    "patch_target",
    "n_moved_prompts",
    "restored_share",
    "restored_share_lower",
    "restored_share_upper",
]


def _paths(causal: d.Causal) -> str:
    """The heads page's tables of the path patches, one per patch."""
    out = ""
    for patch_id, df in causal.paths.items():
        r = next(df.itertuples(index=False))
        out += (
            f"<h2>Path patch {_h(patch_id)}: {_h(d.patch_name(r))}</h2><p>Query "
            "<code>path_patching_matrix</code>: the share of the corruption's change of logit "
            "that the sender head's clean output brings back through the receiver's input "
            'alone, with its 95% interval.</p><div class="scroll">'
            + _table(d.records(df, PATH_COLUMNS), "sortable paths")
            + "</div>"
        )
    return out


def _causal(c: d.Context, numbers: dict[str, Any]) -> str:
    """A head page's first section: its causal numbers, each with its interval."""
    out = "<h2>What the head carries</h2>"
    if not any(numbers.values()):
        return out + (
            '<p class="note">The run has no intervention nor patch yet: '
            f"<code>attnstore intervene --store {_h(c.store.path)} --run {_h(c.run_id)}</code> "
            "measures what each head carries, <code>attnstore patch</code> what patching it "
            "restores.</p>"
        )
    if numbers["interventions"] is not None:
        out += (
            "<p>Changed alone (query <code>intervention_effects</code>): the change of accuracy "
            "(over the last half of the points, and over all) and of logit × y when this head "
            "is changed, each with its 95% interval (a paired bootstrap over prompts).</p>"
            + _table(numbers["interventions"], "sortable effects")
            + '<div id="effects" class="chart"></div><p>The change of accuracy at each point '
            "(query <code>effect_by_position</code>), one line per intervention, its 95% "
            "interval as error bars (the standard error over prompts).</p>"
        )
    if numbers["joint"] is not None:
        out += (
            "<p>Changed with other heads (query <code>additivity_gap</code>): the sets of heads "
            "changed together that hold this one.</p>" + _table(numbers["joint"], "sortable joint")
        )
    if numbers["patches"] is not None:
        out += (
            "<p>Patched from the clean prompt (query <code>heads_by_patching_effect</code>): "
            "the share of the corruption's change of logit it brings back, with its 95% "
            "interval, and its rank among the heads.</p>"
            + _table(numbers["patches"], "sortable patches")
        )
    return out


def _head(c: d.Context, p: d.HeadPage, drawn: Drawer, out: Path, files: list[Path]) -> None:
    stem = f"L{p.layer}_H{p.head}"
    body = ("" if c.analysis is not None else _no_analysis(c)) + _causal(c, p.causal)
    if p.figure is not None:
        sample = p.figure.sample  # the typical one: the page opens on it
        figure = out / "heads" / f"{stem}_s{sample}.png"
        silhouette = out / "heads" / f"{stem}_silhouette.png"
        for path, raw in zip((figure, silhouette), drawn.result((p.layer, p.head)), strict=True):
            _write(path, raw, files)
        body += (
            _why_this_sample(c, p.choice)
            + f'<img class="figure" src="{figure.name}" alt="head figure, sample {sample}">'
            f'<img class="silhouette" src="{silhouette.name}" alt="silhouette against k">'
            "<h2>Clusters</h2><p>Query <code>head_clusters</code>; dominant literals best first, "
            "* where the literal is in the hidden function.</p>"
            + _table(p.clusters, "sortable clusters")
        )
    options = "".join(
        f'<option value="{s}">sample {s}{": " if why else ""}{_h(why)}</option>'
        for s, why in p.shown.items()
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
    head_data = d.clean(
        {
            "layer": p.layer,
            "head": p.head,
            "scale": d.WEIGHT_SCALE,
            "tokens": {str(s): p.tokens[s] for s in p.shown},
            "labels": p.labels,
            "effects": p.causal["by_point"],
        }
    )  # the weights are integers already: as clean() leaves them
    head_data["samples"] = {str(s): d.thousandths(p.attention[s]) for s in p.shown}
    page = _page(
        f"Layer {p.layer}, head {p.head}", body, {"page": "head", "head": head_data}, up="../"
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


@dataclass(frozen=True)
class Pages:
    """Every page's data, read before anything is written: the overview, the run's
    interventions and patches, the heads page's maps, joint interventions and rankings,
    each head's page, and the index page's table across training seeds."""

    overview: dict[str, Any]
    causal: d.Causal
    maps: list[dict[str, Any]]
    joint: dict[str, Any] | None
    rankings: dict[str, dict[str, Any]]
    heads: list[d.HeadPage]
    seeds: dict[str, Any] | None  # matched heads across training seeds


def _read(c: d.Context, draw: Drawer, progress: bool) -> Pages:
    """Every page's data, each stored value with a declared domain checked as soon as it is
    read; each head figure handed to ``draw`` as soon as its data is."""
    from attnstore.progress import progress_bar

    overview, interventions = d.overview(c), d.interventions(c)
    n_points = int(c.run["n_points"])
    _check_declared(overview["contents"], interventions, n_points)
    causal = d.causal(c, interventions)
    _check_patches(causal, n_points)
    choices = d.head_samples(c)
    L, H = int(c.run["n_layers"]), int(c.run["n_heads"])
    heads = []
    for layer, head in progress_bar(
        [(layer, head) for layer in range(L) for head in range(H)],
        desc="report",
        unit="head",
        enabled=progress,
    ):
        heads.append(d.head_page(c, choices, causal, layer, head))
        if heads[-1].figure is not None:
            draw.submit((layer, head), heads[-1].figure)
    _check_query_kinds(heads)
    maps = d.head_maps(c, causal)
    joint, rankings = d.joint_table(causal), d.rankings(c)
    return Pages(overview, causal, maps, joint, rankings, heads, d.across_seeds(c))


def build_report(
    store: str | Path | Store,
    out: str | Path,
    run_id: str | None = None,
    analysis_id: str | None = None,
    progress: bool = False,
    n_workers: int | None = None,
) -> ReportResult:
    """Write the report of ``run_id`` (default: the latest run, or the run of ``analysis_id``)
    and ``analysis_id`` (default: the run's latest; a run with none still gets a report,
    which names the ``attnstore analyze`` command) into the folder ``out`` (made if need be;
    never inside a store), its figures drawn by ``n_workers`` processes (1: by this one;
    default: :func:`attnstore.report.figures.workers`). Returns the index page's path and
    every file written."""
    s = open_store(store)
    out = check_output_folder(out, s.path)
    files: list[Path] = []
    with Reader(s) as reader:
        c = d.context(s, reader, run_id, analysis_id)  # the store's lookup: no DuckDB yet
        drawn = 0 if c.analysis is None else int(c.run["n_layers"]) * int(c.run["n_heads"])
        with Drawer(workers(drawn) if n_workers is None else n_workers) as draw:
            pages = _read(c, draw, progress)  # refuses an undeclared value: nothing written
            _assets(out, files)
            _index(c, pages, out, files)
            _heads(c, pages, out, files)
            for page in pages.heads:
                _head(c, page, draw, out, files)
    analysis = None if c.analysis is None else c.analysis["analysis_id"]
    return ReportResult(out / "index.html", c.run_id, analysis, files)
