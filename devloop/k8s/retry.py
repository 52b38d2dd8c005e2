"""One timeout-and-retry policy for Kubernetes API calls.

API servers shed load with 429 and 503, restart behind load balancers (connection resets) and
stall (timeouts); none of these says anything about devloop's inputs, so a call that meets one is
tried again after a back-off instead of failing the reload. Everything else (400s, TLS and
credential failures) is raised at once: retrying cannot change the answer. The back-off is a pure
function of the attempt number and a random draw, and the clock and sleep are injected, so the
policy is unit-tested without waiting.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

import urllib3
from kubernetes.client.exceptions import ApiException

from devloop.k8s import timeouts
from devloop.k8s.errors import api_message, connection_detail, one_line

T = TypeVar("T")

# 501 Not Implemented and 505 HTTP Version Not Supported will answer the same way next time.
_PERMANENT_5XX = frozenset({501, 505})


@dataclass(frozen=True)
class RetryPolicy:
    """How long one API call may take and how often it is tried again.

    `deadline_s` bounds the whole call (attempts plus sleeps) so a caller never waits longer
    than that for an answer, however the server misbehaves.
    """

    attempts: int = 6
    deadline_s: float = 30.0
    base_s: float = 0.25  # first back-off; doubles per attempt
    max_delay_s: float = 5.0
    max_retry_after_s: float = 30.0  # a longer Retry-After is not waited for: the call fails
    connect_timeout_s: float = timeouts.REQUEST[0]
    read_timeout_s: float = timeouts.REQUEST[1]  # a stalled request is abandoned (and retried)

    @property
    def request_timeout(self) -> tuple[float, float]:
        """The `_request_timeout` argument for one request of the kubernetes client."""
        return (self.connect_timeout_s, self.read_timeout_s)


DEFAULT = RetryPolicy()


@dataclass(frozen=True)
class Retry:
    """One retry about to happen, handed to `on_retry`; str() is the one line to show."""

    what: str
    attempt: int  # 1 for the first retry
    delay_s: float
    detail: str

    def __str__(self) -> str:
        return one_line(f"{self.what}: {self.detail}; retrying in {self.delay_s:.1f} s")


def backoff(attempt: int, policy: RetryPolicy = DEFAULT, draw: float = 0.5) -> float:
    """Seconds to wait before retry number `attempt` (1-based): exponential, capped, and
    jittered by `draw` in [0, 1) between half and all of it, so many clients that failed
    together do not come back together."""
    ceiling = min(policy.max_delay_s, policy.base_s * 2 ** max(attempt - 1, 0))
    return ceiling * (0.5 + 0.5 * min(max(draw, 0.0), 1.0))


def _root(exc: BaseException) -> BaseException:
    """urllib3 wraps the real failure in MaxRetryError once its own retries are spent."""
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        return exc.reason
    return exc


def _transient_status(status: int) -> bool:
    return status == 429 or (500 <= status < 600 and status not in _PERMANENT_5XX)


def is_transient(exc: BaseException) -> bool:
    """True for failures a later identical request may not meet: 429, 5xx (but 501/505),
    connection refused or reset, and timeouts. TLS errors (ApiException status 0), 4xx and
    anything that is not a transport failure are not."""
    exc = _root(exc)
    if isinstance(exc, ApiException):
        return _transient_status(exc.status or 0)
    status_code = getattr(exc, "status_code", None)  # websocket-client's handshake failure
    if isinstance(status_code, int):
        return _transient_status(status_code)
    if isinstance(exc, urllib3.exceptions.SSLError):
        return False
    if isinstance(exc, urllib3.exceptions.TimeoutError | urllib3.exceptions.ProtocolError
                  | urllib3.exceptions.NewConnectionError):
        return True
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    return type(exc).__name__ in ("WebSocketConnectionClosedException",
                                  "WebSocketTimeoutException")


def retry_after(exc: BaseException, now: Callable[[], float] = time.time) -> float | None:
    """Seconds the server asked us to wait (Retry-After as seconds or an HTTP date, else the
    Status body's details.retryAfterSeconds), or None when it did not say."""
    if not isinstance(exc, ApiException):
        return None
    headers = exc.headers or {}
    value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    if value:
        value = str(value).strip()
        try:
            return max(float(value), 0.0)
        except ValueError:
            pass
        try:
            return max(parsedate_to_datetime(value).timestamp() - now(), 0.0)
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else exc.body
    if body:
        try:
            seconds = (json.loads(body).get("details") or {}).get("retryAfterSeconds")
        except (ValueError, AttributeError):
            return None
        if isinstance(seconds, int | float) and not isinstance(seconds, bool):
            return max(float(seconds), 0.0)
    return None


def describe(exc: BaseException) -> str:
    """The failure in one line, as the rest of devloop words it."""
    if isinstance(exc, ApiException) and exc.status not in (0, None):
        return api_message(exc)
    return connection_detail(exc)


def delay_for(exc: BaseException, attempt: int, policy: RetryPolicy = DEFAULT,
              draw: float = 0.5) -> float:
    """The wait before retry `attempt` after `exc`: the server's Retry-After when it gave one
    (never less than our own back-off floor), else the jittered back-off."""
    asked = retry_after(exc)
    if asked is not None:
        return max(asked, policy.base_s * 0.5)
    return backoff(attempt, policy, draw)


def call(fn: Callable[[], T], *, what: str, policy: RetryPolicy = DEFAULT,
         sleep: Callable[[float], object] = time.sleep,
         clock: Callable[[], float] = time.monotonic,
         on_retry: Callable[[Retry], object] | None = None,
         draw: Callable[[], float] = random.random,
         transient: Callable[[BaseException], bool] = is_transient) -> T:
    """Run `fn`, retrying transient failures with back-off until it succeeds, the attempts are
    spent or the deadline would pass; then the last error is raised unchanged, so callers keep
    their own error handling. `what` names the call for `on_retry` ("patch deployment/api");
    `transient` narrows what is retried where a status means something else to the caller."""
    start = clock()
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if not transient(exc):
                raise
            attempt += 1
            delay = delay_for(exc, attempt, policy, draw())
            if (attempt >= policy.attempts or delay > policy.max_retry_after_s
                    or clock() - start + delay > policy.deadline_s):
                raise
            if on_retry is not None:
                on_retry(Retry(what, attempt, delay, describe(_root(exc))))
            sleep(delay)
