"""The package's imports run one way: down the layers below, never up or sideways.

    errors, vocab
    limits, progress, schema, fs, provenance
    tasks, model, transaction
    store, checkpoint, corruptions
    connection, outputs
    training, extraction, analysis, queries, interventions, matching
    attribution, patching
    plots
    report
    pipeline
    sweep
    cli
    __main__

A module may import any module of a lower layer, and modules of its own component (a
subpackage such as ``analysis``), nothing else; imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "attnstore"
LAYERS = [
    {"errors", "vocab"},
    {"limits", "progress", "schema", "fs", "provenance", "stats"},
    {"tasks", "model", "transaction"},
    {"store", "checkpoint", "corruptions"},
    {"connection", "outputs", "migration"},
    {"training", "extraction", "analysis", "queries", "interventions", "matching"},
    {"attribution", "patching"},  # they load a run's model as interventions do
    {"plots"},
    {"report"},
    {"pipeline"},
    {"sweep"},  # each item is extract_and_analyze, as attnstore extract
    {"cli"},
    {"__main__"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def component(module: str) -> str | None:
    """'attnstore.analysis.views' -> 'analysis'; None for the package itself."""
    parts = module.split(".")
    return parts[1] if parts[0] == "attnstore" and len(parts) > 1 else None


def imported(path: Path) -> set[str]:
    """The attnstore components a file imports, at any depth of the file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {component(a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "attnstore":  # from attnstore import tasks
                out |= {a.name for a in node.names if a.name in RANK}
            else:
                out.add(component(node.module))
    return out - {None}


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_component_has_a_layer():
    names = {
        component("attnstore." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts))
        for p in MODULES
    }
    assert names <= set(RANK), sorted(names - set(RANK))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_down_the_layers(path):
    mine = component("attnstore." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
    upward = sorted(c for c in imported(path) if c != mine and RANK[c] >= RANK[mine])
    assert not upward, f"{mine} (layer {RANK[mine]}) imports {upward}"


# --- the reading rule -------------------------------------------------------------------------
# Figures, the report and the pipeline read the store through named queries and shared views
# only (attnstore.queries), never its files: no Store.read / Store.df / Store.dataset, no
# connection of their own, no SQL text run from Python. The store's one lookup of a run or an
# analysis (Store.run, Store.analysis, Store.ids) is allowed.
READERS = ("plots", "report", "pipeline")
BACK_DOORS = {"read", "df", "dataset", "connect", "execute", "sql"}
# plots reads neither the analysis's modules nor the connection: its constants come from vocab.
PLOTS_MAY_NOT_IMPORT = {"analysis", "connection"}


def back_doors(path: Path) -> list[str]:
    """Calls of a BACK_DOORS name in a file, as a method (x.read(...)) or a function
    (connect(...)), or a BACK_DOORS function imported (from attnstore.queries import sql)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            if name in BACK_DOORS:
                out.append(f"line {node.lineno}: {name}(...)")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [
                f"line {node.lineno}: imports {a.name}" for a in node.names if a.name in BACK_DOORS
            ]
    return out


def _component_of(path: Path) -> str | None:
    return component("attnstore." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))


READER_MODULES = [p for p in MODULES if _component_of(p) in READERS]


@pytest.mark.parametrize("path", READER_MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_figures_report_and_pipeline_read_through_named_queries(path):
    assert not back_doors(path), back_doors(path)


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if _component_of(p) == "plots"],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_plots_import_neither_analysis_nor_connection(path):
    assert not imported(path) & PLOTS_MAY_NOT_IMPORT, imported(path) & PLOTS_MAY_NOT_IMPORT


def test_the_back_door_check_finds_each_door(tmp_path):
    """The check itself: each way of reading around the named queries is found."""
    source = tmp_path / "m.py"
    source.write_text(
        "from attnstore.queries import sql\n"
        "def f(s, con):\n"
        "    s.read('attention')\n"
        "    s.df('inputs')\n"
        "    s.dataset('clusters')\n"
        "    connect(s)\n"
        "    con.execute(f'select * from {s}')\n"
        "    s.run(); s.analysis(); s.ids('run'); s.path.read_text()\n"
    )
    found = back_doors(source)
    assert [f.split(": ")[1] for f in found] == [
        "imports sql",
        "read(...)",
        "df(...)",
        "dataset(...)",
        "connect(...)",
        "execute(...)",
    ], found


# --- one definition each ----------------------------------------------------------------------
# The words the commands' choices are made of (views, query kinds, backends, precisions, the
# metric lists, the defaults) are written once, in attnstore/vocab.py; every other module
# imports them: it neither assigns one of their names nor spells one of their tuples out, nor
# gives a parameter named after a default (view, backend) that default's value as a literal.
def vocabulary() -> dict[str, object]:
    import attnstore.vocab

    return {n: v for n, v in vars(attnstore.vocab).items() if n.isupper()}


def copies(source: str) -> list[str]:
    """Where a module's ``source`` writes one of vocab's constants again, by line."""
    words = vocabulary()
    tuples = {frozenset(v): n for n, v in words.items() if isinstance(v, tuple)}
    defaults = {n.removeprefix("DEFAULT_").lower(): v for n, v in words.items() if "DEFAULT_" in n}
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name) and t.id in words:
                    out.append(f"line {node.lineno}: assigns {t.id}")
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                name, value = node.target.id, node.value  # a dataclass field's default
                if isinstance(value, ast.Constant) and value.value == defaults.get(name, ...):
                    out.append(f"line {node.lineno}: {name} = {value.value!r}")
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
            if len(values) == len(node.elts) and frozenset(values) in tuples:
                out.append(f"line {node.lineno}: spells {tuples[frozenset(values)]} out")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            positional = [*a.posonlyargs, *a.args]
            with_default = positional[len(positional) - len(a.defaults) :]
            pairs = [*zip(with_default, a.defaults, strict=True)]
            keywords = zip(a.kwonlyargs, a.kw_defaults, strict=True)
            pairs += [(arg, d) for arg, d in keywords if d is not None]
            for arg, d in pairs:
                if isinstance(d, ast.Constant) and d.value == defaults.get(arg.arg, ...):
                    out.append(f"line {node.lineno}: {arg.arg}={d.value!r}")
    return sorted(out, key=lambda line: int(line.split(":")[0].removeprefix("line ")))


def test_copies_are_found():
    """The check finds each kind of copy (it would pass on any file if it found none)."""
    source = (
        "VIEWS = ('raw',)\n"
        "for kind in ('y', 'x'): pass\n"
        "def f(view='shared_keys', backend='sklearn'): pass\n"
        "class C:\n    backend: str = 'torch'\n"
    )
    found = copies(source)
    assert [line.split(":")[0] for line in found] == ["line 1", "line 2", "line 3", "line 5"]


@pytest.mark.parametrize(
    "path", [p for p in MODULES if p.name != "vocab.py"], ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_shared_constants_are_written_once_in_vocab(path):
    found = copies(path.read_text())
    assert not found, found
