"""One image in several workloads of a plain-YAML project: a Deployment's init container, a
StatefulSet, a Job and a CronJob all name the image's repository, and `devloop sync` (a real
process, on the stand-in) gets the built image into each of them, as Tilt and Skaffold match
images by repository name, and waits for each (the StatefulSet's rollout, the Job's completion).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.conftest import busybox_context
from tests.kube_standin.fixtures import wait_for
from tests.watchproc import Watch
from tests.workloads.test_workload_kinds_e2e import LOOP, NS, ONCE, _log, _pods, _read, devloop


def _template(app: str, containers: list[dict], **spec: object) -> dict:
    return {"metadata": {"labels": {"app": app}},
            "spec": {"containers": containers, "terminationGracePeriodSeconds": 1, **spec}}


def manifests(image: str, busybox: str) -> list[dict]:
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                  "strategy": {"type": "Recreate"},
                  "template": _template("web", [{"name": "web", "image": busybox,
                                                 "command": ["sleep", "3600"]}],
                                        initContainers=[{"name": "migrate", "image": image,
                                                         "command": ONCE}])}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
         "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                  "template": _template("db", [{"name": "db", "image": f"{image}:latest"}])}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "seed"},
         "spec": {"backoffLimit": 2, "template": _template(
             "seed", [{"name": "seed", "image": image, "command": ONCE}],
             restartPolicy="Never")}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
         "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": _template(
             "nightly", [{"name": "nightly", "image": image, "command": ONCE}],
             restartPolicy="OnFailure")}}}},
    ]


def make_project(root: Path, image: str, busybox: str) -> None:
    """A plain-YAML project: one service whose image the four workloads above all name."""
    busybox_context(root / "services/app", {"src/message.txt": "v1\n"}, cmd=LOOP)
    (root / "k8s").mkdir()
    (root / "k8s/app.yaml").write_text(yaml.safe_dump_all(manifests(image, busybox)))
    (root / "devloop.yaml").write_text(
        f"version: 1\nnamespace: {NS}\nrollout_timeout_s: 150\nquiet_period_ms: 50\n"
        f"manifests: [k8s]\nservices:\n  app:\n    context: services/app\n    image: {image}\n")


def test_one_image_reaches_every_workload_that_names_it(standin, tmp_path, image_prefix,
                                                         busybox_image):
    root, image = tmp_path / "repo", f"{image_prefix}-app"
    make_project(root, image, busybox_image)
    code, events = devloop(root, standin, "sync")
    errors = [e.get("message") for e in events if e["type"] in ("error", "rollout.failed",
                                                                 "manifests.failed")]
    assert code == 0, errors
    patched = {e["workload"]: e for e in events if e["type"] == "deploy.patched"}
    assert set(patched) == {"deployment/web", "statefulset/db", "job/seed", "cronjob/nightly"}
    built = {e["image"] for e in patched.values()}
    assert len(built) == 1
    ref = built.pop()
    assert ref.startswith(f"{image}:dl-")
    assert patched["deployment/web"]["container"] == "migrate"
    assert [e["service"] for e in events if e["type"] == "rollout.ready"] == ["app"]

    sts = _read(standin, "statefulset", "db")
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == ref
    (pod,) = _pods(standin, "db")
    assert pod.spec.containers[0].image == ref and pod.status.container_statuses[0].ready
    job = _read(standin, "job", "seed")
    assert any(c["type"] == "Complete" and c["status"] == "True"
               for c in job["status"].get("conditions") or [])
    (job_pod,) = [p for p in _pods(standin, "seed") if p.spec.containers[0].image == ref]
    assert "message v1" in _log(standin, job_pod.metadata.name, "seed")
    cron = _read(standin, "cronjob", "nightly")
    assert cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] \
        == ref
    (web,) = _pods(standin, "web")
    assert web.spec.init_containers[0].image == ref and web.spec.containers[0].image \
        == busybox_image
    assert "message v1" in _log(standin, web.metadata.name, "migrate")

    # nothing changed: a second sync deploys nothing and the Job does not run again
    code, events = devloop(root, standin, "sync")
    assert code == 0, "; ".join(json.dumps(e) for e in events
                                if e["type"] not in ("log", "build.output"))
    assert not [e for e in events if e["type"] == "deploy.patched"]
    assert _read(standin, "job", "seed")["metadata"]["uid"] == job["metadata"]["uid"]

    # status reads every workload of the image: up to date and healthy, with all their pods
    code, events = devloop(root, standin, "status")
    (row,) = [r for e in events for r in e.get("services", [])]
    assert code == 0 and row["healthy"] is True and row["state"] == "up to date", row
    assert sorted(row["workloads"]) == ["cronjob/nightly", "deployment/web", "job/seed",
                                        "statefulset/db"]
    names = {p["name"] for p in row["pods"]}
    assert {"db-0", web.metadata.name, job_pod.metadata.name} <= names


def test_an_edit_reaches_every_workload_of_the_image_during_watch(standin, tmp_path,
                                                                  image_prefix, busybox_image):
    root, image = tmp_path / "repo", f"{image_prefix}-app"
    make_project(root, image, busybox_image)
    watch = Watch(root, standin.kubeconfig)
    try:
        watch.wait("reload.finished", timeout=300, service="app", ok=True)
        mark = watch.mark()
        (root / "services/app/src/message.txt").write_text("v2\n")
        started = watch.wait("reload.started", after=mark, timeout=60, service="app")
        mark = watch.events.index(started)
        done = watch.wait("reload.finished", after=mark, timeout=300, service="app")
        assert done["ok"], done
        # the StatefulSet's container runs, the Job's has finished: a live sync could not reach
        # the Job, the CronJob or the init container, so the change is rebuilt for all of them
        rebuild = watch.wait("live.rebuild", after=mark, timeout=5, service="app")
        assert "is not running" in rebuild["reason"]
        patched = {e["workload"] for e in watch.since(mark, "deploy.patched")}
        assert patched == {"deployment/web", "statefulset/db", "job/seed", "cronjob/nightly"}, \
            [e for e in watch.events[mark:] if e.get("type") not in ("log", "build.output")]
        job = _read(standin, "job", "seed")
        ref = job["spec"]["template"]["spec"]["containers"][0]["image"]
        (job_pod,) = [p for p in _pods(standin, "seed") if p.spec.containers[0].image == ref]
        assert "message v2" in _log(standin, job_pod.metadata.name, "seed")
        (pod,) = _pods(standin, "db")
        assert pod.spec.containers[0].image == ref
        wait_for(lambda: "message v2" in _log(standin, pod.metadata.name, "db"), 30,
                 what="v2 in the StatefulSet's pod")
    finally:
        watch.stop()
