"""Live update takes the Docker API shortcut only for containers provably on devloop's engine;
on a node with its own engine the files go through the Kubernetes exec API."""

from __future__ import annotations

import uuid

import pytest

from devloop.deploy.delivery import RegistryDelivery
from devloop.k8s.cluster import connect, new_api_client
from devloop.live.updaters import DockerUpdater, ExecUpdater, Target
from tests.kube_standin.fixtures import wait_for
from tests.registry.test_node_engine import deployment

pytestmark = pytest.mark.docker


def running_target(handle, image: str) -> Target:
    ns = handle.create_namespace()
    handle.apps().create_namespaced_deployment(ns, deployment("app", image))
    core = handle.core()

    def ready():
        return [(p, s) for p in core.list_namespaced_pod(ns).items
                for s in p.status.container_statuses or [] if s.ready]

    pod, status = wait_for(ready, 90, what="a ready pod")[0]
    return Target(ns, pod.metadata.name, "main", status.container_id)


def test_shared_engine_pod_is_proven_and_a_node_engine_pod_is_not(
        busybox_image, docker_client, standin, node_standin, registry, tmp_path):
    devloop_engine = DockerUpdater(docker_client)
    shared = running_target(standin, busybox_image)
    assert devloop_engine.holds(shared)  # positive control: same engine, shortcut allowed

    local = f"dltest-{uuid.uuid4().hex[:6]}/proof:dl-1"
    docker_client.images.get(busybox_image).tag(local)
    try:
        ref = RegistryDelivery(registry.host).deliver(local)
    finally:
        docker_client.images.remove(local)
    remote = running_target(node_standin, ref)
    assert not devloop_engine.holds(remote)
    # a short ID or a name is never proof, even of a container that is here
    short = Target(shared.namespace, shared.pod, "main", shared.container_id[:21])
    assert not devloop_engine.holds(short)

    # the exec API reaches the node's container: the sync that replaces the shortcut
    conn = connect(node_standin.context, remote.namespace, str(node_standin.kubeconfig))
    src = tmp_path / "a.txt"
    src.write_text("synced over exec\n")
    result = ExecUpdater(lambda: new_api_client(conn)).update(
        remote, [(src, "/tmp/a.txt")], [], ["cat /tmp/a.txt"])
    assert result.files == 1
    node_container = node_standin.standin.docker().containers.get(
        remote.container_id.removeprefix("docker://"))
    assert node_container.exec_run(["cat", "/tmp/a.txt"]).output == b"synced over exec\n"
    conn.api_client.close()
