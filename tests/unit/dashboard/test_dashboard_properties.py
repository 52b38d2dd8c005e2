"""Property tests (Hypothesis) of the dashboard's request handling, on a real server: any method,
path, query, headers and body give a 2xx/3xx/4xx (503 only over a cap) and raw bytes give a 4xx
or a closed connection; nothing reaches the server's error handler, and it serves on after."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devloop import events as ev
from tests.dashboard.server_harness import connect, get_json, serving, status_of

_SETTINGS = settings(max_examples=120, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])


@pytest.fixture(scope="module")
def served():
    with serving(keepalive_s=0.2, socket_timeout=1) as (bus, dash, warnings):
        bus.publish(ev.POD_LOG, "api", pod="api-1", container="api", line="kept")
        yield dash, warnings
        assert not warnings, [w.data for w in warnings]
        # positive control: after the fuzzing, a normal request is answered
        assert get_json(dash, "/api/services")[0] == 200


def _first_response(dash, data: bytes) -> bytes:
    """Send, then read the response head (a stream would go on; its head is enough)."""
    with connect(dash, timeout=5) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
            sock.shutdown(2 if not data.endswith(b"\r\n\r\n") else 1)
        out = b""
        with contextlib.suppress(OSError):
            while True:
                if out.startswith(b"HTTP/1.1 100 ") and b"\r\n\r\n" in out:
                    out = out.split(b"\r\n\r\n", 1)[1]  # `Expect: 100-continue`: interim
                if b"\r\n\r\n" in out or not (chunk := sock.recv(65536)):
                    break
                out += chunk
        return out


_TOKEN = st.text(st.characters(codec="ascii", exclude_categories=["Cc", "Zs"]),
                 min_size=1, max_size=12)
_VALUE = st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=40)
_PATHS = st.sampled_from(["/", "/index.html", "/api/status", "/api/services", "/api/logs",
                          "/api/events", "/api/services/api/pause", "/api/services/api/trigger",
                          "/api/services/nope/resume", "/nope", "//", "/api/../api/services",
                          "*", "http://127.0.0.1/api/services"]) | _TOKEN.map(lambda t: "/" + t)
_QUERIES = st.lists(st.tuples(st.sampled_from(["limit", "service", "cards", "token", "x"])
                              | _TOKEN, _TOKEN | st.sampled_from(["9" * 40, "-1", "²", "1"])),
                    max_size=4).map(lambda kv: "&".join(f"{k}={v}" for k, v in kv))
_HEADERS = st.dictionaries(
    st.sampled_from(["Content-Length", "Transfer-Encoding", "Cookie", "Last-Event-ID",
                     "X-Devloop-Token", "Expect", "Connection", "Host"]) | _TOKEN,
    _VALUE | st.sampled_from(["abc", "-1", "99999999999999999999", "chunked", "100-continue",
                              "close", "[::1]", "localhost:1"]), max_size=5)


@st.composite
def _requests(draw: st.DrawFn, port: int, token: str) -> bytes:
    method = draw(st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]) | _TOKEN)
    path, query = draw(_PATHS), draw(_QUERIES)
    headers = {"Host": draw(st.sampled_from([f"127.0.0.1:{port}", f"localhost:{port}",
                                             "evil.example"]))}
    if draw(st.booleans()):
        headers["X-Devloop-Token"] = token
    headers.update(draw(_HEADERS))
    body = draw(st.binary(max_size=64))
    if draw(st.booleans()):
        headers["Content-Length"] = str(len(body))
    head = f"{method} {path}{'?' + query if query else ''} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()) + "Connection: close\r\n\r\n"
    return head.encode("latin-1") + body


@_SETTINGS
@given(data=st.data())
def test_any_request_gets_a_client_answer(served, data):
    dash, _warnings = served
    request = data.draw(_requests(dash.port, dash.token))
    status = status_of(_first_response(dash, request))
    assert status is None or 200 <= status < 500 or status == 503, (status, request[:300])
    # a closed connection is only for what the server could not read as a request in time
    # (a body shorter than its Content-Length, or a request cut by our own half-close)


@_SETTINGS
@given(raw=st.binary(min_size=1, max_size=400))
def test_any_bytes_get_a_4xx_or_a_closed_connection(served, raw):
    dash, _warnings = served
    status = status_of(_first_response(dash, raw))
    assert status is None or 400 <= status < 500 or status == 505 or status == 200, status
