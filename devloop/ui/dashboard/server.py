"""The dashboard's HTTP server: the page, a small JSON API and the event stream as SSE.

Standard library only (http.server): one accept thread that sleeps in accept() (no polling), a
thread per connection (at most MAX_CONNECTIONS), and per open page one thread reading the shared
feed (at most `max_streams`). With no page open the only cost is the event subscriber folding
events into DashboardState.

Safety (README, "Dashboard": threat model): every request needs the per-run token, from the
address devloop prints (`/?token=...`, exchanged for a SameSite=Strict HttpOnly cookie) or the
`X-Devloop-Token` header, so another local user or web site can neither read the logs nor act;
POSTs need the header itself; every request's Host must name the bound address (or localhost), so
a DNS-rebinding page is refused too. Whatever a client sends, the answer is a 2xx/3xx/4xx (503
over the caps), each in one line, never an exception; every socket read and write has a timeout.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import re
import secrets
import socket
import threading
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devloop import events as ev
from devloop.redact import Redactor
from devloop.ui.dashboard.feed import Feed
from devloop.ui.dashboard.state import LOG_LINES_PER_POD, PODS_PER_SERVICE, DashboardState, encode
from devloop.ui.dashboard.statuscache import StatusCache

TOKEN_HEADER = "X-Devloop-Token"
KEEPALIVE_S = 15.0  # an SSE comment this often, so a closed tab is noticed
SOCKET_TIMEOUT_S = 10.0  # every read and write: a request trickled in, a page that stops reading
MAX_STREAMS = 16  # open event streams (pages); one more gets a 503 saying so
MAX_CONNECTIONS = 64  # open connections of any kind; beyond, a 503 and close
MAX_BODY = 64 * 1024  # a POST body (the actions need none)
MAX_LOG_LIMIT = LOG_LINES_PER_POD * PODS_PER_SERVICE  # `limit` above this cannot add a line
_METHODS = ("GET", "HEAD", "POST")
_ACTION = re.compile(r"/api/services/([A-Za-z0-9_.-]{1,253})/(trigger|pause|resume)")
_SERVICE = re.compile(r"[A-Za-z0-9_.-]{1,253}")


class BadRequest(Exception):
    """A client's mistake: answered with `status` and this one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class Dashboard:
    """Subscribe to `bus`, serve on address:port; `post` hands actions to the engine."""

    def __init__(self, bus: ev.EventBus, redactor: Redactor, post: Callable[[object], None],
                 status: Callable[[], list[dict[str, Any]]], services: list[str],
                 address: str = "127.0.0.1", port: int = 10350,
                 only: list[str] | None = None, max_streams: int = MAX_STREAMS,
                 socket_timeout: float = SOCKET_TIMEOUT_S, feed: Feed | None = None,
                 keepalive_s: float = KEEPALIVE_S) -> None:
        self.bus = bus
        self.redactor = redactor
        self.post = post
        self.token = secrets.token_urlsafe(32)
        self.state = DashboardState(services, only, feed or Feed(run=secrets.token_hex(4)))
        self.status = StatusCache(status, redactor.value)
        self.address = "127.0.0.1" if address == "localhost" else address
        self.port = port
        self.max_streams = max_streams
        self.socket_timeout = socket_timeout
        self.keepalive_s = keepalive_s
        self.streams_open = 0  # figures for tests and the bench
        self.streams_dropped = 0
        self._streams = threading.BoundedSemaphore(max_streams)
        self._server: _Server | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._clients_lock = threading.Lock()
        self._closed = threading.Event()
        self.page = (resources.files("devloop.ui.dashboard").joinpath("page.html")
                      .read_text(encoding="utf-8").replace("{{TOKEN}}", self.token))

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"

    @property
    def open_url(self) -> str:
        """The address a person opens: it carries the token once (then a cookie does)."""
        return f"{self.url}/?token={self.token}"

    @property
    def cookie_name(self) -> str:
        return f"devloop-{self.port}"  # cookies ignore ports: one per dashboard on this host

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
        self.state.feed.wake()
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

    def report(self, message: str) -> None:
        """A fault in the dashboard itself: one warning line; devloop and the page go on."""
        self.bus.publish(ev.WARNING, None, message=f"dashboard: {message}")

    # --- request checks --------------------------------------------------------------------------

    def host_allowed(self, host: str | None) -> bool:
        """DNS-rebinding guard: the Host header names the bound address or loopback."""
        if not host or not host.isascii():
            return False
        if host.startswith("["):
            name, bracket, rest = host[1:].partition("]")
            if not bracket:
                return False
            port = rest[1:] if rest.startswith(":") else ("" if not rest else None)
        else:
            name, _, port = host.partition(":") if host.count(":") <= 1 else (host, "", "")
        if port is None or (port and port != str(self.port)):
            return False
        name = name.lower()
        bound = _ip(self.address)
        wildcard = self.address in ("0.0.0.0", "::")
        if name == "localhost":
            return wildcard or is_loopback(self.address)
        ip = _ip(name)
        if ip is None:
            return False
        return wildcard or ip == bound or (ip.is_loopback and is_loopback(self.address))

    def token_ok(self, given: str | None) -> bool:
        return (given is not None and given.isascii()
                and hmac.compare_digest(given.encode(), self.token.encode()))

    def authorized(self, handler: BaseHTTPRequestHandler) -> bool:
        """The token, from the header (tools, the page's POSTs) or the page's cookie."""
        if self.token_ok(handler.headers.get(TOKEN_HEADER)):
            return True
        raw = handler.headers.get("Cookie")
        if not raw:
            return False
        cookie: SimpleCookie = SimpleCookie()
        with contextlib.suppress(CookieError):
            cookie.load(raw)
        morsel = cookie.get(self.cookie_name)
        return morsel is not None and self.token_ok(morsel.value)

    def stream(self, handler: _Handler, cards: bool, last_id: str | None) -> None:
        """Serve one SSE connection until the page goes away, falls behind or devloop stops.

        The page reads the shared feed at its own position: nothing is queued for it, a write
        that the page does not take within `write_timeout` drops it, and a page that fell
        further behind than the feed keeps is told (`event: dropped`) and, with cards, given
        a fresh snapshot; a page that reconnects with an id the feed no longer holds is told
        too. A page over the `max_streams` cap gets a 503 saying so."""
        if not self._streams.acquire(blocking=False):
            handler.send_error_json(503, f"too many open dashboard streams ({self.max_streams});"
                                         " close another dashboard tab", retry_after=5)
            return
        feed = self.state.feed
        feed.open()
        fell_behind = counted = False
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
            handler.send_header("Cache-Control", "no-store")
            handler.send_header("X-Accel-Buffering", "no")
            handler.end_headers()
            handler.wfile.write(b"retry: 1000\n\n")
            cursor = feed.position(last_id) if last_id is not None else None
            if last_id is not None and cursor is None:  # not this run's, or long gone
                handler.wfile.write(_dropped(None))
            if cursor is None:
                cursor = self._start(handler, cards)
            with self._clients_lock:  # counted once following: every later event reaches it
                self.streams_open += 1
                counted = True
            while not self._closed.is_set():
                messages, missed = feed.read(cursor, self.keepalive_s)
                if missed:
                    fell_behind = True
                    handler.wfile.write(_dropped(missed))
                    cursor = self._start(handler, cards) if cards else cursor + missed
                    continue
                if not messages:
                    handler.wfile.write(b": keep-alive\n\n")
                    continue
                cursor = messages[-1].seq
                handler.wfile.write(b"".join(m.frame for m in messages
                                             if cards or m.kind == "event"))
        except OSError as exc:  # closed, or a write the page did not take in time: dropped
            fell_behind = fell_behind or isinstance(exc, TimeoutError)
        finally:
            feed.close()
            with self._clients_lock:
                self.streams_open -= counted
                self.streams_dropped += fell_behind
            self._streams.release()
        handler.close_connection = True

    def _start(self, handler: _Handler, cards: bool) -> int:
        """Send the snapshot (cards streams) and return the feed position it stands for."""
        if not cards:
            return self.state.feed.seq
        seq, snapshot = self.state.snapshot()
        handler.wfile.write(self.state.feed.frame(seq, "snapshot", encode(snapshot)))
        return seq


def _dropped(missed: int | None) -> bytes:
    """`event: dropped`: the page missed events (how many, when known). No `id:`, so the page's
    last id stays that of the last message it really got."""
    what = f"{missed} events" if missed else "events"
    return b"event: dropped\ndata: " + encode({
        "missed": missed, "message": f"this page fell behind devloop's event stream and missed"
                                     f" {what}; the current state follows"}) + b"\n\n"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self._open = threading.BoundedSemaphore(MAX_CONNECTIONS)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread per connection, up to MAX_CONNECTIONS; beyond, a 503 at once and close."""
        if not self._open.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.settimeout(1)
                request.sendall(_plain_503(f"too many connections to the dashboard"
                                           f" ({MAX_CONNECTIONS}); try again"))
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._open.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._open.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Never a traceback on stderr: a vanished client is normal; anything else is a bug
        worth one warning line."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) or "closed file" in str(exc):
            return  # the connection broke or timed out mid-request
        self.dashboard.report(f"a request failed: {type(exc).__name__}: {exc}"[:300])


def _plain_503(message: str) -> bytes:
    body = encode({"error": message})
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Retry-After: 5\r\nConnection: close\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # headers and body (and each streamed event) are separate writes: with Nagle's algorithm
    # on, a keep-alive request's body waited for the browser's delayed ACK (~40 ms)
    disable_nagle_algorithm = True
    server_version = "devloop-dashboard"
    sys_version = ""

    def setup(self) -> None:
        self.timeout = self.server.dashboard.socket_timeout  # reads and writes alike
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not devloop events: keep them off the console."""

    @property
    def dash(self) -> Dashboard:
        return self.server.dashboard

    # --- answers ---------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(doc, ensure_ascii=False, default=str).encode(),
                   "application/json; charset=utf-8", headers)

    def send_error_json(self, status: int, message: str, retry_after: int | None = None) -> None:
        self._json(status, {"error": message},
                   {"Retry-After": str(retry_after)} if retry_after else None)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None
                   ) -> None:
        """http.server's own refusals (bad request line, headers too long): JSON, one line,
        and the connection closed (what follows cannot be trusted to be a request)."""
        self.close_connection = True
        if code == 501:  # an unknown method: the client's mistake
            code, message = 405, f"method not allowed (use {', '.join(_METHODS)})"
        if self.command is None or getattr(self, "request_version", "") == "HTTP/0.9":
            self.command = "GET"  # the request line was not understood: answer with a body
            self.request_version = "HTTP/1.1"
        self._json(code, {"error": " ".join((message or self.responses.get(code, ("",))[0])
                                            .split())},
                   {"Allow": ", ".join(_METHODS)} if code == 405 else None)

    # --- requests --------------------------------------------------------------------------------

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.command not in _METHODS:
            self.send_error(501)
            return False
        return True

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except BadRequest as exc:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.send_error_json(exc.status, str(exc))

    def _guard(self) -> bool:
        """Host first (a rebinding page learns nothing, not even that a token is needed)."""
        if not self.dash.host_allowed(self.headers.get("Host")):
            self.send_error_json(403, "Host header does not name the dashboard's address")
            return False
        if self.headers.get("Transfer-Encoding"):
            raise BadRequest(411, "Transfer-Encoding is not accepted; send a Content-Length")
        return True

    def _query(self) -> tuple[str, dict[str, list[str]]]:
        url = urlsplit(self.path)
        try:
            return url.path, parse_qs(url.query, max_num_fields=20)
        except ValueError:
            raise BadRequest(400, "too many query parameters") from None

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._guard():
            return
        self._drain_body()
        path, query = self._query()
        if path in ("/", "/index.html"):
            self._page(query)
            return
        if not self.dash.authorized(self):
            self.send_error_json(401, f"missing or wrong token: open the dashboard at the "
                                      f"address devloop printed, or send {TOKEN_HEADER}")
            return
        if path == "/api/status":
            self._json(200, self.dash.status.get())
        elif path == "/api/services":
            self._json(200, {"services": self.dash.state.cards(),
                             "notices": self.dash.state.notices()})
        elif path == "/api/logs":
            service = _one(query, "service")
            if service is not None and not _SERVICE.fullmatch(service):
                raise BadRequest(400, "service must be a service name")
            limit = _limit(_one(query, "limit"))
            self._json(200, {"lines": self.dash.state.logs(service, limit)})
        elif path == "/api/events":
            if self.command == "HEAD":
                self._send(200, b"", "text/event-stream; charset=utf-8")
                return
            self.dash.stream(self, cards=_one(query, "cards") == "1",
                             last_id=self.headers.get("Last-Event-ID"))
        else:
            self.send_error_json(404, f"no such page: {path[:200]}")

    def _page(self, query: dict[str, list[str]]) -> None:
        """The page for a holder of the token; `/?token=T` sets the cookie and drops the token
        from the address bar (and the history) with a redirect."""
        given = _one(query, "token")
        if given is not None and self.dash.token_ok(given):
            self._send(303, b"", "text/plain", {
                "Location": "/", "Set-Cookie": f"{self.dash.cookie_name}={self.dash.token}; "
                                                "Path=/; HttpOnly; SameSite=Strict"})
        elif self.dash.authorized(self):
            self._send(200, self.dash.page.encode(), "text/html; charset=utf-8")
        else:
            self._send(401, _LOCKED_PAGE, "text/html; charset=utf-8")

    def do_POST(self) -> None:
        if not self._guard():
            return
        self._drain_body()
        if not self.dash.token_ok(self.headers.get(TOKEN_HEADER)):
            self.send_error_json(403, f"missing or wrong {TOKEN_HEADER} header (the token is "
                                      "in the dashboard page)")
            return
        path, _query = self._query()
        match = _ACTION.fullmatch(path)
        if match is None:
            self.send_error_json(404, f"no such action: {path[:200]}")
            return
        name, action = match.groups()
        if not self.dash.state.has_service(name):
            self.send_error_json(404, f"no such service: {name}")
            return
        from devloop.loop.engine import SetPaused, TriggerReload

        self.dash.post(TriggerReload(name) if action == "trigger"
                       else SetPaused(name, action == "pause"))
        self._json(202, {"ok": True, "service": name, "action": action})

    def _drain_body(self) -> None:
        """Read (and ignore) a body up to MAX_BODY, so the next request on the connection
        starts where it should; a bad or too long Content-Length ends the connection."""
        raw = self.headers.get_all("Content-Length") or []
        if not raw:
            return
        if len(set(raw)) > 1 or not raw[0].strip().isascii() or not raw[0].strip().isdigit():
            raise BadRequest(400, "Content-Length must be one whole number")
        length = int(raw[0].strip()) if len(raw[0].strip()) < 10 else MAX_BODY + 1
        if length > MAX_BODY:
            raise BadRequest(413, f"request body over {MAX_BODY} bytes")
        if length and len(self.rfile.read(length)) < length:
            raise BadRequest(400, "request body shorter than its Content-Length")


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _limit(raw: str | None) -> int:
    """`limit`: a whole number of lines, capped at what the dashboard can hold."""
    if raw is None:
        return 2000
    if not raw.isascii() or not raw.isdigit():
        raise BadRequest(400, "limit must be a whole number of lines")
    return min(int(raw[:12]), MAX_LOG_LIMIT) if len(raw) <= 12 else MAX_LOG_LIMIT


_LOCKED_PAGE = b"""<!doctype html><meta charset="utf-8"><title>devloop</title>
<p style="font:16px system-ui;margin:3em">This dashboard needs its token: open the address
devloop printed when it started (the <code>dashboard:</code> line, ending in
<code>/?token=...</code>).</p>
"""
