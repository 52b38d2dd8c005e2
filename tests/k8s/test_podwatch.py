"""PodWatch on the API stand-in: a restarted container shows up with its new ID, deleted pods
are reported gone, and stop() is prompt."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import docker

from devloop.k8s.cluster import Cluster, new_api_client
from devloop.k8s.pods import Pod
from devloop.k8s.podwatch import PodWatch
from tests.k8s import support


class Seen:
    """What a PodWatch reported, in order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pods: list[Pod] = []
        self.gone: list[Pod] = []
        self.errors: list[str] = []

    def on_pod(self, pod: Pod) -> None:
        with self.lock:
            self.pods.append(pod)

    def on_gone(self, pod: Pod) -> None:
        with self.lock:
            self.gone.append(pod)

    def on_error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)

    def ids_of(self, uid: str) -> list[str]:
        """The container IDs reported for pod `uid`, in order, without repeats."""
        with self.lock:
            ids = [p.running_id("web") for p in self.pods if p.uid == uid]
        return [i for n, i in enumerate(ids) if i and i not in ids[:n]]

    def gone_uids(self) -> set[str]:
        with self.lock:
            return {p.uid for p in self.gone}

    def uids(self) -> set[str]:
        with self.lock:
            return {p.uid for p in self.pods}


def wait(check: Callable[[], bool], timeout: float, what: str) -> float:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - began


def watch(cluster: Cluster, seen: Seen) -> PodWatch:
    return PodWatch(lambda: new_api_client(cluster), cluster.namespace, "app=web",
                    on_pod=seen.on_pod, on_gone=seen.on_gone, on_error=seen.on_error,
                    label="test watch", thread_name="podwatch-test")


def test_a_killed_container_comes_back_with_a_new_id_in_the_same_pod(
        cluster: Cluster, deploy: Callable[..., int], test_images: dict[str, str],
        docker_client: docker.DockerClient) -> None:
    deploy("web", test_images["sleeper"])
    (pod,) = support.pods_of(cluster.core, cluster.namespace, "web")
    uid, first = pod.metadata.uid, pod.status.container_statuses[0].container_id
    seen = Seen()
    pods = watch(cluster, seen)
    pods.start()
    try:
        wait(lambda: seen.ids_of(uid) == [first], 20, "the listed pod and its container")
        docker_client.containers.get(first.split("://", 1)[1]).kill()
        # the kubelet (stand-in) starts a new container in the same pod: a new ID
        wait(lambda: len(seen.ids_of(uid)) == 2, 30, "the restarted container's ID")
    finally:
        pods.stop()
    old, new = seen.ids_of(uid)
    assert (old, new != old) == (first, True)
    assert new.startswith("docker://")
    assert seen.gone == [] and seen.errors == []


def test_deleted_pod_is_reported_gone_and_its_replacement_seen(
        cluster: Cluster, deploy: Callable[..., int], test_images: dict[str, str]) -> None:
    deploy("web", test_images["sleeper"])
    (pod,) = support.pods_of(cluster.core, cluster.namespace, "web")
    seen = Seen()
    pods = watch(cluster, seen)
    pods.start()
    try:
        wait(lambda: pod.metadata.uid in seen.uids(), 20, "the listed pod")
        assert seen.gone_uids() == set()
        cluster.core.delete_namespaced_pod(pod.metadata.name, cluster.namespace)
        wait(lambda: pod.metadata.uid in seen.gone_uids(), 30, "the deleted pod to be gone")
        # positive control: the ReplicaSet's replacement arrives through the same watch
        wait(lambda: len(seen.uids()) == 2, 30, "the replacement pod")
    finally:
        began = time.monotonic()
        pods.stop()
        stop_took = time.monotonic() - began
    assert stop_took < 1.5
    assert not [t for t in threading.enumerate() if t.name == "podwatch-test"]
    assert seen.errors == []
