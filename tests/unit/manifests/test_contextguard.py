"""contextguard: deploy only to a context known to be local or allowed by name. Pure."""

from __future__ import annotations

import pytest

from devloop.deploy.contextguard import is_loopback_server, refusal, shares_docker


@pytest.mark.parametrize("context", [
    "kind-dev", "kind", "minikube", "minikube-2", "k3d-mine", "docker-desktop",
    "docker-for-desktop", "rancher-desktop", "orbstack", "colima", "colima-x", "microk8s",
    "microk8s-cluster"])
def test_known_local_names_are_allowed_whatever_the_server(context):
    assert refusal(context, "https://10.0.0.1:6443", ()) is None


@pytest.mark.parametrize("server", ["https://127.0.0.1:6443", "https://localhost:16443",
                                    "https://[::1]:6443", "http://127.0.0.5"])
def test_a_loopback_api_server_is_local(server):
    assert is_loopback_server(server)
    assert refusal("prod-eu", server, ()) is None


@pytest.mark.parametrize("server", ["https://10.0.0.1:6443", "https://api.example.com",
                                    "https://localhost.example.com:443", "https://0.0.0.0:6443"])
def test_a_remote_looking_context_is_refused_in_one_line_naming_it_and_allow_contexts(server):
    text = refusal("prod-eu", server, ())
    assert text is not None and "\n" not in text
    assert "'prod-eu'" in text and "allow_contexts" in text


def test_allow_contexts_lets_a_named_context_through():
    assert refusal("team-dev", "https://api.example.com", ("team-dev",)) is None
    assert refusal("team-prod", "https://api.example.com", ("team-dev",)) is not None


def test_only_clusters_that_can_run_local_images_share_the_engine():
    assert shares_docker("kind-dev", "https://10.0.0.1")
    assert shares_docker("docker-desktop", "https://kubernetes.docker.internal:6443")
    assert shares_docker("anything", "https://127.0.0.1:6443")
    assert not shares_docker("team-dev", "https://api.example.com")
