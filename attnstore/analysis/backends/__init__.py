"""The clustering backends, by name: ``sklearn`` (the seed's calls, one problem at a time, the
reference) and ``torch`` (every problem of a chunk at once, on the CPU or a GPU). Both take
``rows`` (n_problems, n_rows, n_keys), ``x`` (n_problems, n_rows, n_features) and the k to try,
and return a :class:`~attnstore.analysis.backends.base.ClusterResult`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from attnstore.errors import ConfigError, known
from attnstore.vocab import BACKENDS

if TYPE_CHECKING:  # the backends load torch and scikit-learn; naming them here loads neither
    import numpy as np

    from attnstore.analysis.backends.base import ClusterResult

__all__ = ["FitFunction", "get_backend"]

FitFunction = Callable[["np.ndarray", "np.ndarray", "np.ndarray"], "ClusterResult"]


def get_backend(name: str, device: str = "cpu", random_state: int = 0) -> FitFunction:
    """The fit function of backend ``name``, ``fit(rows, x, k_values) -> ClusterResult``, on
    ``device`` (the sklearn backend runs on the cpu only), with ``random_state`` for k-means (and
    scikit-learn's LinearSVC)."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend '{name}'; known: {known(BACKENDS)}")
    if name == "sklearn":
        if device != "cpu":
            raise ConfigError(f"backend 'sklearn' runs on the cpu only (got device '{device}')")
        from attnstore.analysis.backends.sklearn import fit_sklearn

        def fit(rows, x, k_values):
            return fit_sklearn(rows, x, k_values, random_state=random_state)

        return fit
    from attnstore.analysis.backends.torch import fit_torch

    def fit(rows, x, k_values):
        return fit_torch(rows, x, k_values, device=device, random_state=random_state)

    return fit
