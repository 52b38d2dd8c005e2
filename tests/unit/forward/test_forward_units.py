"""port_forwards in devloop.yaml, the choice of the target pod and the port holder's name:
the parts of port forwarding that need no cluster."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from devloop.config.loader import ConfigError, PortForward, load_config
from devloop.follow.forwards import choose_target, port_holder
from devloop.k8s.pods import Pod, pod_view


def _write(root: Path, forwards: str, second: str = "") -> Path:
    for name in ("web", "api"):
        (root / f"services/{name}").mkdir(parents=True, exist_ok=True)
        (root / f"services/{name}/Dockerfile").write_text("FROM scratch\n")
    path = root / "devloop.yaml"
    path.write_text(
        "version: 1\nservices:\n  web:\n    context: services/web\n    image: web\n"
        f"    port_forwards: {forwards}\n"
        "  api:\n    context: services/api\n    image: api\n"
        + (f"    port_forwards: {second}\n" if second else ""))
    return path


def test_port_forwards_forms_load_with_the_loopback_default(tmp_path):
    config = load_config(_write(tmp_path, '[3000, "8080:8000", {port: "9000:90", address: '
                                          '0.0.0.0}, {port: 7000, address: "::1"}]'))
    assert config.services["web"].port_forwards == (
        PortForward(3000, 3000, "127.0.0.1"), PortForward(8080, 8000, "127.0.0.1"),
        PortForward(9000, 90, "0.0.0.0"), PortForward(7000, 7000, "::1"))
    assert config.services["api"].port_forwards == ()


def test_port_forward_mistakes_are_reported_with_line_and_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = ('[70000, "a:b", "1:2:3", {port: 1, adress: x}, {address: 127.0.0.1},'
            ' {port: 2, address: localhost}, 3000, 3000]')
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text, second="[3000]"))
    key = "services.web.port_forwards"
    assert [str(p) for p in info.value.problems] == [
        f"devloop.yaml:6: {key}[0]: '70000' is not PORT or LOCAL:REMOTE (ports 1-65535)",
        f"devloop.yaml:6: {key}[1]: 'a:b' is not PORT or LOCAL:REMOTE (ports 1-65535)",
        f"devloop.yaml:6: {key}[2]: '1:2:3' is not PORT or LOCAL:REMOTE (ports 1-65535)",
        f"devloop.yaml:6: {key}[3].adress: unknown key (did you mean 'address'?)",
        f"devloop.yaml:6: {key}[4].port: is required (LOCAL:REMOTE or one port)",
        f"devloop.yaml:6: {key}[5].address: 'localhost' is not an IP address"
        " (e.g. 127.0.0.1 or 0.0.0.0)",
        f"devloop.yaml:6: {key}[7]: local port 3000 is forwarded twice",
        "devloop.yaml:3: services.api.port_forwards: local port 3000 is already forwarded for"
        " service web",
    ]
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, "[3000]", second='["3000:80"]'))
    assert [str(p) for p in info.value.problems] == [
        "devloop.yaml:3: services.api.port_forwards: local port 3000 is already forwarded for"
        " service web"]


def _pod(name: str, image: str, ready: bool = True, deleting: bool = False,
         created: str = "2026-01-01T00:00:00Z") -> Pod:
    meta = {"name": name, "uid": name, "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    return pod_view({"metadata": meta,
                     "spec": {"containers": [{"name": "web", "image": image}]},
                     "status": {"conditions": [{"type": "Ready", "status": str(ready)}]}})


def test_the_target_is_a_ready_pod_of_the_current_revision():
    old, new = _pod("old", "web:1"), _pod("new", "web:2", created="2026-01-01T00:00:05Z")
    # the new revision is Ready: move to it
    assert choose_target([old, new], "web", "web:2", current="old") == "new"
    # not Ready yet: keep serving from the old pod (RollingUpdate)
    assert choose_target([old, _pod("new", "web:2", ready=False)], "web", "web:2", "old") == "old"
    # an old pod is never chosen afresh, nor a pod being deleted
    assert choose_target([old], "web", "web:2", current=None) is None
    assert choose_target([_pod("new", "web:2", deleting=True)], "web", "web:2", "new") is None
    # among several current pods: keep the one in use, else the newest
    other = _pod("other", "web:2", created="2026-01-01T00:00:09Z")
    assert choose_target([new, other], "web", "web:2", current="new") == "new"
    assert choose_target([new, other], "web", "web:2", current=None) == "other"


def test_the_process_holding_a_port_is_named():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        name = Path("/proc/self/comm").read_text().strip()
        assert port_holder(port) == f"pid {os.getpid()} ({name})"
    # positive control for "nobody": the same port once closed
    assert port_holder(port) is None
