"""Sizes checked before they are allocated: a request that cannot fit in this machine's memory
is a one-line ConfigError naming it, not a MemoryError (or the kernel's OOM killer) after
minutes of work."""

from __future__ import annotations

import os

from attnstore.errors import ConfigError

GIB = 1 << 30


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
