"""StatefulSet, DaemonSet, Job and CronJob controllers: real pods (Docker containers) driven
through the real `kubernetes` client, read the way kubectl's rollout status and wait read them."""

from __future__ import annotations

import time

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.kube_standin.fixtures import wait_for
from tests.standin.clis import run, tool

pytestmark = pytest.mark.docker


def template(name: str, image: str, command: str, restart: str = "Always",
             env: dict[str, str] | None = None, mounts: list | None = None) -> dict:
    container: dict = {"name": "main", "image": image, "imagePullPolicy": "Never",
                       "command": ["sh", "-c", command],
                       "env": [{"name": k, "value": v} for k, v in (env or {}).items()]}
    if mounts:
        container["volumeMounts"] = mounts
    if restart == "Always":
        container["readinessProbe"] = {"exec": {"command": ["true"]}, "periodSeconds": 1}
    return {"metadata": {"labels": {"app": name}},
            "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 1,
                     "containers": [container]}}


def statefulset(image: str, version: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
            "spec": {"replicas": 2, "serviceName": "db",
                     "selector": {"matchLabels": {"app": "db"}},
                     "template": template("db", image, "exec sleep 3600", env={"V": version},
                                          mounts=[{"name": "data", "mountPath": "/data"}]),
                     "volumeClaimTemplates": [{
                         "metadata": {"name": "data"},
                         "spec": {"accessModes": ["ReadWriteOnce"],
                                  "resources": {"requests": {"storage": "1Gi"}}}}]}}


def job(name: str, image: str, command: str, **spec: object) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": template(name, image, command, restart="Never"), **spec}}


def sts_rolled_out(apps: client.AppsV1Api, ns: str, version: str) -> bool:
    sts = apps.read_namespaced_stateful_set("db", ns)
    s = sts.status
    pods = client.CoreV1Api(apps.api_client).list_namespaced_pod(ns, label_selector="app=db")
    versions = {p.spec.containers[0].env[0].value for p in pods.items}
    return bool(s.observed_generation == sts.metadata.generation and s.ready_replicas == 2
                and s.updated_replicas == 2 and s.current_revision == s.update_revision
                and versions == {version})


def test_statefulset_ordered_pods_claims_that_outlive_them_and_a_rolling_update(
        standin, busybox_image):
    ns = standin.create_namespace()
    apps, core = standin.apps(), standin.core()
    apps.create_namespaced_stateful_set(ns, statefulset(busybox_image, "1"))
    wait_for(lambda: sts_rolled_out(apps, ns, "1"), 90, what="db-0 and db-1 ready")
    pods = {p.metadata.name: p for p in core.list_namespaced_pod(ns).items}
    assert set(pods) == {"db-0", "db-1"}
    ready_0 = next(c.last_transition_time for c in pods["db-0"].status.conditions
                   if c.type == "Ready")
    assert pods["db-1"].metadata.creation_timestamp >= ready_0  # OrderedReady
    assert pods["db-1"].spec.hostname == "db-1" and pods["db-1"].spec.subdomain == "db"
    claims = {c.metadata.name: c.metadata.uid
              for c in core.list_namespaced_persistent_volume_claim(ns).items}
    assert set(claims) == {"data-db-0", "data-db-1"}
    assert pods["db-0"].spec.volumes[0].persistent_volume_claim.claim_name == "data-db-0"

    before = apps.read_namespaced_stateful_set("db", ns).status.update_revision
    apps.patch_namespaced_stateful_set("db", ns, {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "env": [{"name": "V", "value": "2"}]}]}}}})
    wait_for(lambda: sts_rolled_out(apps, ns, "2"), 120, what="the rolling update")
    out = run(standin, tool("kubectl"), "rollout", "status", "statefulset/db", "-n", ns,
              "--timeout=30s")
    assert "partitioned roll out complete" in out or "rolling update complete" in out
    assert apps.read_namespaced_stateful_set("db", ns).status.update_revision != before
    assert {c.metadata.name: c.metadata.uid
            for c in core.list_namespaced_persistent_volume_claim(ns).items} == claims

    apps.delete_namespaced_stateful_set("db", ns)
    wait_for(lambda: not core.list_namespaced_pod(ns).items, 60, what="pods collected")
    assert {c.metadata.name for c in core.list_namespaced_persistent_volume_claim(ns).items} \
        == set(claims)  # claims are never deleted with the set


def test_daemonset_runs_one_pod_on_the_node_and_replaces_it_on_a_template_change(
        standin, busybox_image):
    ns = standin.create_namespace()
    apps, core = standin.apps(), standin.core()
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
          "spec": {"selector": {"matchLabels": {"app": "agent"}},
                   "template": template("agent", busybox_image, "exec sleep 3600",
                                        env={"V": "1"})}}
    apps.create_namespaced_daemon_set(ns, ds)

    def rolled(version: str) -> bool:
        d = apps.read_namespaced_daemon_set("agent", ns)
        s = d.status
        pods = core.list_namespaced_pod(ns).items
        return bool(s.observed_generation == d.metadata.generation
                    and s.desired_number_scheduled == 1 and s.updated_number_scheduled == 1
                    and s.number_available == 1 and len(pods) == 1
                    and pods[0].spec.containers[0].env[0].value == version)

    wait_for(lambda: rolled("1"), 60, what="the daemon pod")
    (pod,) = core.list_namespaced_pod(ns).items
    assert pod.spec.node_name == "devloop-standin"
    apps.patch_namespaced_daemon_set("agent", ns, {"spec": {"template": {"spec": {
        "containers": [{"name": "main", "env": [{"name": "V", "value": "2"}]}]}}}})
    wait_for(lambda: rolled("2"), 60, what="the daemon pod replaced")
    out = run(standin, tool("kubectl"), "rollout", "status", "daemonset/agent", "-n", ns,
              "--timeout=30s")
    assert "successfully rolled out" in out


def test_job_runs_to_completion_or_fails_past_its_backoff_limit(standin, busybox_image):
    ns = standin.create_namespace()
    batch = client.BatchV1Api(standin.api_client())
    batch.create_namespaced_job(ns, job("ok", busybox_image, "exit 0", completions=2))
    batch.create_namespaced_job(ns, job("bad", busybox_image, "exit 3", backoffLimit=1))

    def condition(name: str) -> str | None:
        s = batch.read_namespaced_job_status(name, ns).status
        return next((c.type for c in s.conditions or [] if c.type in ("Complete", "Failed")),
                    None)

    wait_for(lambda: condition("ok") and condition("bad"), 90, what="both Jobs finished")
    kubectl = tool("kubectl")
    run(standin, kubectl, "wait", "--for=condition=complete", "job/ok", "-n", ns, "--timeout=5s")
    run(standin, kubectl, "wait", "--for=condition=failed", "job/bad", "-n", ns, "--timeout=5s")
    ok, bad = (batch.read_namespaced_job(n, ns).status for n in ("ok", "bad"))
    assert condition("ok") == "Complete" and ok.succeeded == 2 and ok.completion_time
    assert condition("bad") == "Failed" and bad.failed == 2
    assert [c.reason for c in bad.conditions if c.type == "Failed"] == ["BackoffLimitExceeded"]
    pods = client.CoreV1Api(standin.api_client()).list_namespaced_pod(
        ns, label_selector="job-name=ok").items
    assert len(pods) == 2 and {p.status.phase for p in pods} == {"Succeeded"}

    with pytest.raises(ApiException) as caught:  # a Job's pod template is immutable
        batch.patch_namespaced_job("ok", ns, {"spec": {"template": {"spec": {"containers": [
            {"name": "main", "image": "other:1"}]}}}})
    assert caught.value.status == 422 and "spec.template" in caught.value.body \
        and "field is immutable" in caught.value.body

    # batch/v1's default deletion orphans the pods (what a client that replaces a Job without
    # propagationPolicy gets on a real cluster); Background takes them along.
    core = client.CoreV1Api(standin.api_client())
    batch.delete_namespaced_job("bad", ns)
    wait_for(lambda: not batch.list_namespaced_job(ns, field_selector="metadata.name=bad").items,
             30, what="job/bad deleted")
    left = core.list_namespaced_pod(ns, label_selector="job-name=bad").items
    assert len(left) == 2 and all(not p.metadata.owner_references for p in left)
    batch.delete_namespaced_job("ok", ns, propagation_policy="Background")
    wait_for(lambda: not core.list_namespaced_pod(ns, label_selector="job-name=ok").items, 60,
             what="job/ok's pods collected")


def test_cronjob_creates_jobs_on_schedule_and_not_while_suspended(standin, busybox_image):
    ns = standin.create_namespace()
    batch = client.BatchV1Api(standin.api_client())
    with pytest.raises(ApiException) as caught:
        batch.create_namespaced_cron_job(ns, {
            "metadata": {"name": "bad"}, "spec": {"schedule": "61 * * * *", "jobTemplate": {
                "spec": {"template": template("x", busybox_image, "true", "Never")}}}})
    assert caught.value.status == 422 and "spec.schedule" in caught.value.body
    batch.create_namespaced_cron_job(ns, {
        "metadata": {"name": "tick"},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {
            "template": template("tick", busybox_image, "echo tick", "Never")}}}})
    # Every minute of schedule time: 6 s at the stand-in's default 10x clock.
    wait_for(lambda: batch.read_namespaced_cron_job("tick", ns).status.last_successful_time,
             60, what="a scheduled Job completed")
    jobs = batch.list_namespaced_job(ns).items
    assert jobs and all(j.metadata.name.startswith("tick-") for j in jobs)
    assert jobs[0].metadata.owner_references[0].kind == "CronJob"
    assert batch.read_namespaced_cron_job("tick", ns).status.last_schedule_time

    def names() -> set[str]:
        return {j.metadata.name for j in batch.list_namespaced_job(ns).items}

    batch.patch_namespaced_cron_job("tick", ns, {"spec": {"suspend": True}})
    time.sleep(1)  # a reconcile already under way may still finish its run
    seen = names()
    time.sleep(15)  # more than two scheduled minutes at the 10x clock
    assert names() <= seen  # (the history limit may prune old ones)
    batch.patch_namespaced_cron_job("tick", ns, {"spec": {"suspend": False}})
    wait_for(lambda: names() - seen, 30, what="a new Job once resumed")  # positive control
