"""Intervals over prompts: a seeded paired bootstrap, and the standard error of a mean.

Effects are paired: each prompt is run unchanged and changed, and its *per-prompt value* is
the difference (changed − base, e.g. the share of its late points predicted right). The
estimate is the mean of those values over prompts; its interval comes from resampling whole
prompts, so the pairing is kept.

**The bootstrap** (:func:`paired_bootstrap`), one definition:

- prompts are taken in the order given (the store's: by ``sample``) and numbered 0..n−1;
- replicate r (0..replicates−1) draws n prompts with replacement: draw j picks prompt
  ``mix32(mix32(mix32(seed) ^ r) ^ j) % n``, where ``mix32`` is a 32-bit integer hash
  (:func:`mix32`); no random number generator, so the draws are the same on every machine,
  in every numpy and in SQL;
- each replicate's mean of the drawn values; the interval is the (1 − confidence) / 2 and
  (1 + confidence) / 2 quantiles of the replicate means, linearly interpolated between order
  statistics (numpy's ``quantile`` default, DuckDB's ``quantile_cont``): the percentile
  interval.

The same draws are the shared SQL macro ``bootstrap_draws(n_prompts)`` (queries/macros), which
the effect views join to per-prompt values; a test holds the two to the same intervals. The
defaults (:data:`BOOTSTRAP_REPLICATES`, :data:`BOOTSTRAP_SEED`, :data:`CONFIDENCE`) are the
macro's, so the same store always gives the same bytes.

**One prompt** gives the estimate (its value) and no interval: lower and upper are NaN (null
in SQL). Every replicate of one prompt is that prompt, and a zero-width interval would claim a
certainty one prompt cannot give. **Zero prompts** is a :class:`ConfigError`.

**The standard error** (:func:`standard_error`) of a mean over n prompts is exactly
sd / √n (sd with n − 1 in the denominator); :func:`normal_interval` is estimate ± z · se with
z the normal quantile of the confidence (1.96 for 95%). It is what the per-point effects use,
where a bootstrap per (head, point) would cost thousands of resamples each.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from attnstore.errors import ConfigError

BOOTSTRAP_REPLICATES = 1000  # replicates of the percentile bootstrap
BOOTSTRAP_SEED = 0  # the hash's seed: the same store, the same intervals
CONFIDENCE = 0.95  # the interval's nominal coverage
_MASK = np.uint64(0xFFFFFFFF)
_MULTIPLIER = np.uint64(0x45D9F3B)  # < 2**27: every product stays below 2**59 in SQL's BIGINT


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval: floats for one estimate, arrays of shape
    (n_estimates,) for several; ``lower``/``upper`` NaN where there is none (one prompt)."""

    estimate: float | np.ndarray
    lower: float | np.ndarray
    upper: float | np.ndarray
    method: str  # 'bootstrap' or 'standard_error'


def mix32(h: np.ndarray) -> np.ndarray:
    """A 32-bit integer hash of values 0 <= h < 2**32, as uint64: two rounds of xor-shift
    and multiply (by 0x45d9f3b), then a last xor-shift. The SQL macro ``mix32`` is the same."""
    h = np.asarray(h, dtype=np.uint64)
    for _ in range(2):
        h = ((h ^ (h >> np.uint64(16))) * _MULTIPLIER) & _MASK
    return h ^ (h >> np.uint64(16))


def resample_indices(
    n_prompts: int, replicates: int = BOOTSTRAP_REPLICATES, seed: int = BOOTSTRAP_SEED
) -> np.ndarray:
    """The prompts each replicate draws: int64 of shape (replicates, n_prompts), values in
    0..n_prompts−1 (see the module docstring)."""
    _check_counts(n_prompts, replicates, seed)
    r = mix32(mix32(np.uint64(seed)) ^ np.arange(replicates, dtype=np.uint64))  # (replicates,)
    j = np.arange(n_prompts, dtype=np.uint64)
    return (mix32(r[:, None] ^ j[None, :]) % np.uint64(n_prompts)).astype(np.int64)


def paired_bootstrap(
    changed,
    base=None,
    *,
    replicates: int = BOOTSTRAP_REPLICATES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """The mean over prompts of ``changed − base`` (or of ``changed`` when ``base`` is None)
    and its percentile bootstrap interval over prompts.

    ``changed`` and ``base``: per-prompt values, shape (n_prompts,) for one estimate or
    (n_prompts, n_estimates) for several that share the same resampled prompts (the heads of
    one intervention, say). One prompt: no interval (NaN); zero prompts: ConfigError."""
    values = _paired(changed, base)
    _check_confidence(confidence)
    n = values.shape[0]
    estimate = values.mean(0)
    if n == 1:
        nan = np.full(values.shape[1:], np.nan)
        return _interval(estimate, nan, nan, "bootstrap")
    idx = resample_indices(n, replicates, seed)
    means = values[idx].mean(1)  # (replicates, ...)
    alpha = (1 - confidence) / 2
    lower, upper = np.quantile(means, [alpha, 1 - alpha], axis=0)
    return _interval(estimate, lower, upper, "bootstrap")


def standard_error(changed, base=None) -> float | np.ndarray:
    """The standard error of the mean over prompts of ``changed − base``: sd / √n with the
    n − 1 sd; NaN for one prompt. Shapes as :func:`paired_bootstrap`."""
    values = _paired(changed, base)
    n = values.shape[0]
    if n == 1:
        return _scalar(np.full(values.shape[1:], np.nan))
    return _scalar(values.std(0, ddof=1) / np.sqrt(n))


def normal_interval(changed, base=None, *, confidence: float = CONFIDENCE) -> Interval:
    """The mean over prompts of ``changed − base`` ± z · its standard error (z: the normal
    quantile of ``confidence``, 1.96 for 0.95); no interval (NaN) for one prompt."""
    values = _paired(changed, base)
    _check_confidence(confidence)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    se = np.asarray(standard_error(values))
    estimate = values.mean(0)
    return _interval(estimate, estimate - z * se, estimate + z * se, "standard_error")


def _paired(changed, base) -> np.ndarray:
    """``changed − base`` as float64 of shape (n_prompts, ...), checked."""
    a = np.asarray(changed, dtype=np.float64)
    if base is not None:
        b = np.asarray(base, dtype=np.float64)
        if a.shape != b.shape:
            raise ConfigError(
                f"paired values differ in shape: changed {a.shape}, base {b.shape}; "
                "accepted: one value of each per prompt"
            )
        a = a - b
    if a.ndim not in (1, 2):
        raise ConfigError(
            f"per-prompt values of shape {a.shape}; accepted: (n_prompts,) or "
            "(n_prompts, n_estimates)"
        )
    if a.shape[0] == 0:
        raise ConfigError("an interval over 0 prompts; accepted: at least 1 prompt")
    bad = int((~np.isfinite(a)).sum())
    if bad:
        raise ConfigError(f"{bad} per-prompt values are not finite (NaN or inf)")
    return a


def _check_counts(n_prompts: int, replicates: int, seed: int) -> None:
    if n_prompts < 1:
        raise ConfigError(f"an interval over {n_prompts} prompts; accepted: at least 1 prompt")
    if not 1 <= replicates < 2**32:
        raise ConfigError(f"replicates={replicates}; accepted: 1 <= replicates < 2**32")
    if not 0 <= seed < 2**32:
        raise ConfigError(f"bootstrap seed={seed}; accepted: 0 <= seed < 2**32")


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence={confidence}; accepted: 0 < confidence < 1")


def _scalar(a: np.ndarray) -> float | np.ndarray:
    return float(a) if np.ndim(a) == 0 else a


def _interval(estimate, lower, upper, method: str) -> Interval:
    return Interval(_scalar(estimate), _scalar(lower), _scalar(upper), method)
