"""The workload view: every kind's pods of the current template and its rollout rule
(kubectl's `rollout status` per kind), on the API's JSON; no cluster needed."""

from __future__ import annotations

import pytest

from devloop.k8s.pods import Pod, pod_view
from devloop.k8s.workloads import (
    Workload,
    WorkloadError,
    WorkloadRef,
    fresh_copy,
    rollout_progress,
)


def _template(image: str = "app:1", init: str | None = None) -> dict:
    spec: dict = {"containers": [{"name": "app", "image": image}]}
    if init:
        spec["initContainers"] = [{"name": "migrate", "image": init}]
    return {"metadata": {"labels": {"app": "web"}}, "spec": spec}


def _pod(name: str = "p", image: str = "app:1", labels: dict | None = None, **meta) -> Pod:
    return pod_view({"metadata": {"name": name, "labels": labels or {"app": "web"}, **meta},
                     "spec": {"containers": [{"name": "app", "image": image}]}})


def test_workload_refs_name_any_workload_kind_and_default_to_a_deployment() -> None:
    assert str(WorkloadRef.parse("statefulset/db")) == "statefulset/db"
    assert WorkloadRef.parse("StatefulSets/db").kind.kind == "StatefulSet"
    assert WorkloadRef.parse("web").kind.kind == "Deployment"
    assert WorkloadRef.parse("cronjob/nightly").kind.template == (
        "spec", "jobTemplate", "spec", "template")
    with pytest.raises(WorkloadError, match="'configmap' is not a workload kind"):
        WorkloadRef.parse("configmap/x")
    with pytest.raises(WorkloadError, match="has no name"):
        WorkloadRef.parse("job/")


def test_template_containers_and_images_for_each_kind() -> None:
    cron = Workload({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
                     "spec": {"jobTemplate": {"spec": {"template": _template("a:2", "b:1")}}}})
    assert cron.container_names() == ["migrate", "app"]
    assert cron.template_image("migrate") == "b:1" and cron.template_image("nope") is None
    assert cron.selector_query == "app=web"  # a CronJob has no selector: its template's labels
    pod = Workload({"apiVersion": "v1", "kind": "Pod", "spec": _template("a:3")["spec"],
                    "metadata": {"name": "solo", "labels": {"app": "web"}}})
    assert pod.template_image("app") == "a:3"
    assert pod.is_current(_pod("solo")) and not pod.is_current(_pod("other"))


def test_current_pods_statefulset_by_update_revision() -> None:
    sts = Workload({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
                    "spec": {"selector": {"matchLabels": {"app": "web"}},
                             "template": _template("app:2")},
                    "status": {"updateRevision": "db-2", "currentRevision": "db-1"}})
    assert sts.selector_query == "app=web"
    new = _pod("db-0", "app:2", {"app": "web", "controller-revision-hash": "db-2"})
    old = _pod("db-1", "app:1", {"app": "web", "controller-revision-hash": "db-1"})
    assert sts.is_current(new) and not sts.is_current(old)
    assert not sts.is_current(_pod("db-0", "app:2",
                                   {"app": "web", "controller-revision-hash": "db-2"},
                                   deletionTimestamp="2026-01-01T00:00:00Z"))


def test_current_pods_daemonset_by_template_generation_else_by_images() -> None:
    ds = Workload({"apiVersion": "apps/v1", "kind": "DaemonSet",
                   "metadata": {"name": "agent", "generation": 3},
                   "spec": {"selector": {"matchLabels": {"app": "web"}},
                            "template": _template("app:3")}})
    assert ds.is_current(_pod(labels={"app": "web", "pod-template-generation": "3"}, image="x"))
    assert not ds.is_current(_pod(labels={"app": "web", "pod-template-generation": "2"},
                                  image="app:3"))
    assert ds.is_current(_pod(image="app:3")) and not ds.is_current(_pod(image="app:2"))


def test_current_pods_job_by_its_uid() -> None:
    job = Workload({"apiVersion": "batch/v1", "kind": "Job",
                    "metadata": {"name": "seed", "uid": "u-2"},
                    "spec": {"template": _template()}})
    mine = _pod(labels={"app": "web", "batch.kubernetes.io/controller-uid": "u-2"})
    owned = _pod(ownerReferences=[{"uid": "u-2", "kind": "Job"}])
    earlier = _pod(labels={"app": "web", "controller-uid": "u-1"})
    assert job.is_current(mine) and job.is_current(owned) and not job.is_current(earlier)


@pytest.mark.parametrize(("obj", "done", "text"), [
    ({"kind": "StatefulSet", "metadata": {"generation": 2}, "spec": {"replicas": 2},
      "status": {"observedGeneration": 1}}, False, "observe generation 2"),
    ({"kind": "StatefulSet", "metadata": {"generation": 2}, "spec": {"replicas": 2},
      "status": {"observedGeneration": 2, "readyReplicas": 1}}, False, "1 of 2 pods ready"),
    ({"kind": "StatefulSet", "metadata": {"generation": 2}, "spec": {"replicas": 2},
      "status": {"observedGeneration": 2, "readyReplicas": 2, "updatedReplicas": 1,
                 "updateRevision": "b", "currentRevision": "a"}}, False, "1 of 2 pods updated"),
    ({"kind": "StatefulSet", "metadata": {"generation": 2}, "spec": {"replicas": 2},
      "status": {"observedGeneration": 2, "readyReplicas": 2, "updatedReplicas": 2,
                 "updateRevision": "b", "currentRevision": "b"}}, True, "updated and ready"),
    ({"kind": "StatefulSet", "metadata": {"generation": 2}, "spec": {
        "replicas": 3, "updateStrategy": {"rollingUpdate": {"partition": 2}}},
      "status": {"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 1,
                 "updateRevision": "b", "currentRevision": "a"}}, True, "partition 2"),
    ({"kind": "DaemonSet", "metadata": {"generation": 1},
      "status": {"observedGeneration": 1, "desiredNumberScheduled": 2,
                 "updatedNumberScheduled": 1}}, False, "1 of 2 updated pods scheduled"),
    ({"kind": "DaemonSet", "metadata": {"generation": 1},
      "status": {"observedGeneration": 1, "desiredNumberScheduled": 2,
                 "updatedNumberScheduled": 2, "numberAvailable": 1}}, False, "1 of 2 updated"),
    ({"kind": "DaemonSet", "metadata": {"generation": 1},
      "status": {"observedGeneration": 1, "desiredNumberScheduled": 2,
                 "updatedNumberScheduled": 2, "numberAvailable": 2}}, True, "available"),
    ({"kind": "Job", "metadata": {"name": "j"}, "status": {"active": 1}}, False, "1 active"),
    ({"kind": "Job", "metadata": {"name": "j"}, "status": {"succeeded": 1, "conditions": [
        {"type": "Complete", "status": "True"}]}}, True, "completed"),
    ({"kind": "CronJob", "metadata": {"name": "c"}}, True, "next run"),
    ({"kind": "Pod", "metadata": {"name": "p"}, "status": {"phase": "Running"}}, False,
     "not ready"),
    ({"kind": "Pod", "metadata": {"name": "p"}, "status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True"}]}}, True, "Running"),
])
def test_rollout_rule_per_kind(obj: dict, done: bool, text: str) -> None:
    progress = rollout_progress(obj, 0)
    assert (progress.done, progress.failed) == (done, None)
    assert text in progress.text


def test_a_failed_job_is_a_failed_rollout_with_its_reason() -> None:
    progress = rollout_progress({"kind": "Job", "metadata": {"name": "j"}, "status": {
        "failed": 3, "conditions": [{"type": "Failed", "status": "True",
                                     "reason": "BackoffLimitExceeded",
                                     "message": "Job has reached the specified backoff limit"}]}})
    assert not progress.done and progress.failed.startswith("BackoffLimitExceeded: Job has")


def test_a_job_created_again_drops_what_the_api_server_generated() -> None:
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "seed", "uid": "u", "resourceVersion": "7", "labels": {"a": "b"},
                        "managedFields": [{}]},
           "spec": {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                    "template": {"metadata": {"labels": {
                        "app": "web", "controller-uid": "u", "job-name": "seed",
                        "batch.kubernetes.io/controller-uid": "u",
                        "batch.kubernetes.io/job-name": "seed"}}, "spec": {}}},
           "status": {"succeeded": 1}}
    out = fresh_copy(job)
    assert out["metadata"] == {"name": "seed", "labels": {"a": "b"}}
    assert "selector" not in out["spec"] and "status" not in out
    assert out["spec"]["template"]["metadata"]["labels"] == {"app": "web"}
    assert job["metadata"]["uid"] == "u"  # the input is not changed
