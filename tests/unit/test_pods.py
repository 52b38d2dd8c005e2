"""The one pod view (devloop.k8s.pods), the one timeout policy and the one kind table, read from
plain JSON: what the rollout wait, status, logs, forwards and live update see of a pod."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from kubernetes import client as k8s

from devloop.commands import down
from devloop.k8s import timeouts
from devloop.k8s.kinds import client_method, find_kind
from devloop.k8s.pods import pod_view, split_container_id

CRASHING = {
    "metadata": {"name": "api-1", "namespace": "ns", "uid": "u1",
                 "creationTimestamp": "2026-01-02T03:04:05Z",
                 "labels": {"app": "api"}, "annotations": {"note": "x"},
                 "ownerReferences": [{"uid": "rs-1", "kind": "ReplicaSet"}]},
    "spec": {"securityContext": {"runAsUser": 1000},
             "initContainers": [{"name": "migrate", "image": "api:2"}],
             "containers": [
                 {"name": "app", "image": "api:2", "readinessProbe": {"httpGet": {}},
                  "volumeMounts": [{"mountPath": "/data"}]},
                 {"name": "side", "image": "side:1", "securityContext": {"runAsUser": 0}}]},
    "status": {
        "phase": "Running", "podIP": "10.0.0.7",
        "conditions": [{"type": "Ready", "status": "False"}],
        "initContainerStatuses": [
            {"name": "migrate", "ready": False, "restartCount": 0, "image": "api:2",
             "containerID": "containerd://i0",
             "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
        "containerStatuses": [
            {"name": "app", "ready": False, "restartCount": 3, "image": "api:2",
             "containerID": "docker://c3",
             "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
             "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}}},
            {"name": "side", "ready": True, "restartCount": 1, "image": "side:1",
             "containerID": "docker://s1",
             "state": {"running": {"startedAt": "2026-01-02T03:05:00Z"}}}]}}


def test_a_pods_containers_read_once_from_its_status() -> None:
    pod = pod_view(CRASHING)
    assert [c.name for c in pod.containers] == ["migrate", "app", "side"]
    assert [c.name for c in pod.main] == ["app", "side"]
    app = pod.status("app")
    assert app is not None and app.waiting == "CrashLoopBackOff"
    assert app.waiting_message == "back-off" and app.last_exit_code == 2
    assert app.started and not app.running and app.restarts == 3
    side = pod.status("side")
    assert side is not None and side.running
    assert side.running_since == datetime(2026, 1, 2, 3, 5, tzinfo=UTC)
    assert pod.status("migrate") is None  # an init container is not a main container
    assert pod.reason == "CrashLoopBackOff" and pod.restarts == 4 and not pod.ready
    assert pod.probed == frozenset({"app"}) and pod.owners == frozenset({"rs-1"})
    assert pod.row() == {"name": "api-1", "phase": "Running", "ready": False, "restarts": 4,
                         "reason": "CrashLoopBackOff", "image": "api:2",
                         "created": "2026-01-02T03:04:05+00:00"}


def test_a_failed_container_without_a_reason_reads_error_and_a_clean_exit_keeps_its_own() -> None:
    def term(exit_code: int, reason: str | None) -> str | None:
        state = {"terminated": {"exitCode": exit_code, **({"reason": reason} if reason else {})}}
        pod = pod_view({"status": {"containerStatuses": [{"name": "a", "state": state}]}})
        return pod.main[0].terminated

    assert term(1, None) == "Error"
    assert term(137, "OOMKilled") == "OOMKilled"
    assert term(0, "Completed") == "Completed"
    assert term(0, None) is None


def test_the_running_container_is_the_instance_running_now() -> None:
    pod = pod_view(CRASHING)
    assert pod.running_id("side") == "docker://s1"
    assert pod.running_id("app") == ""  # crash-looping: its ID names an instance that ended
    assert pod.running_id("migrate") == "" and pod.running_id("nope") == ""
    assert pod.running_ids() == {"side": "docker://s1"}
    starting = pod_view({"status": {"containerStatuses": [
        {"name": "new", "state": {"waiting": {"reason": "ContainerCreating"}}}]}})
    assert starting.running_ids() == {} and not starting.main[0].started
    assert pod_view({"metadata": {}}).running_ids() == {}


@pytest.mark.parametrize(("text", "parts"), [
    ("docker://" + "a" * 64, ("docker", "a" * 64)),
    ("containerd://abc", ("containerd", "abc")),
    ("cri-o://x", ("cri-o", "x")),
    ("abc", ("", "abc")),
    ("", ("", "")),
])
def test_container_ids_name_their_runtime(text: str, parts: tuple[str, str]) -> None:
    assert split_container_id(text) == parts


def test_specs_serving_and_final() -> None:
    pod = pod_view(CRASHING)
    app, side = pod.spec("app"), pod.spec("side")
    assert app is not None and app.mounts == ("/data",) and app.run_as_user == 1000
    assert side is not None and side.run_as_user == 0  # the container's own wins
    assert pod.image("app") == "api:2" and pod.spec("migrate") is None
    assert pod.pod_ip == "10.0.0.7" and not pod.serving and not pod.final
    ready = {**CRASHING, "status": {**CRASHING["status"],
                                    "conditions": [{"type": "Ready", "status": "True"}]}}
    assert pod_view(ready).serving
    leaving = {**ready, "metadata": {**CRASHING["metadata"],
                                     "deletionTimestamp": "2026-01-02T03:06:00Z"}}
    assert pod_view(leaving).deleting and not pod_view(leaving).serving
    assert pod_view(leaving).final
    assert pod_view({"status": {"phase": "Succeeded"}}).final
    assert pod_view({}).phase == "Pending" and pod_view({}).created is None


def test_one_timeout_policy() -> None:
    assert timeouts.REQUEST == (5, 15) and timeouts.BULK == (5, 30)
    assert timeouts.QUICK == (5, 10)
    assert timeouts.watch(30) == (5, 35) and timeouts.stream(42) == (5, 42)


@pytest.mark.parametrize("kind", [*down.DELETE_ORDER, "PersistentVolumeClaim", "Namespace"])
def test_down_finds_every_kind_it_touches_in_the_one_kind_table(kind: str) -> None:
    entry = find_kind(kind)
    assert entry is not None
    api_client = k8s.ApiClient()
    for verb in ("read", "list", "delete"):
        method = client_method(api_client, entry, verb)
        assert method.__name__ == (f"{verb}_namespaced_{entry.snake}" if entry.namespaced
                                   else f"{verb}_{entry.snake}")
