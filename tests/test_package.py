"""The package surface: a small sorted __all__, and nothing heavy at import time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import attnstore


def test_all_is_sorted_and_resolvable():
    assert attnstore.__all__ == sorted(attnstore.__all__)
    for name in attnstore.__all__:
        assert getattr(attnstore, name) is not None


def test_import_loads_nothing_heavy():
    code = (
        "import sys, attnstore; heavy = {'torch', 'pandas', 'duckdb', 'sklearn', "
        "'matplotlib'} & set(sys.modules); print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_exports_stay_what_they_are_after_repeated_access():
    """An export never turns into the module it comes from, however often it is looked up and
    whatever is imported in between (a lazily imported submodule is bound onto the package)."""
    code = (
        "import importlib, attnstore\n"
        "for name in attnstore.__all__:\n"
        "    first = getattr(attnstore, name)\n"
        "    importlib.import_module(attnstore._EXPORTS.get(name, 'attnstore'))\n"
        "    assert getattr(attnstore, name) is first, name\n"
        "for name in ('extract', 'train', 'analyze', 'evaluate', 'query', 'connect'):\n"
        "    assert callable(getattr(attnstore, name)) and callable(getattr(attnstore, name))\n"
        "import attnstore.extraction, attnstore.training\n"
        "assert callable(attnstore.extract) and callable(attnstore.train)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_no_module_is_named_like_an_export():
    names = {p.stem for p in Path(attnstore.__file__).parent.iterdir()}
    assert not names & set(attnstore.__all__)
