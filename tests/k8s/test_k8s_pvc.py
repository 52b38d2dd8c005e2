"""PVC safety: data written by the old pod is read by the new one after an image patch."""

from __future__ import annotations

import threading
from collections.abc import Callable

import docker

from devloop.deploy.patch import patch_image, warn_rwo_rolling
from devloop.deploy.rollout import wait_rollout
from devloop.k8s.cluster import Cluster
from tests.k8s import support


def exec_in(client: docker.DockerClient, pod: object, command: str) -> str:
    """Run a shell command in the pod's container (the stand-in runs pods as containers)."""
    result = client.containers.get(support.container_id(pod)).exec_run(["sh", "-c", command])
    assert result.exit_code == 0, result.output
    return result.output.decode()


def test_recreate_deployment_keeps_claim_data_across_a_patch(
        cluster: Cluster, deploy: Callable[..., int], test_images: dict[str, str],
        docker_client: docker.DockerClient) -> None:
    ns = cluster.namespace
    cluster.core.create_namespaced_persistent_volume_claim(ns, support.pvc("sqlite"))
    deploy("backend", test_images["sleeper"], claim="sqlite", strategy="Recreate")
    assert warn_rwo_rolling(cluster.apps, cluster.core, ns, "backend") is None
    (old,) = support.pods_of(cluster.core, ns, "backend")
    exec_in(docker_client, old, "echo 'todo: keep me' > /data/lumina.db")
    claim_before = cluster.core.read_namespaced_persistent_volume_claim("sqlite", ns)

    generation = patch_image(cluster.apps, ns, "backend", "backend", test_images["ticker"], "v2")
    result = wait_rollout(cluster.apps, cluster.core, ns, "backend", generation, 60,
                          threading.Event(), lambda _: None)
    assert result.ok, result

    (new,) = support.pods_of(cluster.core, ns, "backend")
    assert new.metadata.uid != old.metadata.uid
    assert exec_in(docker_client, new, "cat /data/lumina.db") == "todo: keep me\n"
    dep = cluster.apps.read_namespaced_deployment("backend", ns)
    volumes = dep.spec.template.spec.volumes
    assert [(v.name, v.persistent_volume_claim.claim_name) for v in volumes] == [("data", "sqlite")]
    claim_after = cluster.core.read_namespaced_persistent_volume_claim("sqlite", ns)
    assert claim_after.metadata.uid == claim_before.metadata.uid
    assert claim_after.spec == claim_before.spec
