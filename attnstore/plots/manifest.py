"""Drawing registered figure kinds into files: one (:func:`plot_figure`, what ``attnstore plot
KIND`` calls) or every figure a ``figures.toml`` manifest lists (:func:`plot_manifest`).

Nothing here knows a kind: each ``[[figure]]`` is checked against its kind's parameters in
:data:`~attnstore.plots.registry.FIGURES` and drawn by its draw function.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from attnstore.errors import ConfigError, NotFoundError, known
from attnstore.fs import is_url
from attnstore.plots.registry import FIGURES, Param, figure_kind
from attnstore.store import Store, open_store

_OUT = Param(
    "out",
    required=True,
    help="Figure file: .png, .svg or .pdf (its folder made if need be; never inside a store).",
)


def draw_figure(kind: str, store: str | Path | Store, **params: Any):
    """The figure of the registered ``kind`` drawn from ``store``, ``params`` checked against
    the kind's parameters (defaults fill the others); a matplotlib Figure."""
    spec = figure_kind(kind)
    values = spec.bind(params)
    return spec.function()(open_store(store), **values)


def plot_figure(kind: str, store: str | Path | Store, out: str | Path, **params: Any) -> Path:
    """:func:`draw_figure`, saved to ``out`` (.png, .svg or .pdf) with
    :func:`~attnstore.plots.style.save_figure`; returns the path written. ``out`` is checked
    before anything is drawn: a figure is never written inside a store."""
    from attnstore.plots.style import check_figure_path, save_figure

    check_figure_path(out)
    return save_figure(draw_figure(kind, store, **params), out)


def _show(value: Any) -> str:
    """A manifest value for a one-line message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - the tomli backport, a dependency on Python 3.10 only
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise NotFoundError(f"figure manifest '{path}' does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read figure manifest '{path}': {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"figure manifest '{path}' is not UTF-8 text (byte {e.start}); TOML files are UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"figure manifest '{path}' is not valid TOML: {e}") from None


def read_manifest(path: str | Path) -> tuple[str | None, list[dict[str, Any]]]:
    """The manifest's store (or None) and its checked ``[[figure]]`` entries: each a dict of
    its ``kind``, its ``out`` resolved against the manifest's folder, and every parameter of
    the kind (defaults filled in).

    A manifest::

        store = "store"            # optional; relative to this file, or s3://bucket/prefix;
                                   # --store overrides it

        [[figure]]
        kind = "head"              # any registered kind: head, heads, query, silhouette
        run = "0f3c..."            # optional: the latest run
        analysis = "9ab1..."       # optional: the run's latest analysis
        layer = 1
        head = 0
        sample = 3
        out = "figures/head.png"   # .png, .svg or .pdf; relative to this file

        [[figure]]
        kind = "heads"
        metric = "mean_silhouette" # a head_summary column (default mean_silhouette)
        query_kind = "x"           # x (default) or y
        out = "figures/heads.pdf"

        [[figure]]
        kind = "query"
        query = "heads_by_literals"
        params = { view = "shared_keys" }
        column = "precision_lift"
        query_kind = "y"
        out = "figures/lift.png"

    The keys of an entry are the kind's parameters, named as the options of ``attnstore
    plot KIND`` are (``--query-kind`` is ``query_kind``; ``-p`` pairs are ``params``).
    """
    path = Path(path)
    doc = _read_toml(path)
    unknown = set(doc) - {"store", "figure"}
    if unknown:
        raise ConfigError(
            f"figure manifest '{path}': unknown keys {known(sorted(unknown))}; known: figure, store"
        )
    store = doc.get("store")
    if store is not None and not isinstance(store, str):
        raise ConfigError(
            f"figure manifest '{path}': store = {_show(store)} is not a string; accepted: a "
            'folder, relative to the manifest (store = "store"), or a URL (s3://bucket/prefix)'
        )
    figures = doc.get("figure", [])
    if not isinstance(figures, list):
        raise ConfigError(
            f"figure manifest '{path}': figure = {_show(figures)} is not an array of tables; "
            "accepted: one [[figure]] table per figure"
        )
    if not figures:
        raise ConfigError(f"figure manifest '{path}' lists no [[figure]]")
    entries = []
    for i, f in enumerate(figures, 1):
        if not isinstance(f, dict):
            raise ConfigError(
                f"figure {i} of '{path}' is {_show(f)}, not a table; accepted: one [[figure]] "
                "table per figure"
            )
        kind = f.get("kind")
        if kind is None:
            raise ConfigError(
                f"figure {i} of '{path}' has no kind; known: {known(sorted(FIGURES))}"
            )
        if not isinstance(kind, str) or kind not in FIGURES:
            raise ConfigError(
                f"figure {i} of '{path}': unknown kind {_show(kind)}; known: "
                f"{known(sorted(FIGURES))}"
            )
        spec = FIGURES[kind]
        with_out = dataclasses.replace(spec, params=(*spec.params, _OUT))
        values = with_out.bind(
            {k: v for k, v in f.items() if k != "kind"}, f"figure {i} of '{path}' ({kind})"
        )
        entries.append({"kind": kind, **values, "out": path.parent / values["out"]})
    if store is not None and not is_url(store):  # a folder: relative to the manifest
        store = str(path.parent / store)
    return store, entries


def plot_manifest(
    store: str | Path | Store | None, manifest: str | Path, progress: bool = False
) -> list[Path]:
    """Rebuild every figure of ``manifest`` from ``store`` (None: the manifest's ``store``);
    returns the files written. Every entry's output path is checked and its rows read before
    any file is written, so a manifest naming something not in the store, or an output inside
    a store, writes nothing."""
    from attnstore.plots.style import check_figure_path, save_figure

    from_file, entries = read_manifest(manifest)
    if store is None and from_file is None:
        raise ConfigError(f"figure manifest '{manifest}' names no store; give one (--store)")
    s = open_store(store if store is not None else from_file)
    for i, e in enumerate(entries, 1):
        try:
            check_figure_path(e["out"], s.path)
        except ConfigError as err:
            raise ConfigError(f"figure {i} of '{manifest}': {err}") from None
    jobs = []
    for i, e in enumerate(entries, 1):
        params = {k: v for k, v in e.items() if k not in ("kind", "out")}
        try:
            jobs.append((draw_figure(e["kind"], s, **params), e["out"]))
        except (NotFoundError, ConfigError) as err:
            raise type(err)(f"figure {i} ({e['out'].name}): {err}") from None
    from attnstore.progress import progress_bar

    bar = progress_bar(jobs, desc="plot", unit="figure", enabled=progress)
    return [save_figure(fig, out, s.path) for fig, out in bar]
