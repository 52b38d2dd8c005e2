"""Port forwards that survive every reload: a local port per `port_forwards` entry, piped through
the Kubernetes API's port-forward to a Ready pod of the service's current revision.

Why not one long-lived `kubectl port-forward`: it is bound to one pod and dies with it at the
first redeploy (sk#4518). Here the local socket belongs to devloop and every accepted connection
opens its own port-forward stream to whichever pod is the target *now*; a PodWatch moves the
target to the new pod as soon as it is Ready (and closes the connections still open to the old
pod, so a keep-alive client never talks to the old pod after the move). A connection accepted
while no pod is Ready (a Recreate rollout) waits for one (up to CONNECT_WAIT_S), then is
closed: it never hangs.

The local ports are bound when the first pod is Ready, not before: a pod on this machine's
network (the stand-in's host networking, podIP 127.0.0.1) listens on the same port itself, and
a port taken by devloop first would make it fail. When such a pod already holds the port, the
app is on localhost without a forward and `forward.ready` says so (`direct`).

The manager owns its state and is fed only by its pod watches (and, to learn that a Deployment
now exists, by bus events): it is not a step of the reload pipeline.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from devloop import events as ev
from devloop.config.loader import Config, PortForward, ServiceConfig
from devloop.k8s import retry
from devloop.k8s.cluster import Cluster, new_api_client
from devloop.k8s.errors import connection_detail, is_connection_error, one_line
from devloop.k8s.pods import Pod
from devloop.k8s.podwatch import PodWatch
from devloop.k8s.workloads import await_workload, read_workload
from devloop.live.updaters import exec_transient

CONNECT_WAIT_S = 10.0  # a connection accepted while no pod is Ready waits this long for one
_ATTACH_RETRY_S = 2.0  # the Deployment does not exist yet (first deploy): look again this often
FORWARD_RETRY = retry.RetryPolicy(deadline_s=CONNECT_WAIT_S)  # per accepted connection
_NEVER = datetime.min.replace(tzinfo=UTC)  # the creation time of a pod that does not say


def choose_target(pods: list[Pod], container: str, template_image: str | None,
                  current: str | None) -> str | None:
    """The pod (name) to forward to: a Ready pod running the Deployment's template image (the
    current one if it still qualifies, else the newest); while none is Ready yet, the current
    target as long as it is still Ready (a RollingUpdate keeps serving from the old pod)."""
    ready = [p for p in pods if p.serving]
    fresh = [p for p in ready if p.image(container) == template_image]
    names = {p.name for p in fresh}
    if current in names:
        return current
    if fresh:
        newest = max(fresh, key=lambda p: (p.created or _NEVER, p.name))
        return newest.name
    if current in {p.name for p in ready}:
        return current
    return None


# --- who holds a port --------------------------------------------------------------------------

def port_holder(port: int) -> str | None:
    """'pid 123 (python3)' of the process listening on TCP `port`, when it can be found:
    /proc/net/tcp{,6} give the socket inode, /proc/*/fd the process; else `ss -ltnp`."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as handle:
            for line in list(handle)[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "0A" and \
                            int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    wanted = {f"socket:[{inode}]" for inode in inodes}
    if wanted:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                            return f"pid {pid} ({_comm(pid)})"
    return _ss_holder(port)


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as handle:
            return handle.read().strip() or "?"
    except OSError:
        return "?"


def _ss_holder(port: int) -> str | None:
    ss = shutil.which("ss")
    if ss is None:
        return None
    try:
        out = subprocess.run([ss, "-Hltnp", f"sport = :{port}"], capture_output=True,
                             text=True, timeout=3).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'users:\(\("([^"]+)",pid=(\d+)', out)
    return f"pid {match.group(2)} ({match.group(1)})" if match else None


# --- one local port ----------------------------------------------------------------------------

@dataclass(eq=False)  # identity: kept in sets
class _Conn:
    local: socket.socket
    remote: Any  # the PortForward's socket (a socketpair end)

    def close(self) -> None:
        for sock in (self.local, self.remote):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class _Listener:
    """The local listening socket of one forward and its accept loop."""

    def __init__(self, spec: PortForward, serve: Callable[[_Listener, socket.socket], None]
                 ) -> None:
        self.spec = spec
        self._serve = serve
        self._sock: socket.socket | None = None
        self.port = spec.local_port  # the bound port (differs from spec only for port 0)

    @property
    def url(self) -> str:
        host = f"[{self.spec.address}]" if ":" in self.spec.address else self.spec.address
        return f"http://{host}:{self.port}"

    def bind(self) -> None:
        family = socket.AF_INET6 if ":" in self.spec.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT only
            sock.bind((self.spec.address, self.spec.local_port))
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        threading.Thread(target=self._accept, name=f"forward:{self.port}", daemon=True).start()

    def _accept(self) -> None:
        sock = self._sock
        while sock is not None:
            try:
                conn, _ = sock.accept()
            except OSError:
                return  # closed by stop()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(self, conn), daemon=True,
                             name=f"forward:{self.port}:conn").start()

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


# --- one service -------------------------------------------------------------------------------

class ServiceForwards:
    """The forwards of one service: its listeners, its pod watch and its current target pod."""

    def __init__(self, cluster: Cluster, service: ServiceConfig, bus: ev.EventBus,
                 config_path: str = "devloop.yaml") -> None:
        self.cluster = cluster
        self.service = service
        self.bus = bus
        self._config_path = config_path
        self.listeners = [_Listener(spec, self._serve) for spec in service.port_forwards]
        self._bound = False  # listeners are bound at the first Ready pod
        self._lock = threading.Condition()
        self._pods: dict[str, Pod] = {}  # uid -> pod
        self._template_image: str | None = None
        self._target: str | None = None
        self._last: str | None = None  # the last pod forwarded to (for forward.moved)
        self._conns: dict[str, set[_Conn]] = {}  # pod name -> open connections
        self._reported: set[tuple[str, int]] = set()  # (pod, remote port) failures said once
        self._watch: PodWatch | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._api: k8s.ApiClient | None = None

    @property
    def target(self) -> str | None:
        with self._lock:
            return self._target

    def start(self) -> None:
        threading.Thread(target=self._attach, name=f"forward:{self.service.name}",
                         daemon=True).start()

    def _bind(self, pod: Pod | None) -> list[_Listener]:
        """Bind every listener (at the first Ready pod); the ones that failed are reported and
        dropped, and so are ports a pod on this machine's network already serves."""
        direct = pod is not None and pod.pod_ip.startswith("127.")
        bound, name = [], pod.name if pod is not None else None
        for listener in self.listeners:
            try:
                listener.bind()
                bound.append(listener)
            except OSError as exc:
                if direct and exc.errno == errno.EADDRINUSE and \
                        listener.spec.local_port == listener.spec.remote_port:
                    self.bus.publish(ev.FORWARD_READY, self.service.name, url=listener.url,
                                     address=listener.spec.address,
                                     local_port=listener.spec.local_port,
                                     remote_port=listener.spec.remote_port, pod=name,
                                     direct=True)
                else:
                    self._failed(listener, None, self._bind_error(listener, exc))
        return bound

    def wake(self) -> None:
        """The Deployment may exist now (installed or patched): look again at once."""
        self._wake.set()

    def stop(self, reason: str | None = None) -> None:
        """Close the local ports and every connection; with a `reason` (devloop.yaml changed,
        not a shutdown) each port that was open is reported closed."""
        with self._lock:
            self._stop.set()
            open_ports = self.listeners if self._bound else []
        self._wake.set()
        for listener in self.listeners:
            listener.close()
        if reason is not None:
            for listener in open_ports:
                self.bus.publish(ev.FORWARD_STOPPED, self.service.name, url=listener.url,
                                 address=listener.spec.address, local_port=listener.port,
                                 remote_port=listener.spec.remote_port, reason=reason)
        if self._watch is not None:
            self._watch.stop()
        with self._lock:
            conns = [c for group in self._conns.values() for c in group]
            self._conns.clear()
            self._target = None
            self._lock.notify_all()
        for conn in conns:
            conn.close()
        if self._api is not None:
            with contextlib.suppress(Exception):
                self._api.close()

    # the target -------------------------------------------------------------------------------
    def _attach(self) -> None:
        """Find the workload (it may not exist before the first deploy), then watch its pods."""
        self._api = new_api_client(self.cluster)
        workload = await_workload(
            self._api, self.cluster.namespace, self.service.workload,
            self._stop, self._wake, self._warn, f"port forwards of {self.service.name}",
            _ATTACH_RETRY_S)
        if workload is None:
            return
        with self._lock:
            self._template_image = workload.template_image(self.service.container or "")
        self._watch = PodWatch(
            lambda: new_api_client(self.cluster), self.cluster.namespace,
            workload.selector_query, on_pod=self._on_pod, on_gone=self._on_gone,
            on_error=self._warn, label=f"port forwards of {self.service.name}",
            thread_name=f"forward-pods:{self.service.name}")
        if not self._stop.is_set():
            self._watch.start()

    def _warn(self, text: str) -> None:
        self.bus.publish(ev.WARNING, self.service.name, message=text)

    def _on_pod(self, pod: Pod) -> None:
        with self._lock:
            self._pods[pod.uid] = pod
        self._choose(pod if pod.serving else None)

    def _on_gone(self, pod: Pod) -> None:
        with self._lock:
            self._pods.pop(pod.uid, None)
        self._choose(None)

    def _choose(self, ready_pod: Pod | None) -> None:
        """Re-pick the target; a Ready pod with an image other than the known template image
        means the Deployment was patched: read its template image first (one GET)."""
        if ready_pod is not None and ready_pod.image(self.service.container) \
                != self._template_image:
            self._refresh_template()
        with self._lock:
            old = self._target
            new = choose_target(list(self._pods.values()), self.service.container,
                                self._template_image, old)
            if new == old:
                return
            first = not self._bound and new is not None and not self._stop.is_set()
            self._bound = self._bound or first
            target_pod = next((p for p in self._pods.values() if p.name == new), None)
        if first:  # on the watch thread, before anyone can connect
            self.listeners = self._bind(target_pod)
        with self._lock:
            stopped = self._stop.is_set()
            if not stopped:
                self._target = new
                last, self._last = self._last, new or self._last
                stale = self._conns.pop(old, set()) if old else set()
                self._lock.notify_all()
        if stopped:  # stop() ran while binding: close what it may have missed
            for listener in self.listeners:
                listener.close()
            return
        for conn in stale:  # the old pod is never used after the move
            conn.close()
        if new is None:
            return
        for listener in self.listeners:
            data = {"url": listener.url, "address": listener.spec.address,
                    "local_port": listener.port, "remote_port": listener.spec.remote_port,
                    "pod": new}
            if last in (None, new):  # first pod, or the same pod Ready again (restart)
                self.bus.publish(ev.FORWARD_READY, self.service.name, **data)
            else:
                self.bus.publish(ev.FORWARD_MOVED, self.service.name, previous=last, **data)

    def _refresh_template(self) -> None:
        if self._api is None:
            return
        try:
            workload = read_workload(self._api, self.cluster.namespace, self.service.workload)
        except Exception as exc:
            if isinstance(exc, ApiException) or is_connection_error(exc):
                return  # keep the known image; the next pod event asks again
            raise
        image = workload.template_image(self.service.container or "")
        with self._lock:
            self._template_image = image

    def _wait_target(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._target is None and not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(left)
            return self._target

    # connections ------------------------------------------------------------------------------
    def _serve(self, listener: _Listener, local: socket.socket) -> None:
        try:
            self._forward(listener, local)
        except Exception as exc:  # a bug must not leave the client hanging or vanish silently
            with contextlib.suppress(OSError):
                local.close()
            self.bus.publish(ev.WARNING, self.service.name, message=one_line(
                f"port forward {listener.url} of {self.service.name}: connection dropped"
                f" ({type(exc).__name__}: {exc})"))

    def _forward(self, listener: _Listener, local: socket.socket) -> None:
        pod = self._wait_target(CONNECT_WAIT_S)
        if pod is None:
            local.close()
            return
        remote_port = listener.spec.remote_port
        api = new_api_client(self.cluster)  # kubernetes.stream patches the client it is given
        try:
            from kubernetes.stream import portforward

            # a client is waiting on the local socket: ride out a short API hiccup, not more
            forward = retry.call(lambda: portforward(
                k8s.CoreV1Api(api).connect_get_namespaced_pod_portforward,
                pod, self.cluster.namespace, ports=str(remote_port)),
                what=f"port-forward to pod {pod}", policy=FORWARD_RETRY,
                transient=exec_transient)  # the same websocket handshake as exec
        except Exception as exc:
            local.close()
            if not (isinstance(exc, ApiException) or is_connection_error(exc)):
                raise
            detail = exc.reason if isinstance(exc, ApiException) else connection_detail(exc)
            self._connect_failed(listener, pod, str(detail))
            return
        finally:
            with contextlib.suppress(Exception):
                api.close()
        conn = _Conn(local, forward.socket(remote_port))
        conn.remote.setblocking(True)
        with self._lock:
            if self._target != pod:  # moved while connecting: drop it, the client retries
                conn.close()
                return
            self._conns.setdefault(pod, set()).add(conn)
        try:
            _pipe(conn)
        finally:
            with self._lock:
                self._conns.get(pod, set()).discard(conn)
            conn.close()
            error = forward.error(remote_port)
            if error:
                self._connect_failed(listener, pod, error)

    def _connect_failed(self, listener: _Listener, pod: str, detail: str) -> None:
        key = (pod, listener.spec.remote_port)
        with self._lock:
            if key in self._reported:
                return
            self._reported.add(key)
        self._failed(listener, pod, one_line(
            f"{self.service.name}: forward {listener.url} -> pod {pod} port"
            f" {listener.spec.remote_port} failed: {detail}"))

    def _failed(self, listener: _Listener, pod: str | None, message: str) -> None:
        self.bus.publish(ev.FORWARD_FAILED, self.service.name, address=listener.spec.address,
                         local_port=listener.spec.local_port,
                         remote_port=listener.spec.remote_port, pod=pod, message=message)

    def _bind_error(self, listener: _Listener, exc: OSError) -> str:
        spec = listener.spec
        where = f"{spec.address}:{spec.local_port}"
        if exc.errno == errno.EADDRINUSE:
            holder = port_holder(spec.local_port)
            cause = f"port {spec.local_port} is already in use" + \
                (f" by {holder}" if holder else " (by a process devloop cannot see)")
            hint = f"stop it or change {self.service.config_key}.port_forwards in" \
                   f" {self._config_path}"
        else:
            cause = exc.strerror or str(exc)
            hint = f"check {self.service.config_key}.port_forwards in {self._config_path}"
        return one_line(f"{self.service.name}: cannot forward {where} -> port"
                        f" {spec.remote_port}: {cause}; {hint}")


def _forward_key(service: ServiceConfig) -> tuple[object, ...]:
    """What a service's forwards depend on: a change restarts them."""
    return (service.port_forwards, str(service.workload), service.container)


def _pipe(conn: _Conn) -> None:
    """Copy both ways until either side ends; the other direction runs on a helper thread."""

    def copy(src: Any, dst: Any) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    back = threading.Thread(target=copy, args=(conn.remote, conn.local), daemon=True,
                            name="forward:pipe")
    back.start()
    copy(conn.local, conn.remote)
    back.join()


# --- all services ------------------------------------------------------------------------------

class ForwardManager:
    """Starts the port forwards of every service that has some; a bus subscriber to learn that a
    missing Deployment was installed or patched, and that devloop.yaml changed (`config` gives
    the config now): the forwards of a service whose `port_forwards` (or Deployment or
    container) changed are restarted, the others are not touched."""

    _WAKE_ON = (ev.DEPLOY_INSTALLED, ev.DEPLOY_PATCHED, ev.ROLLOUT_READY)

    def __init__(self, cluster: Cluster, services: list[ServiceConfig], bus: ev.EventBus,
                 config_path: str = "devloop.yaml",
                 config: Callable[[], Config] | None = None) -> None:
        self.bus = bus
        self.cluster = cluster
        self._config_path = config_path
        self._config = config
        self.services = {s.name: self._make(s) for s in services if s.port_forwards}
        self._unsubscribe: Callable[[], None] | None = None
        self._reconfigure_lock = threading.Lock()
        self._closed = threading.Event()

    def _make(self, service: ServiceConfig) -> ServiceForwards:
        return ServiceForwards(self.cluster, service, self.bus, self._config_path)

    def __call__(self, event: ev.Event) -> None:
        if event.type == ev.CONFIG_LOADED and self._config is not None:
            # the bus calls on the engine's loop thread: stopping a pod watch may take a second
            threading.Thread(target=self.reconfigure, args=(list(event.data["services"]),),
                             name="forward-reconfigure", daemon=True).start()
        elif event.type in self._WAKE_ON and event.service in self.services:
            self.services[event.service].wake()

    def start(self) -> None:
        if not self.services and self._config is None:
            return
        self._unsubscribe = self.bus.subscribe(self)
        for forwards in self.services.values():
            forwards.start()

    def reconfigure(self, names: list[str]) -> None:
        """Apply the current config's forwards of the services `names` (those watch runs)."""
        assert self._config is not None
        with self._reconfigure_lock:
            config = self._config()
            pool = {**config.resources, **config.services}  # `resources:` are forwarded too
            wanted = {n: pool[n] for n in [*names, *config.resources]
                      if n in pool and pool[n].port_forwards}
            services = dict(self.services)
            for name in sorted(set(services) | set(wanted)):
                old, new = services.get(name), wanted.get(name)
                if old is not None and new is not None and _forward_key(old.service) == \
                        _forward_key(new):
                    continue
                if old is not None:
                    del services[name]
                    old.stop(reason=f"port_forwards of {name} changed in {self._config_path}"
                             if new is not None else
                             f"{name} has no port_forwards in {self._config_path} any more")
                if new is not None and not self._closed.is_set():
                    services[name] = self._make(new)
                    services[name].start()
            self.services = services
        if self._closed.is_set():  # stop() ran meanwhile and may have missed a new one
            for forwards in services.values():
                forwards.stop()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop every service's forwards at once: Ctrl-C must end `watch` within two seconds,
        and each pod watch may take up to a second to notice."""
        self._closed.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
        threads = [threading.Thread(target=f.stop, daemon=True, name=f"forward-stop:{name}")
                   for name, f in self.services.items()]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
