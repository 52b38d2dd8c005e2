"""Follow the logs of every pod of one Deployment, across rollouts and dropped connections.

Pods are found with a label-selector watch (re-listed after 410 Gone or any error), so a new
pod is followed as soon as a container has started and an old one until its container ends.
There is one stream per (pod UID, container). Streams ask for timestamps: when one drops it is
resumed with sinceTime = the last timestamp seen, and the lines at that boundary are skipped by
(timestamp, text), so nothing is lost or printed twice. Only the lines sharing the latest
timestamp are remembered, and lines are passed on as they arrive, so memory stays bounded.

A follower that falls behind (a pod logging faster than devloop can pass lines on) skips to
the present: see _Stream.behind and MAX_BEHIND_S. Lines matching a probe path of the container
(logfilter) go to on_probe when one is given, so the console can fold them.

Stopping shuts down the sockets of the open streams (urllib3's HTTPResponse.shutdown), which
wakes every blocked reader at once; daemon threads alone would leave connections hanging.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from devloop.config.logfilter import probe_matcher, probe_paths
from devloop.k8s import selectors, timeouts
from devloop.k8s.errors import api_message, is_connection_error, one_line
from devloop.k8s.pods import Pod, pod_view
from devloop.k8s.podwatch import PodWatch, close_client, iter_lines, shutdown_response

log = logging.getLogger(__name__)

# The body is plain text, but the API server negotiates the log endpoint like any other: an
# Accept that allows none of JSON, YAML or protobuf (e.g. `text/plain`) gets 406 Not Acceptable.
# This is what client-go (kubectl logs) sends.
LOG_ACCEPT = "application/json, */*"
Timestamp = tuple[int, int]  # (unix seconds, nanoseconds)
# A stream whose newest line is this many seconds older than it was at its freshest (on this
# connection) skips to the present. Measured against the freshest lag, not against zero, so a
# tail of old lines at start-up, a resume after an outage or a kubelet clock that differs from
# ours does not count as falling behind. Seconds, not lines: what makes a stream useless is how
# old its lines are, whatever the pod's rate.
MAX_BEHIND_S = 5.0
_LAG_CHECK_S = 0.25  # how often (monotonic) a busy stream compares its lines with the clock
LineCallback = Callable[[str, str, str, str], None]  # (service, pod, container, line)
# (service, pod, container, lines skipped (estimate), seconds behind)
SkipCallback = Callable[[str, str, str, int, float], None]


def parse_timestamp(text: str) -> Timestamp | None:
    """RFC3339 / RFC3339Nano (as the kubelet prefixes lines) to a comparable tuple."""
    try:
        if "." in text:
            base, rest = text.split(".", 1)
            digits = ""
            for ch in rest:
                if not ch.isdigit():
                    break
                digits += ch
            zone = rest[len(digits):]
            nanos = int((digits + "000000000")[:9])
        else:
            base, nanos = text[:19], 0
            zone = text[19:]
        when = datetime.fromisoformat(base + (zone or "Z"))
    except ValueError:
        return None
    return int(when.timestamp()), nanos


def format_timestamp(ts: Timestamp) -> str:
    """RFC3339Nano, as the kubelet writes it (and sinceTime accepts)."""
    base = datetime.fromtimestamp(ts[0], UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{ts[1]:09d}Z"


def _has_started(pod: Pod, container: str) -> bool:
    status = pod.status(container)
    return status is not None and status.started


def _is_running(pod: Pod, container: str) -> bool:
    status = pod.status(container)
    return status is not None and status.running


class _Stream:
    """Dedupe state of one (pod, container) log across reconnects."""

    def __init__(self) -> None:
        self.last_ts: Timestamp | None = None
        self.last_ts_text: str | None = None
        self.at_last: Counter[str] = Counter()  # texts already passed on at last_ts
        self.failing = False  # an open error was reported; stay quiet until one succeeds
        self.resume_now = False  # skipped to the present: re-open at once, no back-off
        self._fresh: float | None = None  # smallest lag seen on this connection (s)
        self._first: Timestamp | None = None  # first line on this connection
        self._lines = 0  # lines on this connection

    def opened(self) -> None:
        """A new connection: the lag baseline and the rate estimate start again."""
        self._fresh, self._first, self._lines = None, None, 0

    def counted(self, clock: Callable[[], float] = time.time) -> None:
        """One more line of this connection (for the rate estimate)."""
        self._lines += 1
        if self._first is None and self.last_ts is not None:
            self._first = self.last_ts
            self.behind(clock())  # the first line sets the lag baseline

    def behind(self, now: float) -> float:
        """How much further behind the newest line is than at its freshest on this
        connection: wall clock minus kubelet timestamp, minus the smallest such lag seen."""
        if self.last_ts is None:
            return 0.0
        lag = now - (self.last_ts[0] + self.last_ts[1] / 1e9)
        if self._fresh is None or lag < self._fresh:
            self._fresh = lag
        return lag - self._fresh

    def skip(self, now: float) -> tuple[int, float]:
        """Move past everything logged until about now (the kubelet's clock: ours minus the
        freshest lag), so the re-opened stream starts at the present; returns (an estimate of
        the lines skipped: this connection's log rate times the time skipped, seconds)."""
        assert self.last_ts is not None and self._fresh is not None
        last = self.last_ts[0] + self.last_ts[1] / 1e9
        target = max(now - self._fresh, last)
        span = (last - (self._first[0] + self._first[1] / 1e9)) if self._first else 0.0
        rate = self._lines / span if span > 0 else 0.0
        whole = int(target)
        self.last_ts = (whole, int((target - whole) * 1e9))
        self.last_ts_text = format_timestamp(self.last_ts)
        self.at_last = Counter()
        self.resume_now = True
        return round(rate * (target - last)), target - last

    def accept(self, raw: str, replay: Counter[str]) -> str | None:
        """The line's text if it is new; None for a line already passed on before a resume."""
        stamp, _, text = raw.partition(" ")
        ts = parse_timestamp(stamp)
        if ts is None:  # no timestamp: cannot be deduplicated, pass it on
            return raw
        if self.last_ts is not None and ts < self.last_ts:
            return None
        if ts == self.last_ts:
            if replay[text] > 0:
                replay[text] -= 1
                return None
            self.at_last[text] += 1
            return text
        self.last_ts, self.last_ts_text = ts, stamp
        self.at_last = Counter({text: 1})
        replay.clear()
        return text


class LogFollower:
    """Follows every pod matching `selector`; calls on_line(service, pod, container, line).

    on_error gets one-line, human-readable problems (a failing watch, a stream that cannot be
    opened); the follower keeps retrying by itself until stop().
    """

    def __init__(self, api_client_factory: Callable[[], k8s.ApiClient], namespace: str,
                 service: str, selector: k8s.V1LabelSelector | Mapping[str, str],
                 on_line: Callable[[str, str, str, str], None],
                 on_error: Callable[[str], None], *, existing_tail: int | None = None,
                 watch_timeout_s: int = 30, read_timeout_s: float = 30,
                 keep: Callable[[str], bool] | None = None, on_probe: LineCallback | None = None,
                 on_skipped: SkipCallback | None = None,
                 max_behind_s: float = MAX_BEHIND_S) -> None:
        """existing_tail: how many earlier lines to show of pods already running at start()
        (None: all). Pods that appear later are always followed from their first line.

        read_timeout_s: a log stream silent this long is re-opened (sinceTime makes that
        free of duplicates); it bounds how long a silently dead connection goes unnoticed.
        keep: devloop.yaml's `logs` filter (called per line; lines it refuses go nowhere).
        on_probe: gets the lines that match a probe path of the container (logfilter) instead
        of on_line; None: probe lines are ordinary lines.
        on_skipped: told when a stream fell more than max_behind_s behind and skipped to the
        present; None: a warning through on_error.
        watch_timeout_s: the server ends each pod watch after this long and it is renewed.
        """
        self._factory = api_client_factory
        self._namespace = namespace
        self._service = service
        self._selector = selectors.selector_query(selector)
        self._on_line = on_line
        self._on_error = on_error
        self._existing_tail = existing_tail
        self._keep = keep
        self._on_probe = on_probe
        self._on_skipped = on_skipped
        self._max_behind = max_behind_s
        self._read_timeout = read_timeout_s
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._pods: dict[str, Pod] = {}  # uid -> latest pod seen by the watch
        self._workers: dict[tuple[str, str], threading.Thread] = {}
        self._finished: set[tuple[str, str]] = set()
        self._responses: set[Any] = set()
        self._clients: set[k8s.ApiClient] = set()
        self._initial_uids: set[str] | None = None
        self._podwatch = PodWatch(
            api_client_factory, namespace, self._selector, on_pod=self._pod_seen,
            on_gone=self._pod_gone, on_list=self._pods_listed, on_error=on_error,
            label=f"logs for {service}", thread_name=f"logs-watch:{service}",
            watch_timeout_s=watch_timeout_s)

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._podwatch.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Close every stream and join the threads; returns within about `timeout` seconds."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
            responses = list(self._responses)
        for resp in responses:
            shutdown_response(resp)
        deadline = time.monotonic() + timeout
        self._podwatch.stop(timeout)
        with self._cond:
            threads = list(self._workers.values())
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            clients = list(self._clients)
            self._clients.clear()
        for api_client in clients:
            close_client(api_client)

    @property
    def followed(self) -> list[tuple[str, str]]:
        """(pod name, container) of the streams open right now (for status displays)."""
        with self._cond:
            keys = list(self._workers)
            pods = dict(self._pods)
        return [(pod.name if (pod := pods.get(uid)) else uid, c) for uid, c in keys]

    # helpers -----------------------------------------------------------------------------------
    def _guard(self, target: Callable[..., None], *args: Any) -> None:
        try:
            target(*args)
        except Exception as exc:  # a bug here must not vanish with its thread
            if not self._stop.is_set():
                self._on_error(one_line(f"logs for {self._service}: stopped following"
                                        f" ({type(exc).__name__}: {exc})"))

    def _new_client(self) -> k8s.ApiClient:
        api_client = self._factory()
        with self._cond:
            self._clients.add(api_client)
        return api_client

    def _release_client(self, api_client: k8s.ApiClient) -> None:
        with self._cond:
            self._clients.discard(api_client)
        close_client(api_client)

    def _open(self, resp: Any) -> bool:
        """Register a response so stop() can shut it down; False if stop() already ran."""
        with self._cond:
            if self._stop.is_set():
                stopped = True
            else:
                self._responses.add(resp)
                stopped = False
        if stopped:
            shutdown_response(resp)
            with contextlib.suppress(Exception):
                resp.close()
        return not stopped

    def _read_all(self, resp: Any) -> bytes:
        """The whole body of a short response, interruptible by stop() like the streams."""
        if not self._open(resp):
            raise ConnectionAbortedError("stopping")
        try:
            return resp.read()
        finally:
            self._close(resp)

    def _close(self, resp: Any) -> None:
        with self._cond:
            self._responses.discard(resp)
        with contextlib.suppress(Exception):
            resp.close()
            resp.release_conn()

    # the pod watch -----------------------------------------------------------------------------
    def _pods_listed(self, pods: list[Pod]) -> None:
        """The first listing tells which pods were already running at start()."""
        with self._cond:
            if self._initial_uids is None:
                self._initial_uids = {p.uid for p in pods}

    def _pod_seen(self, pod: Pod) -> None:
        uid = pod.uid
        containers = [c.name for c in pod.specs if not c.init]
        with self._cond:
            self._pods[uid] = pod
            self._cond.notify_all()
            if self._stop.is_set():
                return
            for name in containers:
                key = (uid, name)
                if key in self._workers or key in self._finished or not _has_started(pod, name):
                    continue
                initial = self._initial_uids is not None and uid in self._initial_uids
                thread = threading.Thread(
                    target=self._guard, args=(self._follow, uid, name, initial),
                    name=f"logs:{pod.name}/{name}", daemon=True)
                self._workers[key] = thread
                thread.start()

    def _pod_gone(self, pod: Pod) -> None:
        uid = pod.uid
        with self._cond:
            self._pods.pop(uid, None)
            self._finished = {key for key in self._finished if key[0] != uid}
            self._cond.notify_all()

    # one log stream ----------------------------------------------------------------------------
    def _follow(self, uid: str, container: str, initial: bool) -> None:
        key = (uid, container)
        api_client = self._new_client()
        core = k8s.CoreV1Api(api_client)
        with self._cond:
            pod_name = self._pods[uid].name
            paths = probe_paths(self._pods[uid].obj, container)
        stream = _Stream()
        probes = probe_matcher(paths) if self._on_probe is not None else None
        tail = self._existing_tail if initial else None
        backoff = 0.2
        try:
            while not self._stop.is_set():
                passed = self._read_stream(api_client, pod_name, container, stream, tail,
                                           probes=probes)
                if self._stop.is_set():
                    return
                if stream.resume_now:  # skipped to the present: straight back in
                    stream.resume_now = False
                    tail = None
                    continue
                if passed >= 0:
                    tail = None
                if passed > 0:
                    backoff = 0.2
                pod = self._fresh_pod(core, pod_name, uid)
                if pod is None:
                    return  # deleted: its logs are gone with it
                if _is_running(pod, container):
                    # A dropped stream (or one ended by a container that is restarting): resume.
                    # Streams that keep ending without a line back off, up to 2 s.
                    if self._stop.wait(backoff):
                        return
                    backoff = min(backoff * 2, 2.0)
                    continue
                if pod.final:
                    # The container has ended for good: one last catch-up read (sinceTime
                    # dedupes) in case the stream dropped just before the end, then done.
                    stream.failing = True  # a pod being removed may refuse: not news
                    self._read_stream(api_client, pod_name, container, stream, None,
                                      follow=False, probes=probes)
                    return
                if not self._wait_restart(uid, container, pod):
                    return
                backoff = 0.2
        finally:
            with self._cond:
                self._workers.pop(key, None)
                if uid in self._pods:
                    self._finished.add(key)
            self._release_client(api_client)

    def _read_stream(self, api_client: k8s.ApiClient, pod_name: str, container: str,
                     stream: _Stream, tail: int | None, follow: bool = True,
                     probes: re.Pattern[str] | None = None) -> int:
        """Pass on new lines until the stream ends, drops or falls behind (then
        stream.resume_now is set); how many lines were read (-1: could not open)."""
        query: list[tuple[str, Any]] = [("container", container), ("timestamps", "true")]
        if follow:
            query.append(("follow", "true"))
        if stream.last_ts_text is not None:
            query.append(("sinceTime", stream.last_ts_text))
        elif tail is not None:
            query.append(("tailLines", str(tail)))
        log.debug("open log %s/%s since=%s follow=%s", pod_name, container,
                  stream.last_ts_text, follow)
        try:
            resp = api_client.call_api(
                "/api/v1/namespaces/{namespace}/pods/{name}/log", "GET",
                {"namespace": self._namespace, "name": pod_name}, query,
                {"Accept": LOG_ACCEPT}, auth_settings=["BearerToken"],
                response_type="str", _preload_content=False, _return_http_data_only=True,
                _request_timeout=timeouts.stream(self._read_timeout))
        except ApiException as exc:
            # 400: the container is not running (yet/anymore); 404: the pod is gone.
            if exc.status not in (400, 404) and not self._stop.is_set() and not stream.failing:
                stream.failing = True
                self._on_error(one_line(f"logs for {self._service} {pod_name}/{container}:"
                                        f" {api_message(exc)}; retrying"))
            return -1
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            log.debug("log %s/%s: open failed: %s", pod_name, container, exc)
            return -1
        if not self._open(resp):
            return 0
        stream.failing = False
        stream.opened()
        passed = 0
        replay = Counter(stream.at_last) if stream.last_ts_text is not None else Counter()
        keep, on_line, on_probe = self._keep, self._on_line, self._on_probe
        service = self._service
        check_at = time.monotonic() + _LAG_CHECK_S
        try:
            for raw in iter_lines(resp):
                text = stream.accept(raw, replay)
                if text is None:
                    continue
                passed += 1
                stream.counted()
                if keep is None or keep(text):
                    if probes is not None and probes.search(text):
                        on_probe(service, pod_name, container, text)  # type: ignore[misc]
                    else:
                        on_line(service, pod_name, container, text)
                if follow and time.monotonic() >= check_at:
                    check_at = time.monotonic() + _LAG_CHECK_S
                    now = time.time()
                    if stream.behind(now) > self._max_behind:
                        self._skipped(pod_name, container, *stream.skip(now))
                        break
        except Exception as exc:
            if not is_connection_error(exc) and not self._stop.is_set():
                raise
            log.debug("log %s/%s dropped after %d lines: %s", pod_name, container, passed, exc)
            return passed
        finally:
            self._close(resp)
        log.debug("log %s/%s ended after %d lines", pod_name, container, passed)
        return passed

    def _skipped(self, pod_name: str, container: str, lines: int, seconds: float) -> None:
        log.debug("log %s/%s: %.1f s behind, skipping ~%d lines", pod_name, container,
                  seconds, lines)
        if self._on_skipped is not None:
            self._on_skipped(self._service, pod_name, container, lines, seconds)
        else:
            self._on_error(f"logs for {self._service} {pod_name}/{container}: skipped about "
                           f"{lines} lines ({seconds:.1f} s) to keep up")

    def _fresh_pod(self, core: k8s.CoreV1Api, pod_name: str, uid: str) -> Pod | None:
        """The pod as the API server sees it now (the watch may lag); None once it is gone."""
        try:
            resp = core.read_namespaced_pod(pod_name, self._namespace, _preload_content=False,
                                            _request_timeout=timeouts.QUICK)
            pod: Pod | None = pod_view(json.loads(self._read_all(resp)))
        except ApiException as exc:
            if exc.status == 404:
                return None
            pod = None
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            pod = None
        if pod is None:  # unknown right now: trust the watch
            with self._cond:
                return self._pods.get(uid)
        if pod.uid != uid:
            return None  # same name, different pod (StatefulSet-style re-creation)
        return pod

    def _wait_restart(self, uid: str, container: str, ended: Pod) -> bool:
        """Wait (on watch updates) until the container runs again; False if that will not
        happen (pod gone or finished) or stop() was called."""
        before = ended.status(container)
        with self._cond:
            while not self._stop.is_set():
                pod = self._pods.get(uid)
                if pod is None or pod.final:
                    return False
                now = pod.status(container)
                restarted = (now.restarts if now else 0) > (before.restarts if before else 0)
                new_id = bool(now and now.container_id) and \
                    now.container_id != (before.container_id if before else "")
                if _has_started(pod, container) and (restarted or new_id):
                    return True
                self._cond.wait(1.0)
        return False
