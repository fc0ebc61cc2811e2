"""Row views: which attention rows are clustered, over which keys.

Attention over ``x1, y1, ..., xN, yN`` is causal, so the query row of point i spreads its mass
over ``2i + 1`` (x query) or ``2i + 2`` (y query) keys. On raw rows that difference in support
dominates Euclidean distances: the rows of the first points are peaky because they *can* only
look at a few keys, whatever the head computes. Clustering raw rows therefore tends to find
"early rows vs the rest" (DOMAIN.md, Pitfalls). The views:

- ``raw``: the seed's rows, every point, all ``2N`` keys.
- ``shared_keys``: only rows of points ``m..N-1`` (``m = N // 2`` by default), only over the
  keys of the first ``m`` points (``x1, y1, ..., xm, ym``), which every one of those rows can
  see, renormalised to sum 1. Every row then lives on the same support, so distances compare
  what the heads do, not where the row sits. Costs: half the rows, and the mass a row puts on
  later keys is not seen by the clustering (the stored attention rows keep it).
- ``per_example``: as ``shared_keys``, then each example's x and y key summed: one weight per
  earlier example (``m`` columns), for heads that read an example as a whole.

Each view returns, per query kind, the rows to cluster and the point of each row, so that
every stored label says which point it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnstore.errors import ConfigError, known
from attnstore.vocab import VIEWS

__all__ = ["MIN_ROWS", "View", "make_view"]

# An analysis needs this many rows per problem: k-means tries k >= 2 clusters, and the
# silhouette of k clusters needs k <= n_rows - 1 (clip_k_values).
MIN_ROWS = 3


@dataclass(frozen=True)
class View:
    """A row view with its parameters, as recorded in the ``analyses`` table."""

    name: str
    m: int | None = None  # first point kept (and keys shared) for the views that use it

    def points(self, n_points: int) -> np.ndarray:
        """The points whose rows the view keeps, shape (n_rows,)."""
        return np.arange(0 if self.name == "raw" else self.m_for(n_points), n_points)

    def m_for(self, n_points: int) -> int:
        return n_points // 2 if self.m is None else self.m

    def params(self, n_points: int) -> dict:
        return {} if self.name == "raw" else {"m": self.m_for(n_points)}

    def k_values(self, n_points: int, k_min: int = 2, k_max: int = 9) -> np.ndarray:
        """The k to try on the rows the view keeps of ``n_points`` points, shape (K,):
        ``k_min..k_max`` clipped to ``2..n_rows - 1``; ConfigError where none is left (fewer
        than MIN_ROWS rows, or not more than ``k_min``)."""
        from attnstore.analysis.backends.base import clip_k_values  # loads torch

        n_rows = len(self.points(n_points))
        k_values = clip_k_values(k_min, k_max, n_rows)
        if len(k_values) == 0:
            least = max(k_min, 2)
            raise ConfigError(
                f"view '{self.name}' keeps {n_rows} rows per problem of {n_points} points: too "
                f"few for any k >= {least} (silhouette needs k <= n_rows - 1, so at least "
                f"{max(MIN_ROWS, least + 1)} rows); use more points"
            )
        return k_values

    def apply(self, attn: np.ndarray, kind: str) -> np.ndarray:
        """Rows for ``kind`` ('x' or 'y') from attention of shape (..., 2N, 2N); returns shape
        (..., n_rows, n_keys) float32."""
        rows = attn[..., 0::2, :] if kind == "x" else attn[..., 1::2, :]  # (..., N, 2N)
        if self.name == "raw":
            return np.ascontiguousarray(rows, dtype=np.float32)
        n_points = rows.shape[-2]
        m = self.m_for(n_points)
        shared = rows[..., m:, : 2 * m].astype(np.float64)  # (..., N - m, 2m)
        total = shared.sum(-1, keepdims=True)
        shared = np.divide(shared, total, out=np.full_like(shared, 1 / (2 * m)), where=total > 0)
        if self.name == "per_example":
            shared = shared[..., 0::2] + shared[..., 1::2]  # (..., N - m, m)
        return np.ascontiguousarray(shared, dtype=np.float32)


def make_view(name: str, m: int | None = None, n_points: int | None = None) -> View:
    """Validate a view name and its ``m`` against the run's number of points."""
    if name not in VIEWS:
        raise ConfigError(f"unknown view '{name}'; known: {known(VIEWS)}")
    if name == "raw":
        if m is not None:
            raise ConfigError(f"view 'raw' takes no m (got m={m})")
        return View(name)
    view = View(name, m)
    if n_points is not None:
        mm = view.m_for(n_points)
        if not 1 <= mm <= n_points - MIN_ROWS:
            raise ConfigError(
                f"view '{name}' with m={mm} leaves {n_points - mm} rows of {n_points} points; "
                f"m must be between 1 and n_points - {MIN_ROWS} = {n_points - MIN_ROWS}"
            )
    return view
