"""`GET /api/status`: the `devloop status -o json` document, computed on the asking HTTP thread
(never on a publishing thread) and shared for a second, so a page that asks after every rollout
event, or several open tabs, cost one cluster round trip."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

Collect = Callable[[], list[dict[str, Any]]]


class StatusCache:
    """One computation at a time; callers within `ttl` seconds of the last one share it."""

    def __init__(self, collect: Collect, redact: Callable[[Any], Any], ttl: float = 1.0) -> None:
        self._collect = collect
        self._redact = redact
        self._ttl = ttl
        self._lock = threading.Lock()
        self._doc: dict[str, Any] | None = None
        self._at = 0.0
        self._seen: dict[str, float] = {}  # pod name -> first time a status showed it

    def get(self) -> dict[str, Any]:
        with self._lock:
            if self._doc is None or time.monotonic() - self._at >= self._ttl:
                self._doc = self._compute()
                self._at = time.monotonic()
            return self._doc

    def _compute(self) -> dict[str, Any]:
        try:
            rows = self._collect()
        except Exception as exc:  # the page shows it; the next ask retries
            return {"schema": "devloop.status/v1", "services": [],
                    "error": f"devloop status failed: {exc}"}
        now = time.time()
        names = {p["name"] for row in rows for p in row.get("pods", [])}
        self._seen = {n: self._seen.get(n, now) for n in names}
        # `seen`: when this dashboard first saw each pod (the page's age for pods whose row
        # carries no creation time).
        return self._redact({"schema": "devloop.status/v1", "services": rows,
                             "seen": dict(self._seen)})
