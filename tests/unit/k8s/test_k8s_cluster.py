"""Connecting through a kube context, and the one-line error when the API cannot be used."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from devloop.k8s.cluster import ClusterUnreachable, check_reachable, connect, new_api_client
from tests.ports import free_port


def write_kubeconfig(path: Path, servers: dict[str, str], current: str | None) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": s}} for n, s in servers.items()],
        "users": [{"name": "dev", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": n, "context": {"cluster": n, "user": "dev"}} for n in servers],
        **({"current-context": current} if current else {}),
    }))
    return path


def test_connect_resolves_current_and_named_contexts_without_network(tmp_path: Path) -> None:
    # Port 9 on loopback: nothing listens, so any network call here would fail the test.
    cfg = write_kubeconfig(tmp_path / "config", {"one": "http://127.0.0.1:9",
                                                 "two": "http://127.0.0.1:10"}, "one")
    cluster = connect(None, "lumina", str(cfg))
    assert (cluster.context, cluster.server, cluster.namespace) == (
        "one", "http://127.0.0.1:9", "lumina")
    other = connect("two", "apps", str(cfg))
    assert other.server == "http://127.0.0.1:10"
    assert other.api_client is not cluster.api_client
    assert cluster.core.api_client is cluster.api_client
    assert cluster.apps.api_client is cluster.api_client
    fresh = new_api_client(cluster)
    assert fresh is not cluster.api_client
    assert fresh.configuration.host == cluster.server


def test_connect_names_the_missing_context_and_kubeconfig(tmp_path: Path) -> None:
    cfg = write_kubeconfig(tmp_path / "config", {"one": "http://127.0.0.1:9"}, None)
    with pytest.raises(ValueError, match=r"kube context 'kind-dev' is not in .*config "
                                         r"\(contexts: one\)"):
        connect("kind-dev", "lumina", str(cfg))
    with pytest.raises(ValueError, match="has no current context"):
        connect(None, "lumina", str(cfg))
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match=f"kubeconfig {missing} does not exist"):
        connect(None, "lumina", str(missing))


def test_kubeconfig_env_is_used_when_no_path_is_given(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write_kubeconfig(tmp_path / "config", {"envctx": "http://127.0.0.1:9"}, "envctx")
    monkeypatch.setenv("KUBECONFIG", str(cfg))
    assert connect(None, "lumina").context == "envctx"


def test_unreachable_server_is_one_line_naming_context_and_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    cfg = write_kubeconfig(tmp_path / "config", {"minikube": url}, "minikube")
    cluster = connect(None, "lumina", str(cfg))
    with pytest.raises(ClusterUnreachable) as info:
        check_reachable(cluster, timeout=2)
    text = str(info.value)
    assert "\n" not in text
    assert "context 'minikube'" in text
    assert url in text
    assert "kubectl --context minikube cluster-info" in text
    assert "Connection refused" in text


class _Rejecting(BaseHTTPRequestHandler):
    """An API server that rejects the token, as one does when it has expired."""

    def do_GET(self) -> None:
        body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def rejecting_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Rejecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_rejected_credentials_say_the_token_may_have_expired(tmp_path: Path,
                                                             rejecting_server: str) -> None:
    cfg = write_kubeconfig(tmp_path / "config", {"prod": rejecting_server}, "prod")
    with pytest.raises(ClusterUnreachable) as info:
        check_reachable(connect(None, "lumina", str(cfg)))
    text = str(info.value)
    assert "\n" not in text
    assert info.value.status == 401
    assert "context 'prod'" in text and rejecting_server in text
    assert "HTTP 401" in text and "may have expired" in text
