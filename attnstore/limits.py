"""Sizes checked before any work starts: a request that cannot fit in this machine's memory,
or that would run for days, is a one-line ConfigError naming the value and the limit, not a
MemoryError (or the kernel's OOM killer), nor a silent hour, after minutes of work.

The limits, one place:

- :data:`MAX_PROMPT_VALUES`: input values (prompts x points x dims) drawn at once, a training
  batch or its evaluation prompts;
- :data:`MAX_SWEEP_ITEMS`, :data:`MAX_SAMPLES`: items of one sweep, prompts of one of its runs;
- :data:`MAX_SMALLINT`: parameters stored in int16 columns (an analysis's k range, top_paths);
- :data:`SQL_TIMEOUT_S`, :data:`SQL_MEMORY_LIMIT`: the default bounds of ``attnstore sql`` and
  ``attnstore query`` (``--timeout``, ``--memory-limit`` raise them).
"""

from __future__ import annotations

import math
import os
import re

from attnstore.errors import ConfigError

GIB = 1 << 30
# A training batch of 64 prompts x 40 points x 10 dims is 25,600 values; the sampler holds a
# few float64 copies of them (about 2 GiB at this limit).
MAX_PROMPT_VALUES = 1 << 26
MAX_SWEEP_ITEMS = 10_000  # checkpoints x tasks x seeds x samples of one sweep
MAX_SAMPLES = 1_000_000  # prompts of one sweep item's run (12 x 80 attention rows each, bundled)
MAX_SMALLINT = 2**15 - 1  # int16 columns
SQL_TIMEOUT_S = 60.0
SQL_MEMORY_LIMIT = "1GB"

_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[a-z]*)\s*", re.IGNORECASE)


def physical_memory() -> int:
    """Bytes of memory of this machine."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: assume 16 GiB
        return 16 * GIB


def check_allocation(what: str, n_bytes: float, accepted: str) -> None:
    """Raise ConfigError if ``what`` needs more bytes than the machine has."""
    memory = physical_memory()
    if n_bytes > memory:
        raise ConfigError(
            f"{what} needs about {n_bytes / GIB:,.1f} GiB, more than this machine's "
            f"{memory / GIB:,.1f} GiB of memory; accepted: {accepted}"
        )


def check_at_most(what: str, value: int, limit: int, name: str, accepted: str) -> None:
    """Raise ConfigError if ``value`` (of ``what``) is above ``limit`` (``name`` in this
    module), saying what to do instead."""
    if value > limit:
        raise ConfigError(
            f"{what} is {value:,}, above the limit of {limit:,} (attnstore.limits.{name}); "
            f"{accepted}"
        )


def parse_bytes(text: str, what: str = "memory limit") -> int:
    """A size such as ``1GB``, ``512MB``, ``1.5GiB`` or ``4000000`` (bytes) in bytes; units as
    DuckDB reads them (KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB of 1024).
    ConfigError for anything else, or for less than 1 MB."""
    m = _SIZE.fullmatch(text or "")
    unit = (m["unit"] or "b").lower() if m else None
    if m is None or unit not in _UNITS:
        raise ConfigError(
            f"{what} '{text}' is not a size; accepted: a number and a unit, e.g. 512MB, 4GB, "
            "1.5GiB (KB, MB, GB, TB: powers of 1000; KiB, MiB, GiB, TiB: of 1024)"
        )
    n = int(float(m["number"]) * _UNITS[unit])
    if n < 10**6:
        raise ConfigError(f"{what} '{text}' is below 1MB; accepted: at least 1MB")
    return n


def check_seconds(seconds: float, what: str = "timeout") -> float:
    """``seconds`` if it is a finite number above 0; ConfigError else."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ConfigError(f"{what} {seconds!r} is not a number of seconds")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"{what} {seconds!r} s is not accepted; accepted: a number above 0")
    return float(seconds)
