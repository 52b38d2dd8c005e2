"""Image delivery detection and the commands each delivery runs, without a cluster or Docker.

minikube, kind and k3d cannot run on this machine (no nested clusters, no network), so their
commands go through a fake `run` that records the command line and answers like the real tool
would (outputs copied from the tools' documented behaviour). The tests that read Node objects
from the stand-in or push to a registry are in tests/k8s/test_k8s_delivery.py."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from typing import Any

import pytest
from kubernetes import client as k8s

from devloop.deploy.delivery import (
    DeliveryCancelled,
    DeliveryError,
    K3dDelivery,
    KindDelivery,
    MinikubeDelivery,
    RegistryDelivery,
    SharedDaemon,
    detect_delivery,
    registry_ref,
    run_command,
)
from devloop.k8s.cluster import Cluster
from tests.k8s.test_k8s_delivery import FakeRun


def cluster_named(context: str) -> Cluster:
    # No API calls are made for these contexts: detection by name needs no network.
    return Cluster(api_client=k8s.ApiClient(), context=context, server="https://127.0.0.1:1",
                   namespace="lumina")


def detect(context: str, run: FakeRun, override: str | None = None,
           default_repo: str | None = None):
    return detect_delivery(cluster_named(context), override, default_repo, run=run,
                           probe_nodes=False)


def test_kind_context_loads_the_image_into_the_named_cluster() -> None:
    run = FakeRun()
    delivery = detect("kind-dev", run)
    assert isinstance(delivery, KindDelivery)
    assert delivery.docker_environment() is None
    assert delivery.deliver("lumina-backend:abc123") == "lumina-backend:abc123"
    assert run.calls == [["kind", "load", "docker-image", "lumina-backend:abc123", "--name", "dev"]]


def test_k3d_context_imports_the_image_into_the_named_cluster() -> None:
    run = FakeRun()
    delivery = detect("k3d-my-cluster", run)
    assert isinstance(delivery, K3dDelivery)
    assert delivery.deliver("lumina-chatbot:ff00") == "lumina-chatbot:ff00"
    assert run.calls == [["k3d", "image", "import", "lumina-chatbot:ff00", "-c", "my-cluster"]]


def test_minikube_builds_inside_its_daemon_and_delivery_is_a_no_op() -> None:
    env = {"DOCKER_TLS_VERIFY": "1", "DOCKER_HOST": "tcp://127.0.0.1:32770",
           "DOCKER_CERT_PATH": "/home/u/.minikube/certs", "MINIKUBE_ACTIVE_DOCKERD": "minikube"}
    run = FakeRun({"minikube": subprocess.CompletedProcess([], 0, json.dumps(env), "")})
    delivery = detect("minikube", run)
    assert isinstance(delivery, MinikubeDelivery)
    assert delivery.docker_environment() == env
    assert delivery.deliver("lumina-frontend:1") == "lumina-frontend:1"
    assert run.calls == [["minikube", "-p", "minikube", "docker-env", "-o", "json"]]


def test_minikube_with_containerd_falls_back_to_image_load() -> None:
    refused = ('X Exiting due to MK_USAGE: The docker-env command is only compatible with the'
               ' "docker" runtime, but this cluster was configured to use the "containerd"'
               ' runtime.')
    run = FakeRun({"docker-env": subprocess.CompletedProcess([], 14, "", refused)})
    delivery = detect("minikube", run)
    assert delivery.docker_environment() is None
    delivery.deliver("lumina-backend:9")
    assert run.calls[-1] == ["minikube", "-p", "minikube", "image", "load", "lumina-backend:9"]


def test_override_wins_over_the_context_name() -> None:
    run = FakeRun()
    assert isinstance(detect("kind-dev", run, override="docker"), SharedDaemon)
    assert detect("dev", run, override="kind").cluster_name == "dev"
    assert detect("dev", run, override="minikube").profile == "dev"
    with pytest.raises(ValueError, match="delivery 'podman' is unknown"):
        detect("dev", run, override="podman")
    with pytest.raises(ValueError, match="default_repo"):
        detect("dev", run, override="registry")


def test_shared_daemon_for_docker_desktop_and_unknown_contexts() -> None:
    for context in ("docker-desktop", "standin", "rancher-desktop"):
        delivery = detect(context, FakeRun())
        assert isinstance(delivery, SharedDaemon)
        assert delivery.docker_environment() is None
        assert delivery.deliver("img:1") == "img:1"


def test_default_repo_selects_registry_push() -> None:
    delivery = detect("gke_prod", FakeRun(), default_repo="localhost:5000/team")
    assert isinstance(delivery, RegistryDelivery)
    assert registry_ref("localhost:5000/team", "lumina-backend:abc") == (
        "localhost:5000/team/lumina-backend:abc")
    assert registry_ref("r.example/x/", "ghcr.io/me/lumina:1") == "r.example/x/me/lumina:1"


def test_missing_tool_names_it_and_how_to_install() -> None:
    run = FakeRun({"kind": FileNotFoundError(2, "No such file or directory", "kind")})
    with pytest.raises(DeliveryError) as info:
        detect("kind-dev", run).deliver("img:1")
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("kind is not installed")
    assert "kind.sigs.k8s.io" in text


def test_failed_command_reports_it_with_its_stderr_tail() -> None:
    stderr = "Image: \"img:1\" with ID \"sha256:1\" not yet present on node\nERROR: no nodes found"
    run = FakeRun({"k3d": subprocess.CompletedProcess([], 1, "", stderr)})
    with pytest.raises(DeliveryError) as info:
        detect("k3d-dev", run).deliver("img:1")
    text = str(info.value)
    assert "\n" not in text
    assert "`k3d image import img:1 -c dev` failed (exit 1)" in text
    assert "no nodes found" in text


def test_run_command_is_stopped_by_the_event_and_reports_missing_programs() -> None:
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    began = time.monotonic()
    done = run_command(["sleep", "30"], stop=stop)
    assert time.monotonic() - began < 3
    assert done.returncode != 0
    with pytest.raises(FileNotFoundError):
        run_command(["devloop-no-such-tool-xyz"])
    assert run_command(["sh", "-c", "echo out; echo err >&2"]).stdout == "out\n"


def test_a_stopped_delivery_raises_cancelled() -> None:
    stop = threading.Event()

    def slow(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        kwargs["stop"].set()  # the user pressed Ctrl-C while the tool ran
        return subprocess.CompletedProcess(args, -9, "", "")

    with pytest.raises(DeliveryCancelled):
        KindDelivery("dev", run=slow).deliver("img:1", stop=stop)
