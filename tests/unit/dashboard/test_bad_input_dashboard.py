"""Bad input to the dashboard (issue 17.3): each request a web page, a script or a confused tool
could send gets a one-line 4xx (or, over a cap, a 503), never an exception; the server serves on.
A real server on loopback; the requests are raw bytes, as an `<img>` tag or curl would send."""

from __future__ import annotations

import json

import pytest

from devloop import events as ev
from tests.dashboard.server_harness import exchange, get_json, head, serving, status_of


def _error(response: bytes) -> str:
    return json.loads(response.partition(b"\r\n\r\n")[2])["error"]


@pytest.fixture
def dash():
    with serving(keepalive_s=0.2, socket_timeout=2) as (bus, dash, warnings):
        bus.publish(ev.POD_LOG, "api", pod="api-1", container="api", line="kept")  # logs to read
        yield dash
        assert not warnings  # nothing reached the "a request failed" safety net
        # positive control: after all that, a normal request is answered
        assert get_json(dash, "/api/services")[0] == 200


def _ask(dash, request_line: bytes, extra: bytes = b"", body: bytes = b"") -> bytes:
    return exchange(dash, request_line + b"\r\n" + head(dash) + extra
                    + b"Connection: close\r\n\r\n" + body)


@pytest.mark.parametrize("query, status", [
    ("limit=" + "9" * 40, 200),  # was OverflowError: capped at what the dashboard can hold
    ("limit=5", 200),
    ("limit=abc", 400), ("limit=-1", 400), ("limit=%C2%B2", 400),  # "²".isdigit() is True
    ("service=" + "%FF" * 10, 400), ("service=api&service=x", 200),
    ("&".join(f"k{i}=v" for i in range(100)), 400),
])
def test_log_queries(dash, query, status):
    response = _ask(dash, f"GET /api/logs?{query} HTTP/1.1".encode())
    assert status_of(response) == status, response[:300]
    if status == 400:
        assert "\n" not in _error(response)


@pytest.mark.parametrize("length, status, message", [
    (b"abc", 400, "Content-Length must be one whole number"),  # was ValueError
    (b"-1", 400, "Content-Length must be one whole number"),  # was a read to EOF: a hang
    (b"\xc2\xb2", 400, "Content-Length must be one whole number"),
    (b"99999999999999999999", 413, "request body over 65536 bytes"),
    (b"70000", 413, "request body over 65536 bytes"),
    (b"10", 400, "request body shorter than its Content-Length"),  # 2 bytes, then EOF
])
def test_bad_content_lengths(dash, length, status, message):
    response = exchange(dash, b"POST /api/services/api/pause HTTP/1.1\r\n" + head(dash)
                        + b"Content-Length: " + length + b"\r\n\r\nab")
    assert status_of(response) == status and _error(response) == message


def test_two_content_lengths_and_chunked_bodies_are_refused(dash):
    twice = _ask(dash, b"POST /api/services/api/pause HTTP/1.1",
                 b"Content-Length: 1\r\nContent-Length: 2\r\n", b"ab")
    assert status_of(twice) == 400
    chunked = _ask(dash, b"POST /api/services/api/pause HTTP/1.1",
                   b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n")
    assert status_of(chunked) == 411


@pytest.mark.parametrize("method", [b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE",
                                    b"G\xc3\xa9T", b"BREW"])
def test_other_methods_get_405(dash, method):
    response = _ask(dash, method + b" /api/services HTTP/1.1")
    assert status_of(response) == 405 and b"Allow: GET, HEAD, POST" in response


@pytest.mark.parametrize("host", [b"", b":", b"[", b"[::1", b"[::1]x", b"127.0.0.1:abc",
                                  b"127.0.0.1:1:2", b"\xc3\xa9", b"localhost.evil",
                                  b"999.1.1.1", b"0x7f.1"])
def test_odd_host_headers_are_403(dash, host):
    response = exchange(dash, b"GET /api/services HTTP/1.1\r\nHost: " + host
                        + f"\r\nX-Devloop-Token: {dash.token}\r\nConnection: close\r\n\r\n"
                        .encode())
    assert status_of(response) == 403


@pytest.mark.parametrize("raw", [
    b"\x00\xff\xfe garbage\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 70000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 150 + b"\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nbroken header line\r\n\r\n",
])
def test_garbage_is_a_4xx_or_a_closed_connection(dash, raw):
    status = status_of(exchange(dash, raw))
    assert status is None or 400 <= status < 500 or status == 505, status


def test_a_request_trickled_in_is_cut_off_by_the_socket_timeout(dash):
    """A slow-loris client: it sends half a request line and waits; the server closes it."""
    from tests.dashboard.server_harness import connect

    with connect(dash, timeout=30) as sock:
        sock.sendall(b"GET /api/serv")
        assert sock.recv(100) == b""  # closed after the 2 s socket timeout of this dashboard


def test_cli_flags_that_were_tracebacks_are_one_line(tmp_path):
    import subprocess
    import sys

    from tests.conftest import devloop_env

    for args, message in (
            (["--ui-port", "70000"], "argument --ui-port: '70000' is not a port (0-65535"),
            (["--ui-port", "²"], "argument --ui-port: '²' is not a port"),
            (["--ui-address", "localhost.evil"], "'localhost.evil' is not an IP address")):
        proc = subprocess.run([sys.executable, "-m", "devloop.cli", "watch", *args],
                              capture_output=True, text=True, cwd=tmp_path, timeout=60,
                              env=devloop_env())
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    # `localhost` is accepted and means 127.0.0.1 (it reached the config: there is none here)
    proc = subprocess.run([sys.executable, "-m", "devloop.cli", "watch", "--ui-address",
                           "localhost"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=60, env=devloop_env())
    assert proc.returncode == 2 and "devloop.yaml: file not found" in proc.stdout, proc
