"""A static, self-contained HTML report of a store: written from stored rows only (no model),
opened from ``file://`` with no server and no network, the same bytes from the same store.

    data    rows from the store → plain, JSON-ready dicts (floats rounded, keys sorted)
    site    the pages: index.html, heads.html, heads/L{layer}_H{head}.html, and their files
    assets  report.js (renders the JSON with Plotly) and report.css, copied into the report
"""

from __future__ import annotations

from attnstore.report.site import REPORT_DIR, ReportResult, build_report

__all__ = ["REPORT_DIR", "ReportResult", "build_report"]
