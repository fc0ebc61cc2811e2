"""How a report is opened headless and offline, for its browser test and its benchmark: Debian's
Chromium (no browser download) with every background connection off and every host name
unresolvable, so that a page that reached for the network would fail to load it."""

from __future__ import annotations

from pathlib import Path

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
