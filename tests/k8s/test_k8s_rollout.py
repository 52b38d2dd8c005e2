"""Waiting for rollouts on the API stand-in: success, early failures, deadlines, cancellation."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devloop.deploy.patch import patch_image
from devloop.deploy.rollout import RolloutResult, wait_rollout
from devloop.k8s.cluster import Cluster, ClusterUnreachable
from devloop.manifests.apply import create_if_missing
from tests.k8s import support
from tests.kube_standin import StandIn


def roll(cluster: Cluster, name: str, image: str, timeout: float = 60,
         stop: threading.Event | None = None) -> tuple[RolloutResult, list[str], float]:
    progress: list[str] = []
    generation = patch_image(cluster.apps, cluster.namespace, name, name, image, image)
    began = time.monotonic()
    result = wait_rollout(cluster.apps, cluster.core, cluster.namespace, name, generation,
                          timeout, stop or threading.Event(), progress.append, poll=0.2)
    return result, progress, time.monotonic() - began


def test_good_image_rolls_out_and_progress_is_reported_on_change_only(
        cluster: Cluster, deploy: Callable[..., int], test_images: dict[str, str]) -> None:
    deploy("web", test_images["sleeper"])
    result, progress, _ = roll(cluster, "web", test_images["ticker"])
    assert result.ok and result.reason == "Complete", result
    assert progress, "no progress was reported during the rollout"
    assert all(a != b for a, b in itertools.pairwise(progress))


def test_crashing_image_fails_early_with_its_last_log_lines(
        cluster: Cluster, deploy: Callable[..., int], test_images: dict[str, str]) -> None:
    deploy("web", test_images["sleeper"])
    result, _, took = roll(cluster, "web", test_images["crash"], timeout=90)
    assert not result.ok
    assert result.reason in ("CrashLoopBackOff", "Error"), result
    assert took < 45, f"crash was detected only after {took:.0f}s"
    assert result.pod and result.pod.startswith("web-")
    assert f"pod {result.pod} container web" in result.message
    assert "fatal: cannot load settings (exit 3)" in result.log_tail
    assert "\n" not in result.message


def test_missing_image_fails_early_with_err_image_never_pull(
        cluster: Cluster, deploy: Callable[..., int], test_images: dict[str, str]) -> None:
    deploy("web", test_images["sleeper"])
    result, _, took = roll(cluster, "web", test_images["missing"], timeout=90)
    assert not result.ok
    assert result.reason in ("ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff"), result
    assert took < 30
    assert result.pod and result.pod in result.message


def test_next_good_image_recovers_after_a_crash(
        cluster: Cluster, deploy: Callable[..., int], test_images: dict[str, str]) -> None:
    deploy("web", test_images["sleeper"])
    crashed, _, _ = roll(cluster, "web", test_images["crash"], timeout=90)
    assert not crashed.ok
    # The crashing pods of the previous revision must not fail the next rollout.
    result, _, _ = roll(cluster, "web", test_images["ticker"], timeout=90)
    assert result.ok, result


def test_timeout_is_honoured(cluster: Cluster, deploy: Callable[..., int],
                             test_images: dict[str, str]) -> None:
    # minReadySeconds keeps the new pod "not available" long after it runs fine.
    deploy("web", test_images["sleeper"])
    cluster.apps.patch_namespaced_deployment("web", cluster.namespace,
                                             {"spec": {"minReadySeconds": 300}})
    result, _, took = roll(cluster, "web", test_images["ticker"], timeout=2)
    assert not result.ok and result.reason == "Timeout", result
    assert 2 <= took < 6
    assert f"deployment {cluster.namespace}/web not rolled out after 2s" in result.message


def test_progress_deadline_exceeded_fails(cluster: Cluster, deploy: Callable[..., int],
                                          test_images: dict[str, str]) -> None:
    deploy("web", test_images["sleeper"])
    cluster.apps.patch_namespaced_deployment(
        "web", cluster.namespace, {"spec": {"minReadySeconds": 300, "progressDeadlineSeconds": 1}})
    result, _, took = roll(cluster, "web", test_images["ticker"], timeout=60)
    assert not result.ok and result.reason == "ProgressDeadlineExceeded", result
    assert took < 30


def test_stop_event_ends_the_wait_promptly(cluster: Cluster, deploy: Callable[..., int],
                                           test_images: dict[str, str]) -> None:
    deploy("web", test_images["sleeper"])
    cluster.apps.patch_namespaced_deployment("web", cluster.namespace,
                                             {"spec": {"minReadySeconds": 300}})
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    result, _, took = roll(cluster, "web", test_images["ticker"], timeout=60, stop=stop)
    assert result.reason == "Cancelled"
    assert took < 2


def test_deleted_deployment_is_reported(cluster: Cluster) -> None:
    result = wait_rollout(cluster.apps, cluster.core, cluster.namespace, "gone", 1, 5,
                          threading.Event(), lambda _: None)
    assert (result.ok, result.reason) == (False, "NotFound")
    assert f"deployment {cluster.namespace}/gone not found" in result.message


def test_wait_survives_an_api_server_outage(own_standin: StandIn, tmp_path: Path,
                                            test_images: dict[str, str]) -> None:
    cluster = support.plain_http_cluster(own_standin, tmp_path)
    cluster.apps.create_namespaced_deployment(cluster.namespace,
                                              support.deployment("web", test_images["sleeper"]))
    assert wait_rollout(cluster.apps, cluster.core, cluster.namespace, "web", 1, 60,
                        threading.Event(), lambda _: None).ok
    generation = patch_image(cluster.apps, cluster.namespace, "web", "web",
                             test_images["ticker"], "v2")
    own_standin.stop(keep_pods=True)
    progress: list[str] = []
    restart = threading.Timer(1.5, own_standin.start)
    restart.start()
    try:
        result = wait_rollout(cluster.apps, cluster.core, cluster.namespace, "web", generation,
                              60, threading.Event(), progress.append, poll=0.2)
    finally:
        restart.join()
    assert result.ok, result
    assert any("API server unreachable" in p for p in progress), progress


def test_an_api_server_that_stays_away_is_reported_as_unreachable(
        own_standin: StandIn, tmp_path: Path, test_images: dict[str, str]) -> None:
    cluster = support.plain_http_cluster(own_standin, tmp_path)
    cluster.apps.create_namespaced_deployment(cluster.namespace,
                                              support.deployment("web", test_images["sleeper"]))
    own_standin.stop(keep_pods=True)
    try:
        result = wait_rollout(cluster.apps, cluster.core, cluster.namespace, "web", 1, 1.5,
                              threading.Event(), lambda _: None, poll=0.2)
        with pytest.raises(ClusterUnreachable) as patching:
            patch_image(cluster.apps, cluster.namespace, "web", "web", "img:2", "d2")
        with pytest.raises(ClusterUnreachable):
            claim = support.pvc("data")
            claim["metadata"]["namespace"] = cluster.namespace
            create_if_missing(cluster.api_client, claim)
    finally:
        own_standin.start()
    assert (result.ok, result.reason) == (False, "ClusterUnreachable")
    assert "Connection refused" in result.message and "\n" not in result.message
    text = str(patching.value)
    assert cluster.server in text and "Connection refused" in text and "\n" not in text
