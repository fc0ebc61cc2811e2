"""The words a store's values and the commands' choices are made of, declared once.

A light module (no imports): the command line reads its choices here without loading torch or
scikit-learn, the analysis and extraction check their arguments against the same tuples, and
readers refuse a stored value outside its domain.
"""

from __future__ import annotations

# Row views of an analysis (attnstore/analysis/views.py says what each keeps).
VIEWS = ("per_example", "raw", "shared_keys")
DEFAULT_VIEW = "shared_keys"  # removes the causal-position artefact (docs/analysis.md)
# The query rows an analysis clusters: x tokens (even query_pos) or y tokens (odd).
QUERY_KINDS = ("x", "y")
# Clustering backends: scikit-learn (the reference) or torch (batched, CPU or GPU).
BACKENDS = ("sklearn", "torch")
DEFAULT_BACKEND = "torch"  # at parity with the sklearn reference (docs/measurements.md)
# How attention.weights are stored: float32 (exact) or rounded through float16.
PRECISIONS = ("float32", "float16")
