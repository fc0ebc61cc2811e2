"""How a report is opened headless and offline, for its browser test and its benchmark: Debian's
Chromium (no browser download) with every background connection off and every host name
unresolvable, so that a page that reached for the network would fail to load it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
OFFLINE_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]


@contextmanager
def offline_chromium(
    profile: str | Path, viewport: tuple[int, int] | None = (1280, 900)
) -> Iterator[Any]:
    """A headless, offline Chromium (Playwright's persistent context over ``profile``, a new
    empty folder), closed on leaving; ``viewport=None`` keeps Playwright's default size."""
    from playwright.sync_api import sync_playwright

    size = {} if viewport is None else {"viewport": {"width": viewport[0], "height": viewport[1]}}
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=OFFLINE_ARGS, headless=True, **size
        )
        try:
            yield browser
        finally:
            browser.close()
