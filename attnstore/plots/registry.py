"""The figure kinds, registered in one table: :data:`FIGURES`.

Each :class:`FigureKind` names its parameters (:class:`Param`: name, type, required or
default, help), the function that draws it from a store, and its doc. Everything that offers
figures reads this table and nothing else: ``attnstore plot KIND`` (one subcommand per kind,
an option per parameter), a manifest's ``[[figure]]`` entries (checked against the kind's
parameters) and :func:`attnstore.plots.plot_figure`. A draw function reads the store through
named queries only (``queries/*.sql``, whose parameters make the selection in SQL), never
``Store.read``. Adding a figure kind is writing its draw function and registering it::

    def draw_entropy(store, run=None, *, layer):
        ...  # read rows with a named query (attnstore.queries.run_query), return a Figure

    register(FigureKind(
        "entropy",
        draw_entropy,  # or "package.module:draw_entropy", imported when first drawn
        params=(RUN, Param("layer", int, required=True, help="The layer (from 0).")),
        doc="Attention entropy of every head of one layer.",
    ))

This module imports nothing heavy: the built-in kinds name their draw functions as
``"module:function"`` strings, imported only when a figure is drawn, so ``attnstore plot
--help`` loads no matplotlib.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

from attnstore.errors import ConfigError, known
from attnstore.vocab import DEFAULT_VIEW, EFFECT_METRICS, HEAD_METRICS, QUERY_KINDS, VIEWS

# head_emergence's metrics (head_summary's and heads_by_label_routing's); a test checks them
ROUTING_METRICS = ("mean_mass_y", "positive_mass_share", "chance_share", "lift", "excess_mass")
EMERGENCE_METRICS = (
    *HEAD_METRICS,
    "quality",
    "clustered_share",
    "mean_margin",
    "mean_dominant",
    "chance_recall",
    "recall_lift",
    "literal_f1",
    "chance_f1",
    *ROUTING_METRICS,
)
TYPES = (int, float, str, dict)
_TYPE_NAMES = {int: "an int", float: "a number", str: "a string", dict: "a table"}


@dataclass(frozen=True)
class Param:
    """One parameter of a figure kind.

    ``name`` is the draw function's keyword and the manifest key; on the command line it is
    ``--name-with-dashes`` unless ``flags`` spells it (``("--param", "-p")``), or a
    positional argument if ``positional``. ``type`` is int, float, str or dict (a dict is a
    TOML table in a manifest and repeatable ``NAME=VALUE`` pairs on the command line).
    ``default`` is used when the parameter is not given; the fields after it are keywords
    only. ``choices`` limits a str.
    """

    name: str
    type: type = str
    default: Any = None
    _: KW_ONLY
    required: bool = False
    help: str = ""
    choices: tuple[str, ...] | None = None
    positional: bool = False
    flags: tuple[str, ...] = ()
    metavar: str | None = None

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ConfigError(
                f"parameter '{self.name}': type {self.type!r} is not one of int, float, str, dict"
            )

    def check(self, value: Any, where: str) -> Any:
        """``value`` if it has this parameter's type (an int is a float too) and is one of
        the choices; else ConfigError naming it. None stands for "not given"."""
        if value is None:
            return None
        ok = isinstance(value, self.type) and not isinstance(value, bool)
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ConfigError(f"{where}: {self.name} = {value!r} is not {_TYPE_NAMES[self.type]}")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(
                f"{where}: unknown {self.name} '{value}'; known: {known(self.choices)}"
            )
        return value


@dataclass(frozen=True)
class FigureKind:
    """A kind of figure: ``draw(store, **params)`` returns a matplotlib Figure drawn from the
    store's rows (``store`` an opened :class:`~attnstore.store.Store`); ``draw`` is the
    function or a ``"module:function"`` string imported when first needed. ``doc`` is the
    help of ``attnstore plot NAME``: its first sentence lists the kind in ``attnstore plot
    --help``."""

    name: str
    draw: Callable[..., Any] | str
    params: tuple[Param, ...] = ()
    doc: str = ""

    def function(self) -> Callable[..., Any]:
        """The draw function, imported if registered by name."""
        if callable(self.draw):
            return self.draw
        module, _, name = self.draw.partition(":")
        return getattr(importlib.import_module(module), name)

    def bind(self, values: Mapping[str, Any], where: str | None = None) -> dict[str, Any]:
        """``values`` checked against the parameters and completed with their defaults: an
        unknown or missing key, a wrong type or an unknown choice is a ConfigError that
        starts with ``where`` (default: ``figure kind 'NAME'``)."""
        where = where or f"figure kind '{self.name}'"
        names = [p.name for p in self.params]
        if extra := set(values) - set(names):
            raise ConfigError(
                f"{where}: unknown keys {known(sorted(extra))}; known: {known(sorted(names))}"
            )
        given = {n: v for n, v in values.items() if v is not None}
        if missing := [p.name for p in self.params if p.required and p.name not in given]:
            raise ConfigError(f"{where}: missing {known(sorted(missing))}")
        return {p.name: p.check(given.get(p.name, p.default), where) for p in self.params}


FIGURES: dict[str, FigureKind] = {}


def register(kind: FigureKind, replace: bool = False) -> FigureKind:
    """Add ``kind`` to :data:`FIGURES`, so that ``attnstore plot`` and manifests offer it; a
    name already registered is a ConfigError unless ``replace``. Returns ``kind``."""
    reserved = {"kind", "out", "store"}  # the manifest's and the command's own keys
    if clash := reserved & {p.name for p in kind.params}:
        raise ConfigError(
            f"figure kind '{kind.name}': parameter names {known(sorted(clash))} are reserved"
        )
    if kind.name in FIGURES and not replace:
        raise ConfigError(f"figure kind '{kind.name}' is already registered")
    FIGURES[kind.name] = kind
    return kind


def figure_kind(name: str) -> FigureKind:
    """The registered kind ``name``; ConfigError listing the kinds if there is none."""
    if name not in FIGURES:
        raise ConfigError(f"unknown figure kind '{name}'; known: {known(sorted(FIGURES))}")
    return FIGURES[name]


# --- the built-in kinds -----------------------------------------------------------------------

RUN = Param("run", help="Run id [default: the latest run, or the run of --analysis].")
ANALYSIS = Param("analysis", help="Analysis id [default: the run's latest analysis].")
PROBLEM = tuple(
    Param(name, int, required=True, help=f"The {name} (from 0).")
    for name in ("layer", "head", "sample")
)

register(
    FigureKind(
        "head",
        "attnstore.plots.head:draw_head",
        (RUN, ANALYSIS, *PROBLEM),
        doc="The seed's head figure for one layer, head and sample: attention quadrants, "
        "cluster labels of the x and y query rows, the literals and the labels y.",
    )
)
register(
    FigureKind(
        "silhouette",
        "attnstore.plots.head:draw_silhouette",
        (RUN, ANALYSIS, *PROBLEM),
        doc="Silhouette score against k, x and y query rows, of one layer, head and sample.",
    )
)
register(
    FigureKind(
        "heads",
        "attnstore.plots.heads:draw_heads",
        (
            RUN,
            ANALYSIS,
            Param(
                "metric",
                default="mean_silhouette",
                choices=HEAD_METRICS + EFFECT_METRICS,
                help="The head_summary column to map, or an effect column of "
                "head_effect_summary (the *_delta_* ones: 'attnstore intervene' makes them).",
            ),
            Param("query_kind", default="x", choices=QUERY_KINDS, help="Which query rows."),
            Param(
                "method",
                default="zero",
                help="With an effect metric: the intervention (zero, mean, resample, knockout).",
            ),
            Param(
                "target",
                help="With an effect metric: the intervention's target [default: the one "
                "'attnstore intervene' gives the method: z for zero, mean and resample; "
                "knockout needs its key class].",
            ),
        ),
        doc="A layer × head map of one head_summary metric (or of the accuracy or logit a "
        "head carries, from an intervention), values written in.",
    )
)
register(
    FigureKind(
        "query",
        "attnstore.plots.query:draw_query",
        (
            Param("query", required=True, positional=True, metavar="NAME", help="The query."),
            Param(
                "params",
                dict,
                flags=("--param", "-p"),
                metavar="NAME=VALUE",
                help="A query parameter (repeatable); 'attnstore query show NAME' lists them.",
            ),
            Param("column", required=True, help="The numeric output column to map."),
            Param(
                "query_kind",
                choices=QUERY_KINDS,
                help="Keep the rows of one query kind (outputs with a query_kind column).",
            ),
        ),
        doc="A layer × head map of one column of a named query's output, values written in.\n"
        "\n"
        "For queries whose output has one row per (layer, head[, query_kind]), e.g. "
        "'attnstore plot query heads_by_literals --store S -p view=shared_keys --column "
        "precision_lift --query-kind y --out lift.png'. In a manifest: query = NAME, "
        'params = { view = "shared_keys" }.',
    )
)
register(
    FigureKind(
        "emergence",
        "attnstore.plots.emergence:draw_emergence",
        (
            Param(
                "metric",
                required=True,
                choices=EMERGENCE_METRICS,
                help="A head_summary metric or a label routing one (heads_by_label_routing's).",
            ),
            Param(
                "query_kind",
                default="x",
                choices=QUERY_KINDS,
                flags=("--kind", "--query-kind"),
                help="Which query rows.",
            ),
            Param(
                "view",
                default=DEFAULT_VIEW,
                choices=VIEWS,
                help="The analyses' row view (ignored by the label routing metrics).",
            ),
            Param("threshold", float, 0.5, help="The level a head must reach and keep."),
            Param("task", help="Only the runs of this task."),
            Param("seed", int, help="Only the runs of this extraction seed."),
            Param("lineage", help="The lineage to draw where the runs form several."),
        ),
        doc="A metric against training step, one line per head, the model's accuracy (and "
        "the baselines) beneath.\n"
        "\n"
        "Reads the named queries head_emergence and accuracy_over_training: the runs of one "
        "lineage (checkpoints of one training, extracted alike; 'attnstore sweep' writes "
        "them), each head's value at each step, a circle where it emerged (reached the "
        "threshold and stayed there), and the accuracy over the second half of the points, "
        "e.g. 'attnstore plot emergence --store S --metric lift --kind x --out lift.png'.",
    )
)
PATCH = Param(
    "patch",
    help="Patch id ('attnstore patch' prints it) [default: the run's latest patch of the kind].",
)
register(
    FigureKind(
        "patching",
        "attnstore.plots.patching:draw_patching",
        (RUN, PATCH),
        doc="A layer × head map of one activation patch: the share of the corruption's change "
        "of logit that patching each head from the clean prompt restores, with its interval.\n"
        "\n"
        "Reads the named query heads_by_patching_effect; drawn on a diverging scale centred "
        "at 0 (1: the clean logits), each value above its 95% interval, e.g. 'attnstore plot "
        "patching --store S --out patching.png'.",
    )
)
register(
    FigureKind(
        "paths",
        "attnstore.plots.patching:draw_paths",
        (RUN, PATCH),
        doc="The sender × receiver matrix of one path patch: the share of the corruption's "
        "change of logit that the sender's clean output restores through the receiver's "
        "input alone, with its interval.\n"
        "\n"
        "Reads the named query path_patching_matrix (attnstore patch --path '*->*.q' "
        "patches every pair); drawn on a diverging scale centred at 0, e.g. 'attnstore plot "
        "paths --store S --out paths.png'.",
    )
)
