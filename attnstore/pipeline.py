"""Calls that chain the stages: :func:`extract_and_analyze` (what ``attnstore extract`` does)
and :func:`run_pipeline`, the whole job in one call: extract, analyse, rank heads, draw the top
heads' figures (each on its typical sample, query ``head_samples``, as the report shows it),
write the HTML report, or keep the one already there when the store holds what it held
(:func:`report_key`).

``attnstore run`` with no arguments runs it on the bundled model; every step is the same call a
user can make alone (``extract``, ``analyze``, ``query``, ``plots``), so the store it leaves
behind is an ordinary store.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from attnstore.errors import ConfigError
from attnstore.vocab import QUERY_KINDS

if TYPE_CHECKING:
    from attnstore.analysis.run import AnalysisConfig, AnalysisResult
    from attnstore.extraction import ExtractConfig, ExtractResult
    from attnstore.plots.data import HeadFigureData
    from attnstore.store import Store

DEFAULT_STORE = "attnstore-store"
DEFAULT_OUT = "attnstore-figures"
DEFAULT_SAMPLES = 300  # prompts extracted by run_pipeline (attnstore run) unless told
# Beside the report (<out>/report.key.json): the content key it was written for, and the
# sha256 of each of its files. A rerun whose key is the same, its files untouched, keeps it.
REPORT_KEY_FILE = "report.key.json"
RANKING = "heads_by_cluster_quality"  # the flagship ranking query
RANK_COLUMNS = [
    "rank",
    "layer",
    "head",
    "query_kind",
    "quality",
    "modal_k",
    "modal_k_share",
    "mean_nmi_y",
    "mean_eta2_point",
]


@dataclass
class PipelineResult:
    store: str  # the folder or URL given
    run_id: str
    analysis_id: str
    top: pd.DataFrame  # the top rows of the ranking query
    figures: list[Path] = field(default_factory=list)
    report: Path | None = None  # the HTML report's index.html
    report_kept: bool = False  # the report already there was the store's: not rewritten


def extract_and_analyze(
    store: str | Path,
    extract: ExtractConfig,
    analysis: AnalysisConfig | None,
    *,
    overwrite: bool = False,
    progress: bool = False,
    command: str = "",
) -> tuple[ExtractResult, AnalysisResult | None]:
    """Extract a run as ``extract`` says into ``store`` (``overwrite`` replaces it), then,
    unless ``analysis`` is None, analyse it as ``analysis`` says: what ``attnstore extract``
    and each item of ``attnstore sweep`` do. Returns both results (the second None without an
    analysis); either may have existed already. The analysis is planned for the run's shape
    before anything is written, so a run is never committed only for its analysis to be
    refused."""
    from attnstore.analysis.run import analyze_run
    from attnstore.extraction import prepare, write
    from attnstore.store import open_store

    extraction = prepare(extract)
    plan = None if analysis is None else analysis.plan(extraction.n_points)
    run = write(store, extraction, overwrite, progress, command)
    if plan is None:
        return run, None
    s = open_store(store)
    done = analyze_run(s, s.run(run.run_id), plan, progress=progress, command=command)
    return run, done


def run_pipeline(
    store: str | Path = DEFAULT_STORE,
    out: str | Path = DEFAULT_OUT,
    extract: ExtractConfig | None = None,
    analysis: AnalysisConfig | None = None,
    *,
    top: int = 3,
    fmt: str = "png",
    progress: bool = False,
    command: str = "",
) -> PipelineResult:
    """Extract prompts as ``extract`` says (default: :data:`DEFAULT_SAMPLES` prompts of the
    bundled model), analyse them as ``analysis`` says (default: ``AnalysisConfig()``), rank the
    heads by cluster quality, write the HTML report of the run into ``out/report``
    (:func:`attnstore.report.build_report`) unless the report there was written for what the
    store holds now (:func:`report_key`), and the head figure and silhouette curve of the
    ``top`` heads (each on its typical sample, query ``head_samples``, as the report draws
    them: in PNG, its files are copied) plus a layer × head map, into ``out``, as ``fmt``."""
    from attnstore import plots
    from attnstore.analysis.run import AnalysisConfig
    from attnstore.extraction import ExtractConfig
    from attnstore.outputs import write_output
    from attnstore.queries import Reader
    from attnstore.store import Store

    if top < 1:
        raise ConfigError(f"top={top} must be at least 1")
    if fmt not in ("png", "svg", "pdf"):
        raise ConfigError(f"format '{fmt}' is not one of png, svg, pdf")
    extract = ExtractConfig(samples=DEFAULT_SAMPLES) if extract is None else extract
    analysis = AnalysisConfig() if analysis is None else analysis
    run, done = extract_and_analyze(store, extract, analysis, progress=progress, command=command)
    s = Store(store)
    aid = done.analysis_id
    with Reader(s) as reader:
        best = reader.query(RANKING, analysis_id=aid, top=top)
        typical = reader.query("head_samples", analysis_id=aid).set_index(["layer", "head"])
    typical = typical["typical_sample"].to_dict()

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report, kept = report_once(s, out, run.run_id, aid, progress=progress)
    drawn = report.parent / "heads"  # the report's figures: every head on its typical sample
    figures = []
    shown = []
    for row in best.itertuples():
        layer, head = int(row.layer), int(row.head)
        sample = int(typical[(layer, head)])
        shown.append(sample)
        stem = f"head_L{layer}_H{head}_{row.query_kind}_s{sample}"
        paths = [out / f"{stem}.{fmt}", out / f"silhouette_{stem.removeprefix('head_')}.{fmt}"]
        same = [
            drawn / f"L{layer}_H{head}_s{sample}.png",
            drawn / f"L{layer}_H{head}_silhouette.png",
        ]
        if fmt == "png" and all(f.is_file() for f in same):  # drawn once, for the report
            for src, dst in zip(same, paths, strict=True):
                raw = src.read_bytes()
                figures.append(write_output(dst, lambda f, raw=raw: f.write(raw)))
            continue
        data = plots.head_figure_data(s, run.run_id, aid, layer, head, sample)
        figures.append(plots.save_figure(plots.head_figure(data), paths[0]))
        figures.append(plots.save_figure(plots.silhouette_figure(data), paths[1]))
    for kind in QUERY_KINDS:
        fig = plots.heads_figure(s, run.run_id, aid, "mean_silhouette", kind)
        figures.append(plots.save_figure(fig, out / f"heads_mean_silhouette_{kind}.{fmt}"))
    best = best[[c for c in RANK_COLUMNS if c in best.columns]].assign(sample=shown)
    return PipelineResult(str(store), run.run_id, aid, best, figures, report, kept)


def report_key(s: Store, run_id: str, analysis_id: str | None) -> str:
    """What a report of ``run_id`` and ``analysis_id`` is made from, as one sha256: every
    committed run, analysis and intervention of the store with the token of its files (a
    commit or an ``--overwrite`` changes it), the run and analysis shown, the store's name
    (a report names it) and attnstore's version."""
    from attnstore import __version__
    from attnstore.schema import PRIMARY

    content = {
        "commits": {level: s.commits(level) for level in PRIMARY},
        "run_id": run_id,
        "analysis_id": analysis_id,
        "store": str(s.path),
        "attnstore": __version__,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def report_once(
    s: Store, out: Path, run_id: str, analysis_id: str | None, progress: bool = False
) -> tuple[Path, bool]:
    """The report of ``run_id`` and ``analysis_id`` in ``out/report``: the one there when
    ``out/report.key.json`` holds the store's :func:`report_key` now and each of its files is
    as written (True: kept), else a new one, its key written beside it (False)."""
    from attnstore.outputs import write_output
    from attnstore.report import REPORT_DIR, build_report

    folder, key_file = out / REPORT_DIR, out / REPORT_KEY_FILE
    key = report_key(s, run_id, analysis_id)
    try:
        written = json.loads(key_file.read_text())
    except (OSError, ValueError):
        written = None
    if (
        isinstance(written, dict)
        and written.get("key") == key
        and _unchanged(folder, written.get("files"))
    ):
        return folder / "index.html", True
    result = build_report(s, folder, run_id, analysis_id, progress=progress)
    files = {str(f.relative_to(folder)): _sha256(f) for f in sorted(set(result.files))}
    text = json.dumps({"key": key, "files": files}, indent=1, sort_keys=True) + "\n"
    write_output(key_file, lambda f: f.write(text.encode()))
    return result.index, False


def _unchanged(folder: Path, files: Any) -> bool:
    """Whether every file of ``files`` (path in ``folder`` → sha256) is there, as written."""
    if not isinstance(files, dict) or "index.html" not in files:
        return False
    try:
        return all(_sha256(folder / name) == digest for name, digest in files.items())
    except OSError:
        return False


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def head_figure_data_live(
    attention: Any,
    x: Any,
    y: Any,
    *,
    layer: int,
    head: int,
    sample: int,
    config: AnalysisConfig | None = None,
    hidden_function: str | None = None,
    **params: Any,
) -> HeadFigureData:
    """Analyse one head and sample in memory, as ``attnstore analyze`` does with ``config``
    (default: the raw view), and return what the figures show (:mod:`attnstore.plots`): the
    seed's ``analyze_attn_matrix`` in a call.

    ``attention`` of shape (2N, 2N) (e.g. ``model(x, y, return_attn=True).attention[layer][sample,
    head]``), ``x`` of shape (N, n_dims), ``y`` of shape (N,); keywords (``view="shared_keys",
    k_max=5``) are the config's fields, given instead of it or changing it; ``hidden_function``
    as text, for the title. Values are kept in the store's types, so a figure drawn from this
    and one drawn from the stored analysis of the same rows are pixel-identical.
    """
    import numpy as np

    from attnstore.analysis.backends import get_backend
    from attnstore.analysis.run import AnalysisConfig
    from attnstore.plots.data import HeadFigureData, QueryClusters

    if config is None:
        config = AnalysisConfig(**{"view": "raw", **params})
    elif params:
        config = replace(config, **params)
    attention = np.asarray(attention, dtype=np.float32)
    x, y = np.asarray(x).astype(np.int8), np.asarray(y).astype(np.int8)
    N = len(y)
    if attention.shape != (2 * N, 2 * N) or x.shape[0] != N:
        raise ConfigError(
            f"attention of shape {attention.shape} and x of shape {x.shape} do not fit "
            f"y of {N} points; need ({2 * N}, {2 * N}) and ({N}, n_dims)"
        )
    plan = config.plan(N)
    points, k_values = plan.view.points(N), plan.k_values
    fit = get_backend(config.backend, config.device, config.random_state)
    queries = {}
    for kind in QUERY_KINDS:
        rows = plan.view.apply(attention[None], kind)  # (1, n_rows, n_keys)
        r = fit(rows, x[None, points].astype(np.float32), k_values)
        queries[kind] = QueryClusters(
            points=points.astype(np.int16),
            labels=r.labels_[0].astype(np.int16),
            best_k=int(r.best_k_[0]),
            k_values=k_values.astype(np.int16),
            silhouette=r.silhouette_[0].astype(np.float32),
        )
    return HeadFigureData(
        "", "", config.view, layer, head, sample, attention, x, y, queries, hidden_function
    )
