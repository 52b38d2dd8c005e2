"""HTTP transport: authentication, URL routing, JSON bodies, chunked watch and log streams."""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import yaml

from . import errors, negotiation, protobuf, reviews, tables
from .api import APPLY, Api, Query
from .faults import Faults
from .managed_fields import manager_from_user_agent
from .resources import Resource, ResourceTable
from .schema import KUBE_VERSION
from .store import Event, Obj

log = logging.getLogger("kube_standin.http")

MAX_WATCH_SECONDS = 1800
BOOKMARK_SECONDS = 15.0


@dataclass
class LogRequest:
    """Query parameters of `GET pods/{name}/log`."""

    container: str | None = None
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    since_seconds: int | None = None
    since_time: str | None = None
    tail_lines: int | None = None
    limit_bytes: int | None = None


class LogSource(Protocol):
    def logs(self, namespace: str, pod: str, request: LogRequest) -> bytes | Iterator[bytes]:
        """Whole log (bytes) or a stream of chunks when following; raises ApiError."""


class NoLogs:
    """Log source used when no pod runner is active: every container is still waiting."""

    def __init__(self, api: Api) -> None:
        self._api = api

    def logs(self, namespace: str, pod: str, request: LogRequest) -> bytes:
        obj = self._api.get(self._api.table.by_plural("pods"), namespace, pod)
        names = [c["name"] for c in obj["spec"]["containers"]]
        name = request.container or names[0]
        raise errors.bad_request(
            f'container "{name}" in pod "{pod}" is waiting to start: ContainerCreating'
        )


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return (query.get(name) or ["false"])[0].lower() in ("true", "1")


def _delete_options(body: Any, query: dict[str, list[str]]) -> dict[str, Any] | None:
    """DeleteOptions from the body and the query string (the Python client sends
    propagationPolicy and gracePeriodSeconds as query parameters); the body wins."""
    options = dict(body) if isinstance(body, dict) else {}
    if "propagationPolicy" in query:
        options.setdefault("propagationPolicy", query["propagationPolicy"][0])
    if "orphanDependents" in query:
        options.setdefault("orphanDependents", _flag(query, "orphanDependents"))
    if "gracePeriodSeconds" in query:
        options.setdefault("gracePeriodSeconds", _int(query, "gracePeriodSeconds"))
    return options or body


def _int(query: dict[str, list[str]], name: str) -> int | None:
    value = (query.get(name) or [None])[0]
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise errors.bad_request(f"invalid value for {name}: {value!r}") from exc


class Router:
    """Maps one HTTP request onto the API verbs."""

    def __init__(self, api: Api, table: ResourceTable, token: str, logs: LogSource) -> None:
        self.api = api
        self.table = table
        self.token = token
        self.logs = logs
        self.stopping = threading.Event()
        self.server_address = ""
        self.remote: Any = None  # RemoteCommands when pods run
        self.faults = Faults()  # replaced by StandIn's own, which outlives restarts

    # -- entry point ---------------------------------------------------------------------------

    def handle(self, req: Handler) -> None:
        started = time.monotonic()
        url = urlsplit(req.path)
        query = parse_qs(url.query, keep_blank_values=True)
        status = 500
        try:
            if url.path.rstrip("/") in ("/healthz", "/livez", "/readyz"):
                status = req.send_text(200, "ok")
                return
            if req.headers.get("Authorization", "") != f"Bearer {self.token}":
                raise errors.unauthorized()
            faulted = self.faults.answer(req, url.path)
            if faulted is not None:
                status = faulted
                return
            status = self._route(req, url.path, query)
        except errors.ApiError as exc:
            status = req.send_json(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            status = 499  # the client went away mid-response
        except Exception as exc:
            log.exception("internal error on %s %s", req.command, url.path)
            status = req.send_json(500, errors.ApiError(500, "InternalError", str(exc)).status())
        finally:
            log.debug("%s %s -> %s (%.0f ms)", req.command, req.path, status,
                      (time.monotonic() - started) * 1000)

    def _route(self, req: Handler, path: str, query: dict[str, list[str]]) -> int:
        segs = [s for s in path.split("/") if s]
        if segs == ["version"]:
            return req.send_json(200, _version())
        if segs == ["api"]:
            return req.send_json(200, self.table.api_versions(self.server_address))
        if segs == ["apis"]:
            return req.send_json(200, self.table.api_group_list())
        if segs[:2] == ["openapi", "v3"]:
            if len(segs) == 2:
                return req.send_json(200, self.table.openapi_root())
            rest = segs[2:]
            group, version = ("", rest[1]) if rest[0] == "api" else (rest[1], rest[2])
            doc = self.table.openapi_group_version(group, version)
            if doc is not None:
                return req.send_json(200, doc)
        if not segs or segs[0] not in ("api", "apis"):
            raise errors.ApiError(404, "NotFound", "the server could not find the requested "
                                  "resource")
        if segs[0] == "api":
            if len(segs) < 2:
                raise errors.ApiError(404, "NotFound", "not found")
            group, version, rest = "", segs[1], segs[2:]
        else:
            if len(segs) == 2:
                doc = self.table.api_group(segs[1])
                if doc is None:
                    raise errors.ApiError(404, "NotFound", "the server could not find the "
                                          "requested resource")
                return req.send_json(200, doc)
            group, version, rest = segs[1], segs[2], segs[3:]
        if not rest:
            doc = self.table.resource_list(group, version)
            if doc is None:
                raise errors.ApiError(404, "NotFound", "the server could not find the requested "
                                      "resource")
            return req.send_json(200, doc)
        watch = _flag(query, "watch")
        if rest[0] == "watch":
            watch, rest = True, rest[1:]
        namespace: str | None = None
        if (
            len(rest) >= 3
            and rest[0] == "namespaces"
            and (res_ns := self.table.lookup(group, version, rest[2])) is not None
            and res_ns.namespaced
        ):
            namespace, rest = rest[1], rest[2:]
        res = self.table.lookup(group, version, rest[0])
        if res is None or len(rest) > 3:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested "
                                  "resource")
        if res.namespaced and namespace is None and len(rest) > 1:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested "
                                  "resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and sub not in res.subresources:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested "
                                  "resource")
        ns = namespace or ""
        dry_run = "All" in (query.get("dryRun") or [])
        # An apply names its manager; other writes default to the User-Agent's first word.
        named = (query.get("fieldManager") or [""])[0]
        manager = named or manager_from_user_agent(req.headers.get("User-Agent"))
        verb = req.command
        if sub is None and _verb(verb, name, watch) not in res.verbs:
            raise errors.ApiError(405, "MethodNotAllowed", "the server does not allow this "
                                  "method on the requested resource")
        if not res.stored:
            if res.namespaced and namespace is None:
                raise errors.method_not_allowed("create", res.plural)
            if res.kind == "Binding":
                return req.send_json(201, self.api.bind(ns, req.body()))
            return req.send_json(201, reviews.answer(res, ns, req.body(), self.api.schemas))
        if name is None:
            q = Query(
                (query.get("labelSelector") or [None])[0],
                (query.get("fieldSelector") or [None])[0],
            )
            if verb == "GET":
                if watch:
                    return self._watch(req, res, namespace, q, query)
                listing = self.api.list(res, namespace, q)
                if tables.wants_table(req.headers.get("Accept", "")):
                    listing = tables.table(res.kind, listing["items"],
                                           listing["metadata"]["resourceVersion"])
                return req.send_json(200, listing)
            if verb == "POST":
                if res.namespaced and namespace is None:
                    raise errors.method_not_allowed("create", res.plural)
                return req.send_json(201, self.api.create(res, ns, req.body(), dry_run,
                                                          manager))
            if verb == "DELETE":
                return req.send_json(
                    200, self.api.delete_collection(res, namespace, q,
                                                    _delete_options(req.body_or_none(), query)))
            raise errors.method_not_allowed(verb, res.plural)
        if sub in ("exec", "portforward"):
            if self.remote is None:
                raise errors.bad_request(f"{sub} needs the pod runner (run_pods=True)")
            if verb not in ("GET", "POST"):
                raise errors.method_not_allowed(verb, f"pods/{sub}")
            handler = self.remote.exec if sub == "exec" else self.remote.portforward
            return handler(req, ns, name, query)
        if sub == "log":
            if verb != "GET":
                raise errors.method_not_allowed(verb, "pods/log")
            return self._logs(req, ns, name, query)
        if sub == "scale":
            return self._scale(req, res, ns, name)
        if verb == "GET":
            if watch:
                field = f"metadata.name={name}"
                return self._watch(req, res, namespace, Query(None, field), query)
            obj = self.api.get(res, ns, name)
            if tables.wants_table(req.headers.get("Accept", "")):
                obj = tables.table(res.kind, [obj], obj["metadata"]["resourceVersion"])
            return req.send_json(200, obj)
        if verb == "PUT":
            return req.send_json(200, self.api.replace(res, ns, name, req.body(), sub, dry_run,
                                                       manager))
        if verb == "PATCH":
            ctype = req.headers.get("Content-Type", "")
            return req.send_json(200, self.api.patch(
                res, ns, name, ctype, req.body(), sub, dry_run,
                named if APPLY in ctype else manager, _flag(query, "force")))
        if verb == "DELETE":
            return req.send_json(200, self.api.delete(res, ns, name,
                                                      _delete_options(req.body_or_none(), query),
                                                      dry_run))
        raise errors.method_not_allowed(verb, res.plural)

    # -- scale ---------------------------------------------------------------------------------

    def _scale(self, req: Handler, res: Resource, ns: str, name: str) -> int:
        if req.command == "GET":
            return req.send_json(200, self.api.get_scale(res, ns, name))
        body = req.body()
        if req.command == "PUT":
            rv = (body.get("metadata") or {}).get("resourceVersion")
            return req.send_json(200, self.api.update_scale(
                res, ns, name, (body.get("spec") or {}).get("replicas"), rv))
        if req.command == "PATCH":
            from .patching import json_merge_patch, json_patch

            current = self.api.get_scale(res, ns, name)
            ctype = req.headers.get("Content-Type", "")
            patched = json_patch(current, body) if "json-patch" in ctype else \
                json_merge_patch(current, body)
            return req.send_json(200, self.api.update_scale(
                res, ns, name, (patched.get("spec") or {}).get("replicas")))
        raise errors.method_not_allowed(req.command, f"{res.plural}/scale")

    # -- watch ---------------------------------------------------------------------------------

    def _watch(
        self,
        req: Handler,
        res: Resource,
        namespace: str | None,
        q: Query,
        query: dict[str, list[str]],
    ) -> int:
        match = q.matcher()
        timeout = _int(query, "timeoutSeconds")
        deadline = time.monotonic() + min(timeout or MAX_WATCH_SECONDS, MAX_WATCH_SECONDS)
        rv_text = (query.get("resourceVersion") or [""])[0]
        store = self.api.store
        initial: list[Obj] = []
        # WatchList (client-go reflectors, helm 4's status waiter): the current state as ADDED
        # events, then a bookmark marking the end of the initial events.
        initial_events = _flag(query, "sendInitialEvents")
        bookmarks = _flag(query, "allowWatchBookmarks")
        if initial_events:
            rv_text = ""
        if rv_text in ("", "0"):
            objs, cursor = store.list_raw(res.plural, namespace if res.namespaced else None)
            initial = [o for o in objs if match(o)]
        else:
            try:
                cursor = int(rv_text)
            except ValueError as exc:
                raise errors.bad_request(f"invalid resourceVersion {rv_text!r}") from exc
            # Validate eagerly so an expired version is reported in the stream, as the API does.
        req.start_stream(200, "application/json")
        try:
            for obj in initial:
                req.write_chunk(_event_line("ADDED", obj))
            if initial_events:
                req.write_chunk(_bookmark(res, cursor, initial_end=True))
            last_write = time.monotonic()
            if rv_text not in ("", "0"):
                try:
                    store.events_after(cursor)
                except errors.ApiError as exc:
                    req.write_chunk(_event_line("ERROR", exc.status()))
                    return 200
            while not self.stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or req.client_gone():
                    break
                try:
                    events = store.wait_for_events(cursor, min(remaining, 1.0))
                except errors.ApiError as exc:
                    req.write_chunk(_event_line("ERROR", exc.status()))
                    break
                for event in events:
                    cursor = event.rv
                    line = _translate(event, res, namespace, match)
                    if line is not None:
                        req.write_chunk(line)
                        last_write = time.monotonic()
                if bookmarks and time.monotonic() - last_write > BOOKMARK_SECONDS:
                    req.write_chunk(_bookmark(res, store.resource_version))
                    last_write = time.monotonic()
        finally:
            req.end_stream()
        return 200

    # -- logs ----------------------------------------------------------------------------------

    def _logs(self, req: Handler, ns: str, name: str, query: dict[str, list[str]]) -> int:
        negotiation.check_log_accept(req.headers.get("Accept", ""))
        request = LogRequest(
            container=(query.get("container") or [None])[0] or None,
            follow=_flag(query, "follow"),
            previous=_flag(query, "previous"),
            timestamps=_flag(query, "timestamps"),
            since_seconds=_int(query, "sinceSeconds"),
            since_time=(query.get("sinceTime") or [None])[0] or None,
            tail_lines=_int(query, "tailLines"),
            limit_bytes=_int(query, "limitBytes"),
        )
        result = self.logs.logs(ns, name, request)
        if isinstance(result, bytes):
            return req.send_bytes(200, "text/plain", result)
        req.start_stream(200, "text/plain")
        try:
            for chunk in result:
                if self.stopping.is_set():
                    break
                if chunk:
                    req.write_chunk(chunk)
        finally:
            close = getattr(result, "close", None)
            if close:
                close()
            req.end_stream()
        return 200


def _verb(method: str, name: str | None, watch: bool) -> str:
    """The Kubernetes verb of a request on a collection (no name) or an object."""
    if method == "GET":
        return "watch" if watch else ("get" if name else "list")
    if name is None:
        return {"POST": "create", "DELETE": "deletecollection"}.get(method, method.lower())
    return {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, method.lower())


def _version() -> dict[str, Any]:
    major, minor = KUBE_VERSION.split(".")
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{KUBE_VERSION}.0",
        "gitCommit": "standin",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def _bookmark(res: Resource, rv: int, initial_end: bool = False) -> bytes:
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return _event_line("BOOKMARK", {"kind": res.kind, "apiVersion": res.api_version,
                                    "metadata": meta})


def _event_line(kind: str, obj: Obj) -> bytes:
    return (json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n").encode()


def _translate(
    event: Event, res: Resource, namespace: str | None, match: Any
) -> bytes | None:
    """The watch event a client filtered by namespace/selectors sees, or None."""
    if event.plural != res.plural:
        return None
    if namespace is not None and event.obj["metadata"].get("namespace") != namespace:
        return None
    now_match = match(event.obj)
    was_match = event.old is not None and match(event.old)
    if event.type == "ADDED":
        return _event_line("ADDED", event.obj) if now_match else None
    if event.type == "DELETED":
        return _event_line("DELETED", event.obj) if (now_match or was_match) else None
    if now_match and was_match:
        return _event_line("MODIFIED", event.obj)
    if now_match:
        return _event_line("ADDED", event.obj)
    if was_match:
        return _event_line("DELETED", event.obj)
    return None


class Handler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keep-alive, chunked responses for streams."""

    protocol_version = "HTTP/1.1"
    # Go's net package sets TCP_NODELAY on every connection, so kube-apiserver answers without
    # Nagle's delay; without it a response written as headers then body waited for the client's
    # delayed ACK (~40 ms per request).
    disable_nagle_algorithm = True
    server: StandInHTTPServer

    def do_GET(self) -> None:
        # One handler serves every request of a keep-alive connection: reset per request.
        self.__dict__.pop("_body_cache", None)
        self.server.router.handle(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the router logs each request itself."""

    # -- request body --------------------------------------------------------------------------

    def _raw_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(length) if length else b""

    def body_or_none(self) -> Any:
        if hasattr(self, "_body_cache"):
            return self._body_cache
        raw = self._raw_body()
        self._body_cache: Any = None  # the body is consumed either way
        if not raw.strip():
            return None
        ctype = self.headers.get("Content-Type", "")
        if "protobuf" in ctype:
            self._body_cache = protobuf.decode(raw)
            return self._body_cache
        if "cbor" in ctype:
            raise errors.ApiError(
                415, "UnsupportedMediaType",
                f"the stand-in only accepts JSON, YAML and (some) protobuf bodies, not {ctype}")
        try:
            self._body_cache = yaml.safe_load(raw) if "yaml" in ctype else json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"the request body is not valid JSON/YAML: {exc}") from exc
        return self._body_cache

    def body(self) -> Any:
        body = self.body_or_none()
        if body is None:
            raise errors.bad_request("the request requires a body")
        return body

    # -- responses -----------------------------------------------------------------------------

    def send_bytes(self, code: int, ctype: str, data: bytes) -> int:
        if not hasattr(self, "_body_cache"):
            with contextlib.suppress(errors.ApiError):
                self.body_or_none()  # drain the body so keep-alive stays in sync
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(data)
        return code

    def send_json(self, code: int, doc: Any) -> int:
        return self.send_bytes(code, "application/json", json.dumps(doc).encode())

    def send_text(self, code: int, text: str) -> int:
        return self.send_bytes(code, "text/plain; charset=utf-8", text.encode())

    def start_stream(self, code: int, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def client_gone(self) -> bool:
        """While we stream, a well-behaved client sends nothing: readable means it hung up."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def end_stream(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True


class StandInHTTPServer(ThreadingHTTPServer):
    """Serves HTTP and HTTPS on one port (a TLS ClientHello starts with byte 0x16) and tracks
    open connections so stop() can cut them, as a dying API server would."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], router: Router, tls: ssl.SSLContext | None = None
    ) -> None:
        self.router = router
        self._tls = tls
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self._tls is not None:
            request.settimeout(30)
            try:
                first = request.recv(1, socket.MSG_PEEK)
            except OSError:
                return
            request.settimeout(None)
            if first == b"\x16":
                try:
                    wrapped = self._tls.wrap_socket(request, server_side=True)
                except (OSError, ssl.SSLError) as exc:
                    log.debug("TLS handshake from %s failed: %s", client_address, exc)
                    return
                # wrap_socket detached `request`: track the TLS socket so stop() can cut it.
                with self._conn_lock:
                    self._connections.discard(request)
                    self._connections.add(wrapped)
                try:
                    super().finish_request(wrapped, client_address)
                finally:
                    with self._conn_lock:
                        self._connections.discard(wrapped)
                    with contextlib.suppress(OSError):
                        wrapped.close()
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connection-level failures (a client hanging up mid-TLS) are not worth a traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            log.debug("connection from %s ended: %s", client_address, exc)
            return
        log.exception("unexpected error on the connection from %s", client_address)

    def process_request(self, request: Any, client_address: Any) -> None:
        if self.router.faults.dropping():
            self.router.faults.refuse(request)
            return
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._conn_lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
