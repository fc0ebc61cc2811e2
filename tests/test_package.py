"""The package surface: a small sorted __all__, and nothing heavy at import time."""

from __future__ import annotations

import subprocess
import sys

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
