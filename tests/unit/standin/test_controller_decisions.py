"""What the StatefulSet, DaemonSet and Job controllers decide from the state they see: each test
plays the kubelet by hand (pod phases and readiness written straight into the store, no Docker)
and checks the next step, the way the real controllers' unit tests do."""

from __future__ import annotations

import pytest

from tests.kube_standin.api import Api
from tests.kube_standin.daemonset_controller import DaemonSetController
from tests.kube_standin.job_controller import JobController
from tests.kube_standin.resources import ResourceTable
from tests.kube_standin.schema import Schemas
from tests.kube_standin.statefulset_controller import StatefulSetController
from tests.kube_standin.store import Store

CONTAINER = {"name": "c", "image": "busybox"}


@pytest.fixture
def api() -> Api:
    table = ResourceTable()
    api = Api(Store(), table, Schemas())
    api.create(table.by_plural("namespaces"), "", {"metadata": {"name": "ns"}})
    api.create(table.by_plural("nodes"), "", {"metadata": {"name": "node-1"}})
    return api


def pods(api: Api) -> dict[str, dict]:
    return {p["metadata"]["name"]: p for p in api.store.list("pods", "ns")[0]}


def kubelet(api: Api, name: str, phase: str = "Running", ready: bool = True) -> None:
    def write(pod: dict) -> dict:
        pod["status"] = {"phase": phase, "conditions": [
            {"type": "Ready", "status": "True" if ready else "False",
             "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        return pod

    api.store.update(api.table.by_plural("pods"), "ns", name, write)


def revision_of(pod: dict) -> str:
    return pod["metadata"]["labels"]["controller-revision-hash"]


def statefulset(api: Api, replicas: int = 3, **spec: object) -> None:
    api.create(api.table.by_plural("statefulsets"), "ns", {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"replicas": replicas, "serviceName": "db",
                 "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}},
                              "spec": {"containers": [CONTAINER]}},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                     "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}], **spec}})


def change_template(api: Api, plural: str, name: str, **spec: object) -> None:
    def write(obj: dict) -> dict:
        obj["spec"]["template"]["metadata"]["annotations"] = {"rev": "2"}
        obj["spec"].update(spec)
        return obj

    api.store.update(api.table.by_plural(plural), "ns", name, write)


def test_statefulset_creates_each_ordinal_only_once_the_previous_is_ready(api):
    statefulset(api)
    control = StatefulSetController(api)
    control.reconcile()
    control.reconcile()
    assert list(pods(api)) == ["db-0"]
    kubelet(api, "db-0", ready=False)
    control.reconcile()
    assert list(pods(api)) == ["db-0"]  # running is not enough
    kubelet(api, "db-0")
    control.reconcile()
    assert sorted(pods(api)) == ["db-0", "db-1"]
    claims = {c["metadata"]["name"] for c in api.store.list("persistentvolumeclaims", "ns")[0]}
    assert claims == {"data-db-0", "data-db-1"}


def test_statefulset_parallel_policy_creates_all_at_once(api):
    statefulset(api, podManagementPolicy="Parallel")
    StatefulSetController(api).reconcile()
    assert sorted(pods(api)) == ["db-0", "db-1", "db-2"]


def test_statefulset_rolls_from_the_top_down_to_the_partition_one_at_a_time(api):
    statefulset(api, updateStrategy={"type": "RollingUpdate",
                                     "rollingUpdate": {"partition": 1}})
    control = StatefulSetController(api)
    for name in ("db-0", "db-1", "db-2"):
        control.reconcile()
        kubelet(api, name)
    control.reconcile()
    old = revision_of(pods(api)["db-0"])
    change_template(api, "statefulsets", "db")
    control.reconcile()
    assert sorted(pods(api)) == ["db-0", "db-1"]  # db-2 went first
    control.reconcile()
    assert revision_of(pods(api)["db-2"]) != old
    control.reconcile()
    assert "db-1" in pods(api)  # waits for db-2 to be ready
    kubelet(api, "db-2")
    control.reconcile()
    assert sorted(pods(api)) == ["db-0", "db-2"]
    control.reconcile()
    kubelet(api, "db-1")
    control.reconcile()
    control.reconcile()
    assert revision_of(pods(api)["db-0"]) == old  # below the partition: untouched
    status = api.store.get("statefulsets", "ns", "db")["status"]
    assert status["updatedReplicas"] == 2 and status["currentRevision"] == old
    assert status["updateRevision"] == revision_of(pods(api)["db-1"]) != old


def test_statefulset_on_delete_waits_and_scale_down_removes_the_highest_first(api):
    statefulset(api, updateStrategy={"type": "OnDelete"})
    control = StatefulSetController(api)
    for name in ("db-0", "db-1", "db-2"):
        control.reconcile()
        kubelet(api, name)
    old = revision_of(pods(api)["db-2"])
    change_template(api, "statefulsets", "db", replicas=1)
    control.reconcile()
    assert sorted(pods(api)) == ["db-0", "db-1"]
    control.reconcile()
    assert sorted(pods(api)) == ["db-0"]
    assert revision_of(pods(api)["db-0"]) == old  # OnDelete: not replaced
    claims = {c["metadata"]["name"] for c in api.store.list("persistentvolumeclaims", "ns")[0]}
    assert claims == {"data-db-0", "data-db-1", "data-db-2"}  # never deleted


def test_daemonset_binds_one_pod_to_each_node_and_replaces_a_stale_one(api):
    api.create(api.table.by_plural("daemonsets"), "ns", {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "a"}},
                 "template": {"metadata": {"labels": {"app": "a"}},
                              "spec": {"containers": [CONTAINER]}}}})
    control = DaemonSetController(api)
    control.reconcile()
    control.reconcile()
    (name, pod), = pods(api).items()
    assert pod["spec"]["nodeName"] == "node-1"
    kubelet(api, name)
    control.reconcile()
    status = api.store.get("daemonsets", "ns", "agent")["status"]
    assert status["desiredNumberScheduled"] == status["numberAvailable"] == 1
    change_template(api, "daemonsets", "agent")
    control.reconcile()
    control.reconcile()
    assert list(pods(api)) != [name] and len(pods(api)) == 1


def job(api: Api, **spec: object) -> None:
    api.create(api.table.by_plural("jobs"), "ns", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [CONTAINER]}},
                 **spec}})


def conditions(api: Api) -> list[str]:
    status = api.store.get("jobs", "ns", "j")["status"]
    return [c["type"] for c in status.get("conditions") or []]


def test_job_keeps_parallelism_pods_until_completions_succeeded(api):
    job(api, parallelism=2, completions=3)
    control = JobController(api)
    control.reconcile()
    first = sorted(pods(api))
    assert len(first) == 2
    made = api.store.get("jobs", "ns", "j")  # the API selects the Job's own pods by its uid
    uid = made["metadata"]["uid"]
    assert made["spec"]["selector"] == {
        "matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert {pods(api)[first[0]]["metadata"]["labels"][k] for k in
            ("batch.kubernetes.io/controller-uid", "controller-uid")} == {uid}
    assert pods(api)[first[0]]["metadata"]["labels"]["job-name"] == "j"
    kubelet(api, first[0], "Succeeded", ready=False)
    control.reconcile()
    assert len(pods(api)) == 3
    for name in pods(api):
        kubelet(api, name, "Succeeded", ready=False)
    control.reconcile()
    assert conditions(api) == ["SuccessCriteriaMet", "Complete"]
    assert api.store.get("jobs", "ns", "j")["status"]["succeeded"] == 3
    control.reconcile()
    assert len(pods(api)) == 3  # nothing more once complete


def test_job_fails_past_its_backoff_limit(api):
    job(api, backoffLimit=1)
    control = JobController(api)
    control.reconcile()
    (first,) = pods(api)
    kubelet(api, first, "Failed", ready=False)
    control.reconcile()
    assert conditions(api) == []  # one retry left
    (retry,) = [name for name in pods(api) if name != first]
    kubelet(api, retry, "Failed", ready=False)
    control.reconcile()
    assert conditions(api) == ["FailureTarget", "Failed"]
    assert api.store.get("jobs", "ns", "j")["status"]["failed"] == 2
    control.reconcile()
    assert len(pods(api)) == 2  # no third try


def test_a_suspended_job_has_no_pods_until_resumed(api):
    job(api, parallelism=2, completions=2, suspend=True)
    control = JobController(api)
    control.reconcile()
    assert pods(api) == {}

    def suspend(value: bool) -> None:
        def write(obj: dict) -> dict:
            obj["spec"]["suspend"] = value
            return obj

        api.store.update(api.table.by_plural("jobs"), "ns", "j", write)

    suspend(False)
    control.reconcile()
    assert len(pods(api)) == 2  # positive control: resumed, it runs
    suspend(True)
    control.reconcile()
    assert pods(api) == {}
