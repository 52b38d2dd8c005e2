"""Patching one Deployment's image on the API stand-in (real HTTP, pods as Docker containers)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from devloop.cluster import Cluster
from devloop.patch import (
    DIGEST_ANNOTATION,
    DeploymentNotFound,
    PatchError,
    patch_image,
    read_deployed,
    warn_rwo_rolling,
)
from devloop.rollout import wait_rollout
from tests.k8s import support


def test_patch_changes_only_the_named_deployment(cluster: Cluster, deploy: Callable[..., int],
                                                 test_images: dict[str, str]) -> None:
    ns = cluster.namespace
    deploy("web", test_images["sleeper"])
    deploy("api", test_images["sleeper"])
    api_pods = {p.metadata.uid for p in support.pods_of(cluster.core, ns, "api")}
    web_before = {p.metadata.uid for p in support.pods_of(cluster.core, ns, "web")}
    api_generation = cluster.apps.read_namespaced_deployment("api", ns).metadata.generation

    generation = patch_image(cluster.apps, ns, "web", "web", test_images["ticker"], "sha-1")
    result = wait_rollout(cluster.apps, cluster.core, ns, "web", generation, 60,
                          threading.Event(), lambda _: None)
    assert result.ok, result

    web = cluster.apps.read_namespaced_deployment("web", ns)
    assert [c.image for c in web.spec.template.spec.containers] == [test_images["ticker"]]
    web_after = {p.metadata.uid for p in support.pods_of(cluster.core, ns, "web")}
    assert web_after and not web_after & web_before  # the patched service got a new pod
    api = cluster.apps.read_namespaced_deployment("api", ns)
    assert api.metadata.generation == api_generation
    assert api.spec.template.spec.containers[0].image == test_images["sleeper"]
    assert {p.metadata.uid for p in support.pods_of(cluster.core, ns, "api")} == api_pods


def test_deployed_digest_round_trips_through_the_annotation(
        cluster: Cluster, deploy: Callable[..., int], test_images: dict[str, str]) -> None:
    ns = cluster.namespace
    first = deploy("web", test_images["sleeper"])
    assert read_deployed(cluster.apps, ns, "web", "web").digest is None  # never patched

    generation = patch_image(cluster.apps, ns, "web", "web", test_images["ticker"], "dl-abc123")
    assert generation > first
    deployed = read_deployed(cluster.apps, ns, "web", "web")
    assert (deployed.image, deployed.digest, deployed.generation) == (
        test_images["ticker"], "dl-abc123", generation)
    template = cluster.apps.read_namespaced_deployment("web", ns).spec.template
    assert template.metadata.annotations[DIGEST_ANNOTATION] == "dl-abc123"
    # The same image and digest again is not a change: no new generation, no new rollout.
    assert patch_image(cluster.apps, ns, "web", "web", test_images["ticker"],
                       "dl-abc123") == generation


def test_wrong_container_name_fails_and_adds_nothing(cluster: Cluster, deploy: Callable[..., int],
                                                     test_images: dict[str, str]) -> None:
    ns = cluster.namespace
    generation = deploy("web", test_images["sleeper"])
    with pytest.raises(PatchError) as info:
        patch_image(cluster.apps, ns, "web", "backend", test_images["ticker"], "x")
    text = str(info.value)
    assert "\n" not in text
    assert f"deployment {ns}/web has no container 'backend' (containers: web)" in text
    dep = cluster.apps.read_namespaced_deployment("web", ns)
    assert [c.name for c in dep.spec.template.spec.containers] == ["web"]
    assert dep.metadata.generation == generation
    with pytest.raises(PatchError, match="has no container 'backend'"):
        read_deployed(cluster.apps, ns, "web", "backend")


def test_missing_deployment_is_named(cluster: Cluster) -> None:
    with pytest.raises(DeploymentNotFound,
                       match=f"deployment {cluster.namespace}/backend not found"):
        read_deployed(cluster.apps, cluster.namespace, "backend", "backend")
    with pytest.raises(PatchError, match=f"deployment {cluster.namespace}/backend not found"):
        patch_image(cluster.apps, cluster.namespace, "backend", "backend", "img:1", "d")


def test_rolling_update_with_a_read_write_once_claim_is_warned(
        cluster: Cluster, deploy: Callable[..., int], test_images: dict[str, str]) -> None:
    ns = cluster.namespace
    cluster.core.create_namespaced_persistent_volume_claim(ns, support.pvc("db"))
    deploy("rolling", test_images["sleeper"], claim="db")
    deploy("recreate", test_images["sleeper"], claim="db", strategy="Recreate")
    deploy("plain", test_images["sleeper"])
    warning = warn_rwo_rolling(cluster.apps, cluster.core, ns, "rolling")
    assert warning is not None
    assert f"deployment {ns}/rolling uses RollingUpdate" in warning and "Recreate" in warning
    assert "ReadWriteOnce claim db" in warning
    assert warn_rwo_rolling(cluster.apps, cluster.core, ns, "recreate") is None
    assert warn_rwo_rolling(cluster.apps, cluster.core, ns, "plain") is None
