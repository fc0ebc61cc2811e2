"""Calls that chain the stages: :func:`extract_and_analyze` (what ``attnstore extract`` does)
and :func:`run_pipeline`, the whole job in one call: extract, analyse, rank heads, draw the top
heads' figures, write the HTML report.

``attnstore run`` with no arguments runs it on the bundled model; every step is the same call a
user can make alone (``extract``, ``analyze``, ``query``, ``plots``), so the store it leaves
behind is an ordinary store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from attnstore.errors import ConfigError

if TYPE_CHECKING:
    from attnstore.analysis.run import AnalysisResult
    from attnstore.extraction import ExtractResult

DEFAULT_STORE = "attnstore-store"
DEFAULT_OUT = "attnstore-figures"
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


def extract_and_analyze(
    store: str | Path,
    analysis: bool = True,
    backend: str = "torch",
    view: str = "shared_keys",
    device: str = "cpu",
    progress: bool = False,
    command: str = "",
    **extract_args: Any,
) -> tuple[ExtractResult, AnalysisResult | None]:
    """Extract a run (``extract_args`` as :func:`attnstore.extract` takes them), then, unless
    ``analysis`` is False, analyse it with ``backend`` and ``view`` on ``device``. Returns both
    results (the second None without an analysis); either may have existed already. The
    analysis's parameters are checked against the run's shape before anything is written, so
    a run is never committed only for its analysis to be refused."""
    from attnstore.analysis.run import analyze, plan
    from attnstore.extraction import prepare, write

    write_args = {k: extract_args.pop(k) for k in ("batch_size", "overwrite") if k in extract_args}
    extraction = prepare(device=device, **extract_args)
    if analysis:
        plan(extraction.n_points, backend, view, device=device)
    run = write(store, extraction, device=device, progress=progress, command=command, **write_args)
    if not analysis:
        return run, None
    done = analyze(
        store,
        run.run_id,
        backend=backend,
        view=view,
        device=device,
        progress=progress,
        command=command,
    )
    return run, done


def run_pipeline(
    store: str | Path = DEFAULT_STORE,
    out: str | Path = DEFAULT_OUT,
    checkpoint: str = "default",
    model_config: str | Path | None = None,
    task: str | None = None,
    task_params: dict[str, Any] | None = None,
    samples: int = 300,
    points: int | None = None,
    seed: int = 0,
    backend: str = "torch",
    view: str = "shared_keys",
    top: int = 3,
    fmt: str = "png",
    device: str = "cpu",
    progress: bool = False,
    command: str = "",
) -> PipelineResult:
    """Extract ``samples`` prompts, analyse them, rank the heads by cluster quality, and write
    the head figure and silhouette curve of the ``top`` heads (each for the sample where that
    head's clusters are cleanest) plus a layer × head map, into ``out``, and the HTML report
    of the run into ``out/report`` (:func:`attnstore.report.build_report`)."""
    from attnstore import plots
    from attnstore.queries import query
    from attnstore.report import REPORT_DIR, build_report
    from attnstore.store import Store

    if top < 1:
        raise ConfigError(f"top={top} must be at least 1")
    if fmt not in ("png", "svg", "pdf"):
        raise ConfigError(f"format '{fmt}' is not one of png, svg, pdf")
    run, analysis = extract_and_analyze(
        store,
        backend=backend,
        view=view,
        device=device,
        progress=progress,
        command=command,
        checkpoint=checkpoint,
        model_config=model_config,
        task=task,
        task_params=task_params,
        samples=samples,
        points=points,
        seed=seed,
    )
    ranking = query(store, RANKING, run_id=run.run_id, view=view)
    ranking = ranking[ranking.analysis_id == analysis.analysis_id].sort_values("rank")
    best = ranking.head(top).reset_index(drop=True)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = Store(store)
    fits = s.read(
        "fits",
        columns=["layer", "head", "query_kind", "sample", "best_silhouette"],
        analysis_id=analysis.analysis_id,
    ).to_pandas()
    figures = []
    samples_shown = []
    for row in best.itertuples():
        mine = fits[
            (fits["layer"] == row.layer)
            & (fits["head"] == row.head)
            & (fits["query_kind"] == row.query_kind)
        ]
        sample = int(
            mine.sort_values(["best_silhouette", "sample"], ascending=[False, True]).iloc[0][
                "sample"
            ]
        )
        samples_shown.append(sample)
        data = plots.head_figure_data(
            s, run.run_id, analysis.analysis_id, int(row.layer), int(row.head), sample
        )
        stem = f"head_L{row.layer}_H{row.head}_{row.query_kind}_s{sample}"
        figures.append(plots.save_figure(plots.head_figure(data), out / f"{stem}.{fmt}"))
        figures.append(
            plots.save_figure(
                plots.silhouette_figure(data),
                out / f"silhouette_{stem.removeprefix('head_')}.{fmt}",
            )
        )
    for kind in ("x", "y"):
        fig = plots.heads_figure(s, run.run_id, analysis.analysis_id, "mean_silhouette", kind)
        figures.append(plots.save_figure(fig, out / f"heads_mean_silhouette_{kind}.{fmt}"))
    best = best[[c for c in RANK_COLUMNS if c in best.columns]].assign(sample=samples_shown)
    report = build_report(
        s, out / REPORT_DIR, run.run_id, analysis.analysis_id, progress=progress
    ).index
    return PipelineResult(str(store), run.run_id, analysis.analysis_id, best, figures, report)
