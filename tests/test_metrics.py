"""NMI and eta2 (attnstore.analysis.metrics) equal their definitions, many problems at once."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from attnstore.analysis.metrics import eta2, nmi


def test_nmi_and_eta2_equal_their_definitions():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 4, (30, 20))
    y = rng.integers(0, 2, (30, 20))
    labels[1], y[2], labels[3], y[3] = 2, 0, 0, 1  # single-class cases
    want = [normalized_mutual_info_score(y[i], labels[i]) for i in range(30)]
    np.testing.assert_allclose(nmi(labels, y), want, atol=1e-12)
    pts = np.arange(20.0)
    for i in range(30):
        means = {c: pts[labels[i] == c].mean() for c in np.unique(labels[i])}
        fitted = np.array([means[c] for c in labels[i]])
        assert eta2(labels, pts)[i] == pytest.approx(
            ((fitted - pts.mean()) ** 2).mean() / pts.var()
        )


def test_eta2_of_a_constant_quantity_is_nan():
    assert np.isnan(eta2(np.zeros((2, 5), dtype=int), np.full(5, 3.0))).all()


def test_nmi_of_identical_labellings_is_one():
    labels = np.random.default_rng(0).integers(0, 3, (4, 30))
    np.testing.assert_allclose(nmi(labels, labels), 1.0, atol=1e-12)
