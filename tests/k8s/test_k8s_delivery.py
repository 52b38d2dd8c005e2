"""Image delivery detection and the commands each delivery runs.

minikube, kind and k3d cannot run on this machine (no nested clusters, no network), so their
commands go through a fake `run` that records the command line and answers like the real tool
would (outputs copied from the tools' documented behaviour). Detection by node labels reads
real Node objects from the API stand-in; the registry delivery uses the real Docker Engine.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from devloop.deploy.delivery import (
    DeliveryError,
    KindDelivery,
    MinikubeDelivery,
    RegistryDelivery,
    SharedDaemon,
    detect_delivery,
    registry_ref,
)
from devloop.k8s.cluster import connect
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
