"""The context guard, end to end: devloop refuses a remote-looking context before any request.

The remote cluster cannot run here, so its DNS name is pointed at a local listener that records
every connection (socket.getaddrinfo is redirected for that one name in this process); nothing
is ever sent to a non-loopback address.
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devloop import cli

REMOTE = "api.prod.example.test"


@pytest.fixture
def listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, list[str]]]:
    """A local listener standing in for the remote API server; `REMOTE` resolves to it."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    connections: list[str] = []

    def accept() -> None:
        while True:
            try:
                conn, peer = server.accept()
            except OSError:
                return
            connections.append(f"{peer[0]}:{peer[1]}")
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host == REMOTE:
            return real("127.0.0.1", port, *args[1:], **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield port, connections
    for sig, handler in old.items():
        signal.signal(sig, handler)
    server.close()


def _project(root: Path, port: int, extra: str = "") -> Path:
    (root / "svc").mkdir(parents=True)
    (root / "svc/Dockerfile").write_text("FROM scratch\n")
    (root / "k8s.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    kubeconfig = root / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "prod",
        "clusters": [{"name": "prod", "cluster": {"server": f"https://{REMOTE}:{port}",
                                                   "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t0ken-not-real"}}],
        "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "u"}}]}))
    (root / "devloop.yaml").write_text(
        f"version: 1\nnamespace: app\nkubeconfig: kubeconfig\nmanifests: [k8s.yaml]\n{extra}"
        "services:\n  web: {context: svc, image: web}\n")
    return root / "devloop.yaml"


def _run(config: Path, *args: str) -> tuple[int, list[dict]]:
    out = io.StringIO()
    with contextlib.redirect_stderr(io.StringIO()):
        code = cli.main(["sync", "-o", "json", "-f", str(config), *args], stdout=out)
    return code, [json.loads(line) for line in out.getvalue().splitlines() if line]


def test_a_remote_context_exits_2_before_any_request_naming_it_and_allow_contexts(
        tmp_path, listener):
    port, connections = listener
    code, events = _run(_project(tmp_path, port))
    assert code == 2
    errors = [e["message"] for e in events if e["type"] == "error"]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert "'prod'" in errors[0] and "allow_contexts" in errors[0]
    assert connections == []  # not one connection was opened


def test_an_allowed_remote_context_is_used_but_needs_a_registry(tmp_path, listener):
    port, connections = listener
    code, events = _run(_project(tmp_path, port, "allow_contexts: [prod]\n"))
    assert connections  # positive control: this time devloop did talk to the "cluster"
    assert code == 2
    errors = [e["message"] for e in events if e["type"] == "error"]
    assert any("default_repo" in m and "'prod'" in m for m in errors), errors


def test_the_stand_ins_loopback_context_is_never_refused(tmp_path, listener):
    port, connections = listener
    config = _project(tmp_path, port)
    text = config.read_text().replace("kubeconfig: kubeconfig\n", "kubeconfig: local\n")
    (tmp_path / "local").write_text((tmp_path / "kubeconfig").read_text().replace(
        f"https://{REMOTE}:{port}", "https://127.0.0.1:9"))  # nothing listens there
    config.write_text(text)
    code, events = _run(config)
    assert code == 4  # unreachable (port 9), not refused: a loopback server is local
    assert not any("allow_contexts" in (e.get("message") or "") for e in events)
    assert connections == []
