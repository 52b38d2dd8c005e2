"""Image delivery detection and the commands each delivery runs.

minikube, kind and k3d cannot run on this machine (no nested clusters, no network), so their
commands go through a fake `run` that records the command line and answers like the real tool
would (outputs copied from the tools' documented behaviour). Detection by node labels reads
real Node objects from the API stand-in; the registry delivery uses the real Docker Engine.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
from devloop.k8s.cluster import Cluster, connect
from tests.kube_standin import StandIn


@dataclass
class FakeRun:
    """Stands in for subprocess.run for tools that cannot run here; records every command.

    `answers` maps a word of the command line (the tool or a subcommand) to its outcome;
    commands with no answer succeed silently."""

    answers: dict[str, subprocess.CompletedProcess[str] | Exception] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)

    def __call__(self, args: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(args))
        answer = next((a for word, a in self.answers.items() if word in args),
                      subprocess.CompletedProcess(args, 0, "", ""))
        if isinstance(answer, Exception):
            raise answer
        return answer


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


@pytest.mark.docker
def test_registry_push_failure_is_one_line(busybox_image: str) -> None:
    # Nothing listens on this loopback port, so the push fails like an unreachable registry.
    delivery = RegistryDelivery("127.0.0.1:9/devloop-test")
    with pytest.raises(DeliveryError) as info:
        delivery.deliver(busybox_image)
    text = str(info.value)
    assert "\n" not in text
    assert "registry 127.0.0.1:9 is unreachable" in text and "default_repo" in text
    import docker

    client = docker.from_env()
    try:  # the registry is probed first: nothing was tagged for a push that cannot happen
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(registry_ref("127.0.0.1:9/devloop-test", busybox_image))
    finally:
        client.close()


@pytest.fixture
def extra_node(standin: StandIn) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Adds Node objects to the stand-in (as a minikube/kind/k3d cluster would have them)."""
    conn = connect(StandIn.context, "default", str(standin.kubeconfig))
    added: list[str] = []

    def add(metadata_and_spec: dict[str, Any]) -> None:
        conn.core.create_node({"apiVersion": "v1", "kind": "Node", **metadata_and_spec})
        added.append(metadata_and_spec["metadata"]["name"])

    yield add
    for name in added:
        conn.core.delete_node(name)


def test_node_labels_identify_a_minikube_profile_behind_any_context_name(
        standin: StandIn, extra_node: Callable[[dict[str, Any]], None]) -> None:
    cluster = connect(StandIn.context, "lumina", str(standin.kubeconfig))
    assert isinstance(detect_delivery(cluster, None, None, run=FakeRun()), SharedDaemon)
    extra_node({"metadata": {"name": "dev", "labels": {"minikube.k8s.io/name": "dev",
                                                       "kubernetes.io/hostname": "dev"}}})
    delivery = detect_delivery(cluster, None, None, run=FakeRun())
    assert isinstance(delivery, MinikubeDelivery) and delivery.profile == "dev"


def test_node_provider_id_identifies_a_kind_cluster(
        standin: StandIn, extra_node: Callable[[dict[str, Any]], None]) -> None:
    cluster = connect(StandIn.context, "lumina", str(standin.kubeconfig))
    extra_node({"metadata": {"name": "blue-control-plane"},
                "spec": {"providerID": "kind://docker/blue/blue-control-plane"}})
    delivery = detect_delivery(cluster, None, None, run=FakeRun())
    assert isinstance(delivery, KindDelivery) and delivery.cluster_name == "blue"
