"""The stand-in's fault switch: make the API answer the way a struggling real one does.

Real API servers shed load (429 with Retry-After, 503), fail behind load balancers (500, 502,
504) and disappear (connections reset while they restart or the network drops). Tests drive
these through `StandIn.faults` (or `handle.standin.faults`); a person drives the same switch
through the authenticated control endpoint `/standin/faults` (see README.md).

    faults.fail("PATCH", r"/deployments/api$", status=503, count=5)
    faults.fail("*", r"/pods", status=429, count=2, retry_after=1)
    faults.drop(30)        # for 30 s every connection is reset, and open streams are cut
    faults.clear()

Every fault served is recorded in `faults.served` so a test can prove the fault happened.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from . import errors

CONTROL_PATH = "/standin/faults"

_REASONS = {429: "TooManyRequests", 500: "InternalError", 502: "BadGateway",
            503: "ServiceUnavailable", 504: "Timeout"}


@dataclass
class Rule:
    """Fail the next `count` requests whose method is `verb` ("*": any) and whose path (no
    query string) matches the regular expression `path` (searched, not anchored)."""

    verb: str
    path: str
    status: int = 503
    count: int = 1
    retry_after: float | None = None
    served: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.verb in ("*", method.upper())) and re.search(self.path, path) is not None


@dataclass
class Served:
    """One request the switch failed (a status) or cut (status None)."""

    method: str
    path: str
    status: int | None
    at: float = field(default_factory=time.monotonic)


class Faults:
    """Rules and a drop window, consulted by the HTTP server for every request."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._drop_until = 0.0
        self.served: list[Served] = []
        self.cut_connections: Callable[[], None] = lambda: None  # set by the server

    # -- the switch ------------------------------------------------------------------------------

    def fail(self, verb: str, path: str, status: int = 503, count: int = 1,
             retry_after: float | None = None) -> Rule:
        """Add a rule; returns it (its `served` counts the requests it failed)."""
        if not 400 <= status <= 599:
            raise ValueError(f"a fault's status must be 4xx or 5xx, not {status}")
        if count < 1:
            raise ValueError(f"a fault's count must be at least 1, not {count}")
        try:
            re.compile(path)  # a bad pattern fails here, not on the next request
        except re.error as exc:
            raise ValueError(f"a fault's path must be a regular expression: {exc}") from exc
        rule = Rule(verb.upper(), path, status, count, retry_after)
        with self._lock:
            self._rules.append(rule)
        return rule

    def drop(self, seconds: float) -> None:
        """For `seconds`, reset every new connection and cut the open ones (watches, log
        streams, exec sessions): what a client sees while the API server is unreachable."""
        with self._lock:
            self._drop_until = self._clock() + seconds
        self.cut_connections()

    def clear(self) -> None:
        """Remove every rule and end a drop window."""
        with self._lock:
            self._rules.clear()
            self._drop_until = 0.0

    def failed(self, status: int | None = None) -> int:
        """How many requests were failed (with `status`), or cut when status is None."""
        return sum(1 for s in list(self.served) if s.status == status)

    # -- used by the server ------------------------------------------------------------------

    def dropping(self) -> bool:
        return self._clock() < self._drop_until

    def refuse(self, conn: socket.socket) -> None:
        """Reset `conn` (RST, not FIN): the client sees ECONNRESET, as from a dead endpoint."""
        self.served.append(Served("CONNECT", "", None))
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            conn.close()

    def take(self, method: str, path: str) -> Rule | None:
        """The rule this request falls under, consuming one of its count."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.count -= 1
                    rule.served += 1
                    if rule.count <= 0:
                        self._rules.remove(rule)
                    self.served.append(Served(method, path, rule.status))
                    return rule
        return None

    def answer(self, req: Any, path: str) -> int | None:
        """Serve the control endpoint or a fault for this request; None: serve it normally."""
        if path.rstrip("/") == CONTROL_PATH:
            return self._control(req)
        rule = self.take(req.command, path)
        if rule is None:
            return None
        with contextlib.suppress(errors.ApiError):
            req.body_or_none()  # drained, so the keep-alive connection stays in sync
        reason = _REASONS.get(rule.status, "InternalError")
        status = errors.ApiError(rule.status, reason,
                                 f"stand-in fault: {req.command} {path} failed on purpose")
        doc = status.status()
        if rule.retry_after is not None:
            doc.setdefault("details", {})["retryAfterSeconds"] = int(rule.retry_after)
        data = json.dumps(doc).encode()
        req.send_response(rule.status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        if rule.retry_after is not None:
            req.send_header("Retry-After", f"{rule.retry_after:g}")
        req.end_headers()
        req.wfile.write(data)
        return rule.status

    def _control(self, req: Any) -> int:
        """GET: the rules and what was served; POST {verb, path, status, count, retry_after}
        or {drop_seconds}; DELETE: clear."""
        if req.command == "POST":
            body = req.body()
            if not isinstance(body, dict):
                raise errors.bad_request("POST a JSON object: {verb, path, status, count, "
                                         "retry_after} or {drop_seconds}")
            try:
                if "drop_seconds" in body:
                    self.drop(float(body["drop_seconds"]))
                else:
                    self.fail(str(body.get("verb", "*")), str(body["path"]),
                              int(body.get("status", 503)), int(body.get("count", 1)),
                              None if body.get("retry_after") is None
                              else float(body["retry_after"]))
            except (KeyError, ValueError, TypeError) as exc:
                raise errors.bad_request(f"bad fault: {exc}") from exc
        elif req.command == "DELETE":
            self.clear()
        elif req.command != "GET":
            raise errors.method_not_allowed(req.command, "standin/faults")
        with self._lock:
            doc = {"rules": [asdict(r) for r in self._rules],
                   "drop_seconds_left": max(self._drop_until - self._clock(), 0.0),
                   "served": [asdict(s) for s in self.served[-100:]]}
        return req.send_json(200, doc)
