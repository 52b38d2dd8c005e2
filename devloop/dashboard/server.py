"""The dashboard's HTTP server: the page, a small JSON API and the event stream as SSE.

Standard library only (http.server): one accept thread that sleeps in accept() (no polling), a
thread per request, and per open page one thread blocked on its queue. With no page open the
only cost is the event subscriber folding events into DashboardState.

Safety: POSTs need the per-run token the page carries (`X-Devloop-Token`), so another site
cannot make the browser trigger reloads; every request's Host must name the bound address
(or localhost), so a DNS-rebinding page cannot read the API either.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import queue
import re
import secrets
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devloop import events as ev
from devloop.dashboard.state import DashboardState
from devloop.dashboard.statuscache import StatusCache
from devloop.redact import Redactor

TOKEN_HEADER = "X-Devloop-Token"
KEEPALIVE_S = 15.0  # an SSE comment this often, so a closed tab is noticed
CLIENT_QUEUE = 20_000  # messages a slow page may lag behind before it is dropped (it reconnects)
_ACTION = re.compile(r"^/api/services/([A-Za-z0-9_.-]+)/(trigger|pause|resume)$")
_CLOSE = object()


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


class Dashboard:
    """Subscribe to `bus`, serve on address:port; `post` hands actions to the engine."""

    def __init__(self, bus: ev.EventBus, redactor: Redactor, post: Callable[[object], None],
                 status: Callable[[], list[dict[str, Any]]], services: list[str],
                 address: str = "127.0.0.1", port: int = 10350,
                 only: list[str] | None = None) -> None:
        self.bus = bus
        self.redactor = redactor
        self.post = post
        self.state = DashboardState(services, only)
        self.status = StatusCache(status, redactor.value)
        self.token = secrets.token_urlsafe(32)
        self.address = address
        self.port = port
        self._server: _Server | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._clients: set[_Client] = set()
        self._clients_lock = threading.Lock()
        self._closed = threading.Event()
        self.page = (resources.files("devloop.dashboard").joinpath("page.html")
                      .read_text(encoding="utf-8").replace("{{TOKEN}}", self.token))

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind and serve; OSError (e.g. the port is in use) propagates to the caller."""
        server = _Server((self.address, self.port), _Handler, self)
        self.port = server.server_address[1]
        self._server = server
        self._unsubscribe = self.bus.subscribe(self)
        threading.Thread(target=self._accept, name="devloop-dashboard", daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
        with self._clients_lock:
            for client in self._clients:
                client.close()
        if self._server is not None:
            self._wake()
            self._server.server_close()

    def __call__(self, event: ev.Event) -> None:
        """Event-bus subscriber: fold the redacted event into the state (and open pages)."""
        safe = ev.Event(event.type, event.service, self.redactor.value(event.data), event.ts)
        self.state.apply(safe, safe.to_json())

    # --- accept loop -----------------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._server is not None
        while not self._closed.is_set():
            with contextlib.suppress(OSError):
                self._server.handle_request()  # blocks in select/accept: no wake-ups

    def _wake(self) -> None:
        """Unblock the accept thread with a connection of our own (it then sees _closed)."""
        with contextlib.suppress(OSError), socket.create_connection(
                (self.address if self.address not in ("0.0.0.0", "::") else "127.0.0.1",
                 self.port), timeout=1):
            pass

    # --- request helpers -------------------------------------------------------------------------

    def host_allowed(self, host: str | None) -> bool:
        """DNS-rebinding guard: the Host header names the bound address or loopback."""
        if not host:
            return False
        name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
        if not name:
            name, port = host, ""
        if port and port != str(self.port):
            return False
        name = name.strip("[]").lower()
        wildcard = self.address in ("0.0.0.0", "::")
        if name == "localhost":
            return wildcard or is_loopback(self.address)
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            return False
        return wildcard or ip == ipaddress.ip_address(self.address) or (
            ip.is_loopback and is_loopback(self.address))

    def token_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def stream(self, handler: BaseHTTPRequestHandler, cards: bool) -> None:
        """Serve one SSE connection until the page goes away or devloop stops."""
        client = _Client(cards)
        with self._clients_lock:
            if self._closed.is_set():
                return
            self._clients.add(client)
        stop = self.state.listen(client.offer)
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
            handler.send_header("Cache-Control", "no-store")
            handler.send_header("X-Accel-Buffering", "no")
            handler.end_headers()
            handler.wfile.write(b"retry: 1000\n\n")
            while not client.dropped:
                try:
                    item = client.queue.get(timeout=KEEPALIVE_S)
                except queue.Empty:
                    item = b": keep-alive\n\n"
                if item is _CLOSE:
                    break
                handler.wfile.write(item)
                handler.wfile.flush()
        except OSError:
            pass  # the page was closed
        finally:
            stop()
            with self._clients_lock:
                self._clients.discard(client)
        handler.close_connection = True


class _Client:
    """One open page: a bounded queue of encoded SSE messages."""

    def __init__(self, cards: bool) -> None:
        self.cards = cards
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=CLIENT_QUEUE)
        self.dropped = False

    def offer(self, kind: str, data: Any) -> None:
        """Called under the state lock, in event order: encode and enqueue, never block."""
        if kind != "event" and not self.cards:
            return
        body = json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":"))
        head = "" if kind == "event" else f"event: {kind}\n"
        try:
            self.queue.put_nowait(f"{head}data: {body}\n\n".encode())
        except queue.Full:
            self.dropped = True  # too far behind: the page reconnects and gets a snapshot

    def close(self) -> None:
        self.dropped = True
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(_CLOSE)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "devloop-dashboard"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not devloop events: keep them off the console."""

    @property
    def dash(self) -> Dashboard:
        return self.server.dashboard

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc: Any) -> None:
        body = json.dumps(doc, ensure_ascii=False, default=str).encode()
        self._send(status, body, "application/json; charset=utf-8")

    def _guard(self) -> bool:
        if self.dash.host_allowed(self.headers.get("Host")):
            return True
        self._json(403, {"error": "Host header does not name the dashboard's address"})
        return False

    def do_GET(self) -> None:
        if not self._guard():
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path in ("/", "/index.html"):
            self._send(200, self.dash.page.encode(), "text/html; charset=utf-8")
        elif url.path == "/api/status":
            self._json(200, self.dash.status.get())
        elif url.path == "/api/services":
            self._json(200, {"services": self.dash.state.cards()})
        elif url.path == "/api/logs":
            service = query.get("service", [None])[0]
            limit = int(query["limit"][0]) if query.get("limit", [""])[0].isdigit() else 2000
            self._json(200, {"lines": self.dash.state.logs(service, limit)})
        elif url.path == "/api/events":
            self.dash.stream(self, cards=query.get("cards", ["0"])[0] == "1")
        else:
            self._json(404, {"error": f"no such page: {url.path}"})

    def do_POST(self) -> None:
        if not self._guard():
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 65536))
        if not self.dash.token_ok(self.headers.get(TOKEN_HEADER)):
            self._json(403, {"error": f"missing or wrong {TOKEN_HEADER} header (the token is "
                                      "in the dashboard page)"})
            return
        match = _ACTION.match(urlsplit(self.path).path)
        if match is None:
            self._json(404, {"error": f"no such action: {self.path}"})
            return
        name, action = match.groups()
        if not self.dash.state.has_service(name):
            self._json(404, {"error": f"no such service: {name}"})
            return
        from devloop.engine import SetPaused, TriggerReload

        self.dash.post(TriggerReload(name) if action == "trigger"
                       else SetPaused(name, action == "pause"))
        self._json(202, {"ok": True, "service": name, "action": action})
