"""Timestamps stored as ISO 8601 UTC text: sortable, readable, and JSON-ready."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
