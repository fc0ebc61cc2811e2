"""The package's imports run one way: down the layers below, never up or sideways.

    errors, vocab
    limits, progress, schema, fs, provenance
    tasks, model, transaction
    store, checkpoint
    connection, outputs
    training, extraction, analysis, queries, interventions
    plots
    report
    pipeline
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
    {"limits", "progress", "schema", "fs", "provenance"},
    {"tasks", "model", "transaction"},
    {"store", "checkpoint"},
    {"connection", "outputs", "migration"},
    {"training", "extraction", "analysis", "queries", "interventions"},
    {"plots"},
    {"report"},
    {"pipeline", "sweep"},
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
