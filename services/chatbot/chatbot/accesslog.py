"""Keep the kubelet's probe requests out of the access log.

The same file in services/backend and services/chatbot (tests/images checks they stay equal);
each app calls quiet_probes() with its own probe path (k8s/templates: the chart's httpGet path).
With probes every few seconds, `GET /health 200` lines would bury everything else in
`kubectl logs` and devloop's log view. A probe that fails (not 2xx) is still logged: that is
news. The filter sits on the `uvicorn.access` logger, which both servers use: uvicorn itself
(production image) and gunicorn's uvicorn worker (development image).
"""

from __future__ import annotations

import logging

ACCESS_LOGGER = "uvicorn.access"


class ProbeFilter(logging.Filter):
    """Drops uvicorn access records `(client, method, path, http_version, status)` of a
    successful GET or HEAD of one of `paths` (the query string ignored)."""

    lumina_probes = True

    def __init__(self, paths: tuple[str, ...]) -> None:
        super().__init__()
        self.paths = frozenset(paths)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or len(args) != 5:
            return True
        _client, method, path, _version, status = args
        return not (method in ("GET", "HEAD") and str(path).split("?", 1)[0] in self.paths
                    and isinstance(status, int) and 200 <= status < 300)


def quiet_probes(*paths: str) -> None:
    """Install the filter once per process (apps built twice, e.g. in tests, add nothing)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    for existing in logger.filters:
        if getattr(existing, "lumina_probes", False):  # also one from a re-imported module
            existing.paths = frozenset(paths)  # type: ignore[attr-defined]
            return
    logger.addFilter(ProbeFilter(paths))
