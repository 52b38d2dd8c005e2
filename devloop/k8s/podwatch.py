"""One pod watch by label selector, for everything that must follow pods as they come and go.

List, then watch from the list's resourceVersion (with bookmarks, so a quiet watch still moves
its version forward); a 410 Gone re-lists at once, any other failure re-lists with back-off
(0.5 s doubling to 5 s) and is reported once, as one line, until a watch succeeds again. Every
request has a timeout, so a silently dropped connection is noticed. stop() shuts down the socket
of the open response, which wakes the blocked read at once: it returns within about a second.

Callbacks get each pod as its typed view (devloop.k8s.pods.Pod) and run on the watch thread:
on_list(pods) after each (re)list, then on_gone(pod) for every pod reported before that is no
longer there and on_pod(pod) for every listed pod; afterwards on_pod for ADDED/MODIFIED and
on_gone for DELETED. An exception in a callback is a bug: it ends the watch with one on_error.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from devloop.k8s import timeouts
from devloop.k8s.errors import api_message, connection_detail, is_connection_error, one_line
from devloop.k8s.pods import Pod, pod_view

MAX_LINE_BYTES = 64 * 1024


def iter_lines(resp: Any, max_line: int = MAX_LINE_BYTES) -> Iterator[str]:
    """Lines from a streaming response as soon as they arrive (read1 returns what is there).

    A line longer than max_line is cut into pieces so one runaway writer cannot grow memory.
    """
    buffer = bytearray()
    while True:
        chunk = resp.read1(65536)
        if not chunk:
            break
        buffer.extend(chunk)
        while True:
            cut = buffer.find(b"\n")
            if cut == -1:
                if len(buffer) >= max_line:
                    yield buffer[:max_line].decode("utf-8", errors="replace")
                    del buffer[:max_line]
                    continue
                break
            yield buffer[:cut].decode("utf-8", errors="replace").rstrip("\r")
            del buffer[: cut + 1]
    if buffer:
        yield buffer.decode("utf-8", errors="replace")


class PodWatch:
    """Watches the pods of `label_selector` in `namespace` on a thread of its own."""

    def __init__(self, api_client_factory: Callable[[], k8s.ApiClient], namespace: str,
                 label_selector: str, *, on_pod: Callable[[Pod], None],
                 on_gone: Callable[[Pod], None] | None = None,
                 on_error: Callable[[str], None] | None = None,
                 on_list: Callable[[list[Pod]], None] | None = None,
                 label: str = "pod watch", thread_name: str | None = None,
                 watch_timeout_s: int = 30) -> None:
        """label: how errors name the watch ("logs for backend: cannot watch pods: ...").
        watch_timeout_s: the server ends each watch after this long and it is renewed."""
        self._factory = api_client_factory
        self._namespace = namespace
        self._selector = label_selector
        self._on_pod = on_pod
        self._on_gone = on_gone or (lambda pod: None)
        self._on_error = on_error or (lambda text: None)
        self._on_list = on_list or (lambda pods: None)
        self._label = label
        self._thread_name = thread_name or f"podwatch:{namespace}/{label_selector}"
        self._watch_timeout = watch_timeout_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._resp: Any = None  # the response being read, for stop()
        self._client: k8s.ApiClient | None = None
        self._thread: threading.Thread | None = None
        self._known: dict[str, Pod] = {}  # uid -> pod last passed to on_pod

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self._label}: pod watch already started")
        self._thread = threading.Thread(target=self._guarded, name=self._thread_name,
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """End the watch; returns within about `timeout` seconds."""
        self._stop.set()
        with self._lock:
            resp = self._resp
        if resp is not None:
            shutdown_response(resp)
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            api_client, self._client = self._client, None
        if api_client is not None:
            close_client(api_client)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # the loop ----------------------------------------------------------------------------------
    def _guarded(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a bug here must not vanish with its thread
            if not self._stop.is_set():
                self._on_error(one_line(f"{self._label}: stopped watching pods"
                                        f" ({type(exc).__name__}: {exc})"))

    def _run(self) -> None:
        api_client = self._factory()
        with self._lock:
            self._client = api_client
        core = k8s.CoreV1Api(api_client)
        version: str | None = None
        backoff = 0.5
        failing = False
        try:
            while not self._stop.is_set():
                try:
                    if version is None:
                        version = self._relist(core)
                    began = time.monotonic()
                    version, events = self._watch_once(core, version)
                    backoff, failing = 0.5, False
                    if not events and time.monotonic() - began < 1 and self._stop.wait(1.0):
                        break  # a server that ends watches at once must not make us spin
                except ApiException as exc:
                    version = None
                    if exc.status == 410:  # our version is too old: re-list right away
                        continue
                    if not failing:
                        self._on_error(one_line(f"{self._label}: cannot watch pods:"
                                                f" {api_message(exc)}; retrying"))
                    failing = True
                except Exception as exc:
                    if self._stop.is_set():
                        break
                    if not is_connection_error(exc) and not isinstance(exc, ValueError):
                        raise  # ValueError: a garbled event; re-list like after a drop
                    version = None
                    if not failing:
                        self._on_error(f"{self._label}: lost the pod watch"
                                       f" ({connection_detail(exc)}); retrying")
                    failing = True
                if failing and self._stop.wait(backoff):
                    break
                if failing:
                    backoff = min(backoff * 2, 5.0)
        finally:
            with self._lock:
                mine = self._client is api_client
                self._client = None if mine else self._client
            if mine:
                close_client(api_client)

    def _relist(self, core: k8s.CoreV1Api) -> str:
        resp = core.list_namespaced_pod(self._namespace, label_selector=self._selector,
                                        _preload_content=False, _request_timeout=timeouts.REQUEST)
        if not self._open(resp):
            raise ConnectionAbortedError("stopping")
        try:
            listing = json.loads(resp.read())
        finally:
            self._close(resp)
        items = [pod_view(item) for item in listing.get("items") or []]
        present = {p.uid for p in items}
        self._on_list(items)
        for uid in [uid for uid in self._known if uid not in present]:
            self._on_gone(self._known.pop(uid))
        for pod in items:
            self._seen(pod)
        return str((listing.get("metadata") or {}).get("resourceVersion") or "")

    def _watch_once(self, core: k8s.CoreV1Api, version: str) -> tuple[str, int]:

        resp = core.list_namespaced_pod(
            self._namespace, label_selector=self._selector, watch=True,
            resource_version=version or None, allow_watch_bookmarks=True,
            timeout_seconds=self._watch_timeout, _preload_content=False,
            _request_timeout=timeouts.watch(self._watch_timeout))
        events = 0
        if not self._open(resp):
            return version, events
        try:
            for line in iter_lines(resp, max_line=16 * 1024 * 1024):
                if not line.strip():
                    continue
                events += 1
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise ApiException(status=int(obj.get("code") or 500),
                                       reason=str(obj.get("message") or obj.get("reason")))
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind in ("ADDED", "MODIFIED"):
                    self._seen(pod_view(obj))
                elif kind == "DELETED":
                    self._known.pop(obj["metadata"]["uid"], None)
                    self._on_gone(pod_view(obj))
        finally:
            self._close(resp)
        return version, events

    def _seen(self, pod: Pod) -> None:
        self._known[pod.uid] = pod
        self._on_pod(pod)

    # the open response -------------------------------------------------------------------------
    def _open(self, resp: Any) -> bool:
        """Make `resp` the one stop() shuts down; False (and closed) if stop() already ran."""
        with self._lock:
            if not self._stop.is_set():
                self._resp = resp
                return True
        shutdown_response(resp)
        with contextlib.suppress(Exception):
            resp.close()
        return False

    def _close(self, resp: Any) -> None:
        with self._lock:
            if self._resp is resp:
                self._resp = None
        with contextlib.suppress(Exception):
            resp.close()
            resp.release_conn()


def shutdown_response(resp: Any) -> None:
    """urllib3's HTTPResponse.shutdown: unblocks a read in another thread."""
    with contextlib.suppress(Exception):
        resp.shutdown()


def close_client(api_client: k8s.ApiClient) -> None:
    """Close an ApiClient and its pooled connections (a stream thread may still hold one)."""
    with contextlib.suppress(Exception):
        api_client.rest_client.pool_manager.clear()
        api_client.close()
