"""A real dashboard server in this process (the same Dashboard `watch` starts, on a free loopback
port, fed by a real EventBus) and raw-socket helpers to talk to it as any client could."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

from devloop import events as ev
from devloop.redact import Redactor
from devloop.ui.dashboard.server import Dashboard
from tests.kube_standin.fixtures import wait_for as standin_wait_for


@contextlib.contextmanager
def serving(services: tuple[str, ...] = ("api",), **options: Any
            ) -> Iterator[tuple[ev.EventBus, Dashboard, list[ev.Event]]]:
    """(bus, dashboard, warnings published) while the server runs."""
    bus = ev.EventBus()
    warnings: list[ev.Event] = []
    bus.subscribe(lambda e: warnings.append(e) if e.type == ev.WARNING else None)
    dash = Dashboard(bus, Redactor(["s3cr3t-value"]), lambda _m: None, lambda: [],
                     list(services), port=0, **options)
    dash.start()
    try:
        yield bus, dash, warnings
    finally:
        dash.close()


def connect(dash: Dashboard, timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", dash.port), timeout=timeout)


def head(dash: Dashboard, token: bool = True) -> bytes:
    """The Host (and token) headers of a well-behaved local client."""
    text = f"Host: 127.0.0.1:{dash.port}\r\n"
    return (text + (f"X-Devloop-Token: {dash.token}\r\n" if token else "")).encode()


def exchange(dash: Dashboard, data: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes, then read until the server closes (or `timeout` passes)."""
    with connect(dash, timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)  # all sent: the server reads EOF after it
        out = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                out += chunk
        return out


def status_of(response: bytes) -> int | None:
    """The status code of a raw HTTP response (None: the server closed without one)."""
    if not response.startswith(b"HTTP/1."):
        return None
    return int(response.split(b" ", 2)[1])


def get_json(dash: Dashboard, path: str) -> tuple[int | None, Any]:
    response = exchange(dash, f"GET {path} HTTP/1.1\r\n".encode() + head(dash)
                        + b"Connection: close\r\n\r\n")
    body = response.partition(b"\r\n\r\n")[2]
    return status_of(response), json.loads(body) if body else None


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    return standin_wait_for(predicate, timeout, interval=0.02, what=what)


def sse_messages(data: bytes) -> list[dict[str, str]]:
    """The complete SSE messages in `data` (after the HTTP head), each as {field: value}."""
    body = data.partition(b"\r\n\r\n")[2].decode("utf-8", "replace")
    out = []
    for block in body.split("\n\n")[:-1]:
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            if name and not name.startswith(":"):
                fields[name] = value
        if "data" in fields:  # not the `retry:` advice
            out.append(fields)
    return out
