"""Port forwards (issue 13) with real `devloop watch` processes on the stand-in cluster.

Pods run on Docker network `none`, so the only way in is the Kubernetes API's port-forward:
an answer on 127.0.0.1 proves the forward works. Each service is busybox `httpd` serving
/app/index.html; a change to it (live update off) builds a new image and a new pod, so the
page's content says which pod answered.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from kubernetes import client as k8s

from tests.conftest import busybox_context
from tests.kube_standin.fixtures import wait_for
from tests.ports import free_port
from tests.watchproc import Watch

NS = "lumina"
HTTPD = '["/bin/httpd","-f","-p","{port}","-h","/app"]'
ROLLING = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def make_web(standin, root: Path, name: str, image_prefix: str, forwards: str,
             port: int = 8080, strategy: dict | None = None) -> None:
    """A service `name` (httpd on `port`, RollingUpdate unless `strategy`, readiness on the
    port) and its Deployment; `forwards` is its port_forwards YAML value."""
    busybox_context(root / "services" / name, {"src/index.html": f"{name} v1\n"},
                    cmd=HTTPD.format(port=port))
    config = root / "devloop.yaml"
    if not config.exists():
        config.write_text(f"version: 1\nnamespace: {NS}\nrollout_timeout_s: 90\n"
                          "quiet_period_ms: 50\nservices:\n")
        standin.create_namespace(NS)
    with config.open("a") as handle:
        handle.write(f"  {name}:\n    context: services/{name}\n    image: {image_prefix}-{name}\n"
                     f"    live_update: false\n    port_forwards: {forwards}\n")
    container = {"name": name, "image": "none:none",
                 "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1}}
    standin.apps().create_namespaced_deployment(NS, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "strategy": strategy or ROLLING,
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [container]}}}})


def get(port: int, timeout: float = 5) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=timeout) as r:
        return r.read().decode()


def pods(standin, app: str) -> list[k8s.V1Pod]:
    return standin.core().list_namespaced_pod(NS, label_selector=f"app={app}").items


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "repo"


def test_the_app_answers_through_the_forward_and_a_reload_moves_it(standin, root,
                                                                    image_prefix):
    port = free_port()
    make_web(standin, root, "web", image_prefix, f'["{port}:8080"]')
    watch = Watch(root, standin.kubeconfig)
    try:
        ready = watch.wait("forward.ready", timeout=180, service="web")
        first = ready["pod"]
        assert ready["url"] == f"http://127.0.0.1:{port}" and ready["remote_port"] == 8080
        assert wait_for(lambda: _answer(port), 30, what="page through the forward") == "web v1\n"
        # a connection to the old pod, open across the reload (like a browser's keep-alive)
        held = socket.create_connection(("127.0.0.1", port), timeout=10)

        mark = watch.mark()
        (root / "services/web/src/index.html").write_text("web v2\n")
        moved = watch.wait("forward.moved", after=mark, timeout=180, service="web")
        assert moved["previous"] == first and moved["pod"] != first
        assert moved["local_port"] == port
        # every connection after the move reaches the new pod, none hangs
        answers = {get(port) for _ in range(20)}
        assert answers == {"web v2\n"}
        # the connection to the old pod was closed at the move, not left talking to it
        assert b"web v1" not in _request_on(held)
        # the old pod was still there when the forward moved (RollingUpdate): it was skipped
        # because the new one was Ready, not because the old one was gone
        assert moved["pod"] in {p.metadata.name for p in pods(standin, "web")}
        watch.wait("rollout.ready", after=mark, timeout=60, service="web")
    finally:
        assert watch.stop() in (0, 130)
    assert [e for e in watch.events if e.get("type") == "forward.failed"] == []
    schema = json.loads(resources.files("devloop").joinpath("schemas/event-v1.json").read_text())
    for event in watch.events:
        if str(event.get("type")).startswith("forward."):
            jsonschema.validate(event, schema)


def _request_on(sock: socket.socket) -> bytes:
    """What a request on an already open connection gets back (b"" when it was closed)."""
    reply = b""
    try:
        sock.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        while chunk := sock.recv(4096):
            reply += chunk
    except OSError:
        pass
    finally:
        sock.close()
    return reply


def _answer(port: int, timeout: float = 3) -> str | None:
    try:
        return get(port, timeout=timeout)
    except OSError:
        return None


def test_a_port_in_use_is_one_line_naming_it_and_the_other_services_keep_working(
        standin, root, image_prefix):
    taken, free = free_port(), free_port()
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", taken))
    holder.listen(1)
    make_web(standin, root, "busy", image_prefix, f"[{{port: '{taken}:8080'}}]")
    make_web(standin, root, "web", image_prefix, f'["{free}:8080"]')
    watch = Watch(root, standin.kubeconfig)
    try:
        failed = watch.wait("forward.failed", timeout=120, service="busy")
        message = failed["message"]
        assert "\n" not in message and failed["local_port"] == taken
        assert f"127.0.0.1:{taken}" in message and "already in use" in message
        assert f"pid {os.getpid()}" in message, message  # the test process holds it
        # the rest of devloop keeps running: the other forward serves, both services deploy
        watch.wait("forward.ready", timeout=180, service="web")
        assert wait_for(lambda: _answer(free), 30, what="the other service") == "web v1\n"
        watch.wait("rollout.ready", timeout=120, service="busy")
        assert watch.proc.poll() is None
        assert [e for e in watch.events if e.get("type") == "forward.ready"
                and e.get("service") == "busy"] == []
    finally:
        holder.close()
        assert watch.stop() in (0, 130)


def test_during_a_recreate_gap_new_connections_wait_for_the_new_pod_and_never_hang(
        standin, root, image_prefix):
    """Recreate stops the old pod before the new one starts: a request made in between waits
    for the new pod (or is closed after 10 s), it never hangs."""
    port = free_port()
    make_web(standin, root, "web", image_prefix, f"['{port}:8080']",
             strategy={"type": "Recreate"})
    watch = Watch(root, standin.kubeconfig)
    try:
        watch.wait("forward.ready", timeout=180, service="web")
        assert wait_for(lambda: _answer(port), 30, what="page") == "web v1\n"
        mark = watch.mark()
        (root / "services/web/src/index.html").write_text("web v2\n")
        watch.wait("deploy.patched", after=mark, timeout=120, service="web")
        answers, slowest = [], 0.0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "web v2\n" not in answers:
            began = time.monotonic()
            answers.append(_answer(port, timeout=20))
            slowest = max(slowest, time.monotonic() - began)
        assert answers[-1] == "web v2\n", answers
        assert slowest < 15, slowest  # waiting for the new pod, bounded by 10 s
        moved = watch.wait("forward.moved", after=mark, timeout=30, service="web")
        assert moved["local_port"] == port
    finally:
        watch.stop()


@pytest.fixture
def host_standin(standin_factory):
    return standin_factory(pod_network="host")


def test_a_pod_on_this_machines_network_serves_its_port_itself(host_standin, root,
                                                                image_prefix):
    """Host networking (scripts/dev's stand-in): the pod listens on the forwarded port of this
    machine; devloop must not take that port first, and says the app is there directly."""
    port, other = free_port(), free_port()
    make_web(host_standin, root, "web", image_prefix, f"[{port}, '{other}:{port}']", port=port)
    watch = Watch(root, host_standin.kubeconfig)
    try:
        direct = watch.wait("forward.ready", timeout=180, service="web", local_port=port)
        assert direct["direct"] is True
        # the pod owns the port (it would have crashed had devloop bound it first)
        watch.wait("rollout.ready", timeout=120, service="web")
        assert _answer(port) == "web v1\n"
        # positive control: a different local port is still a real forward to the pod
        forwarded = watch.wait("forward.ready", timeout=30, service="web", local_port=other)
        assert "direct" not in forwarded
        assert wait_for(lambda: _answer(other), 30, what="forwarded page") == "web v1\n"
        assert [e for e in watch.events if e.get("type") == "forward.failed"] == []
    finally:
        watch.stop()


def test_a_changed_forward_in_devloop_yaml_moves_to_the_new_port_during_watch(standin, root,
                                                                            image_prefix):
    old, new, other = free_port(), free_port(), free_port()
    make_web(standin, root, "web", image_prefix, f"['{old}:8080']")
    make_web(standin, root, "api", image_prefix, f"['{other}:8080']")
    watch = Watch(root, standin.kubeconfig)
    try:
        for service in ("web", "api"):
            watch.wait("forward.ready", timeout=180, service=service)
        assert wait_for(lambda: _answer(old), 30, what="page on the old port") == "web v1\n"
        mark = watch.mark()
        config = root / "devloop.yaml"
        config.write_text(config.read_text().replace(f"'{old}:8080'", f"'{new}:8080'"))
        stopped = watch.wait("forward.stopped", after=mark, timeout=60, service="web")
        assert stopped["local_port"] == old and "devloop.yaml" in stopped["reason"]
        ready = watch.wait("forward.ready", after=mark, timeout=60, service="web")
        assert ready["local_port"] == new
        assert wait_for(lambda: _answer(new), 30, what="page on the new port") == "web v1\n"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", old), timeout=5).close()
        # the other service's forward was not touched: same port, never restarted, serving
        assert _answer(other) == "api v1\n"
        assert [e for e in watch.since(mark, "forward.stopped") if e["service"] == "api"] == []
        assert [e for e in watch.since(mark, "forward.ready") if e["service"] == "api"] == []
        # dropping the forward closes the port and says so
        mark = watch.mark()
        config.write_text(config.read_text().replace(f"['{new}:8080']", "[]"))
        gone = watch.wait("forward.stopped", after=mark, timeout=60, service="web")
        assert gone["local_port"] == new and "no port_forwards" in gone["reason"]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", new), timeout=5).close()
        assert watch.proc.poll() is None
    finally:
        assert watch.stop() in (0, 130)
