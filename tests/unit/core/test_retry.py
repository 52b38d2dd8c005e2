"""The API retry policy as plain functions, with a fake clock and sleep (no server, no waiting)."""

from __future__ import annotations

import json
from email.utils import formatdate

import pytest
import urllib3
import websocket
from kubernetes.client.exceptions import ApiException

from devloop.k8s import retry
from devloop.k8s.retry import RetryPolicy


class FakeResponse:
    """What the kubernetes client wraps into ApiException(http_resp=...)."""

    def __init__(self, status: int, headers: dict[str, str] | None = None, body: bytes = b""):
        self.status = status
        self.reason = {429: "Too Many Requests", 503: "Service Unavailable"}.get(status, "Err")
        self.data = body
        self._headers = urllib3.HTTPHeaderDict(headers or {})

    def getheaders(self):
        return self._headers


def api_error(status: int, headers: dict[str, str] | None = None, body: dict | None = None
              ) -> ApiException:
    return ApiException(http_resp=FakeResponse(status, headers,
                                               json.dumps(body or {}).encode()))


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def flaky(failures: list[BaseException], result: str = "ok"):
    calls = []

    def fn() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return result
    return fn, calls


@pytest.mark.parametrize("exc", [
    api_error(503), api_error(500), api_error(502), api_error(504), api_error(429),
    urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
    urllib3.exceptions.ReadTimeoutError(None, "/api", "Read timed out."),
    urllib3.exceptions.MaxRetryError(None, "/api", urllib3.exceptions.NewConnectionError(
        None, "Failed to establish a new connection: [Errno 111] Connection refused")),
    ConnectionResetError(104, "Connection reset by peer"), ConnectionRefusedError(111, "refused"),
    TimeoutError("timed out"),
    websocket.WebSocketBadStatusException("Handshake status %d %s", 503, "Unavailable"),
    websocket.WebSocketConnectionClosedException("closed"),
])
def test_server_overload_resets_and_timeouts_are_transient(exc):
    assert retry.is_transient(exc)


@pytest.mark.parametrize("exc", [
    api_error(400), api_error(401), api_error(403), api_error(404), api_error(409),
    api_error(422), api_error(501),
    ApiException(status=0, reason="SSLError: certificate verify failed"),
    urllib3.exceptions.MaxRetryError(None, "/api", urllib3.exceptions.SSLError("bad cert")),
    ValueError("bad manifest"), FileNotFoundError("chart"), KeyError("x"),
    websocket.WebSocketBadStatusException("Handshake status %d %s", 403, "Forbidden"),
])
def test_answers_that_a_retry_cannot_change_are_not_transient(exc):
    assert not retry.is_transient(exc)


def test_backoff_doubles_per_attempt_up_to_the_cap_and_jitter_stays_within_half_of_it():
    p = RetryPolicy(base_s=0.25, max_delay_s=2.0)
    assert [retry.backoff(n, p, draw=1.0) for n in range(1, 7)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert retry.backoff(3, p, draw=0.0) == 0.5
    assert 0.5 <= retry.backoff(3, p, draw=0.37) <= 1.0


def test_retry_after_is_read_as_seconds_an_http_date_or_the_status_details():
    assert retry.retry_after(api_error(429, {"Retry-After": "3"})) == 3.0
    assert retry.retry_after(api_error(429, {"retry-after": "2"})) == 2.0
    date = formatdate(1_000_010, usegmt=True)
    assert retry.retry_after(api_error(503, {"Retry-After": date}),
                             now=lambda: 1_000_000) == pytest.approx(10.0)
    body = {"kind": "Status", "details": {"retryAfterSeconds": 4}}
    assert retry.retry_after(api_error(429, body=body)) == 4.0
    assert retry.retry_after(api_error(503)) is None
    assert retry.retry_after(api_error(429, {"Retry-After": "soon"})) is None
    assert retry.retry_after(ConnectionResetError()) is None


def test_a_burst_of_503s_is_retried_with_growing_back_off_and_the_call_succeeds():
    clock = FakeClock()
    fn, calls = flaky([api_error(503), api_error(503), api_error(503)])
    seen: list[retry.Retry] = []
    p = RetryPolicy(base_s=0.2, max_delay_s=5.0)
    result = retry.call(fn, what="patch deployment/api", policy=p, sleep=clock.sleep,
                        clock=clock, on_retry=seen.append, draw=lambda: 1.0)
    assert result == "ok" and len(calls) == 4
    assert clock.slept == [0.2, 0.4, 0.8]
    assert [r.attempt for r in seen] == [1, 2, 3]
    line = str(seen[0])
    assert "\n" not in line
    assert line.startswith("patch deployment/api: HTTP 503") and "retrying in 0.2 s" in line


def test_429_waits_what_retry_after_asks_not_the_back_off():
    clock = FakeClock()
    fn, _ = flaky([api_error(429, {"Retry-After": "3"})])
    assert retry.call(fn, what="x", sleep=clock.sleep, clock=clock, draw=lambda: 0.0) == "ok"
    assert clock.slept == [3.0]


def test_a_retry_after_longer_than_the_policy_accepts_fails_at_once():
    clock = FakeClock()
    fn, calls = flaky([api_error(429, {"Retry-After": "3600"})])
    with pytest.raises(ApiException) as info:
        retry.call(fn, what="x", sleep=clock.sleep, clock=clock)
    assert info.value.status == 429 and clock.slept == [] and len(calls) == 1


def test_a_permanent_error_is_raised_unchanged_without_a_retry():
    clock = FakeClock()
    err = api_error(422)
    fn, calls = flaky([err])
    with pytest.raises(ApiException) as info:
        retry.call(fn, what="x", sleep=clock.sleep, clock=clock)
    assert info.value is err and len(calls) == 1 and clock.slept == []


def test_the_deadline_bounds_the_whole_call_and_the_last_error_is_raised():
    clock = FakeClock()
    failures = [ConnectionRefusedError(111, "refused") for _ in range(100)]
    fn, calls = flaky(failures)
    p = RetryPolicy(attempts=100, deadline_s=10.0, base_s=1.0, max_delay_s=4.0)
    with pytest.raises(ConnectionRefusedError):
        retry.call(fn, what="x", policy=p, sleep=clock.sleep, clock=clock, draw=lambda: 1.0)
    assert sum(clock.slept) <= 10.0
    assert clock.slept == [1.0, 2.0, 4.0]  # a 4th sleep of 4 s would end past the deadline
    assert len(calls) == 4


def test_the_attempt_count_bounds_the_call_too():
    clock = FakeClock()
    fn, calls = flaky([api_error(503) for _ in range(10)])
    with pytest.raises(ApiException):
        retry.call(fn, what="x", policy=RetryPolicy(attempts=3), sleep=clock.sleep, clock=clock)
    assert len(calls) == 3


def test_the_policy_gives_the_clients_request_timeout():
    assert RetryPolicy(connect_timeout_s=2, read_timeout_s=9).request_timeout == (2, 9)
