"""Patching one Deployment's image on the API stand-in (real HTTP, pods as Docker containers)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from devloop.deploy.patch import (
    DIGEST_ANNOTATION,
    DeploymentNotFound,
    PatchError,
    patch_image,
    read_deployed,
    warn_rwo_rolling,
)
from devloop.deploy.rollout import wait_rollout
from devloop.k8s.cluster import Cluster
from tests.k8s import support
from tests.kube_standin import StandIn


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
    assert read_deployed(cluster.apps, ns, "web", "web").annotation is None  # never patched

    generation = patch_image(cluster.apps, ns, "web", "web", test_images["ticker"], "dl-abc123")
    assert generation > first
    deployed = read_deployed(cluster.apps, ns, "web", "web")
    assert (deployed.image, deployed.annotation, deployed.generation) == (
        test_images["ticker"], "dl-abc123", generation)
    template = cluster.apps.read_namespaced_deployment("web", ns).spec.template
    assert template.metadata.annotations[DIGEST_ANNOTATION] == "dl-abc123"
    # The same image and digest again is not a change: no new generation, no new rollout.
    assert patch_image(cluster.apps, ns, "web", "web", test_images["ticker"],
                       "dl-abc123") == generation


def test_first_patch_wins_against_status_writes_right_after_create(
        standin: StandIn, cluster: Cluster, test_images: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A real Deployment controller writes a new Deployment's status several times in its
    first second, each write a new resourceVersion, and devloop's first patch comes right
    after the create, so its precondition can conflict (409) more than once. To make that
    race certain, the stand-in commits one such status write between devloop's read and each
    of its first three patches (a hook inside the stand-in; the HTTP path is the real one)."""
    ns = cluster.namespace
    cluster.apps.create_namespaced_deployment(ns, support.deployment("web",
                                                                     test_images["sleeper"]))
    api = standin.api
    assert api is not None
    deployments = standin.table.by_plural("deployments")
    original = api.patch
    raced: list[str] = []

    def status_write(obj: dict[str, Any]) -> dict[str, Any]:
        obj.setdefault("status", {})["collisionCount"] = len(raced)
        return obj

    def patch_after_a_status_write(res: Any, namespace: str, name: str, *args: Any,
                                   **kwargs: Any) -> Any:
        if (res.plural, namespace, name) == ("deployments", ns, "web") and len(raced) < 3:
            raced.append(name)
            api.store.update(deployments, namespace, name, status_write)
        return original(res, namespace, name, *args, **kwargs)

    monkeypatch.setattr(api, "patch", patch_after_a_status_write)
    generation = patch_image(cluster.apps, ns, "web", "web", test_images["ticker"], "d-1")
    assert len(raced) == 3
    dep = cluster.apps.read_namespaced_deployment("web", ns)
    assert [c.image for c in dep.spec.template.spec.containers] == [test_images["ticker"]]
    assert dep.metadata.annotations[DIGEST_ANNOTATION] == "d-1"
    assert dep.metadata.generation == generation == 2


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
