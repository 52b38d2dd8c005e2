"""Every workload kind gets its built image, with real `devloop sync`/`watch` processes on the
stand-in (pods are Docker containers): a StatefulSet waits for its rollout, a Job is replaced and
waited for until complete, a CronJob's template is updated, a Deployment's init container runs
the built image; and `resources:` workloads devloop does not build show in status with their
health, logs and forwards."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import busybox_context, devloop_env
from tests.kube_standin.fixtures import wait_for
from tests.ports import free_port
from tests.watchproc import Watch

NS = "kinds"
LOOP = ('["/bin/sh","-c","while true; do echo \\"message $(cat /app/message.txt)\\"; '
        'sleep 0.3; done"]')
ONCE = ["/bin/sh", "-c", "echo \"message $(cat /app/message.txt)\""]


def _template(app: str, containers: list[dict], init: list[dict] | None = None,
              restart: str | None = None) -> dict:
    spec: dict = {"containers": containers, "terminationGracePeriodSeconds": 1}
    if init:
        spec["initContainers"] = init
    if restart:
        spec["restartPolicy"] = restart
    return {"metadata": {"labels": {"app": app}}, "spec": spec}


def make_project(standin, root: Path, image_prefix: str, busybox: str) -> None:
    """Four services from one busybox build context, each feeding a workload of another kind
    (created here with a placeholder image, as a user's manifests would have them)."""
    busybox_context(root / "services/app", {"src/message.txt": "v1\n"}, cmd=LOOP)
    services = {"db": "statefulset/db", "seed": "job/seed", "nightly": "cronjob/nightly",
                "migrate": "deployment/web"}
    text = f"version: 1\nnamespace: {NS}\nrollout_timeout_s: 150\nquiet_period_ms: 50\nservices:\n"
    for name, workload in services.items():
        text += (f"  {name}:\n    context: services/app\n    image: {image_prefix}-{name}\n"
                 f"    workload: {workload}\n    container: {name}\n")
    (root / "devloop.yaml").write_text(text)
    standin.create_namespace(NS)
    apps, api = standin.apps(), standin.api_client()
    from kubernetes import client as k8s

    sleeper = {"image": busybox, "command": ["sleep", "3600"]}
    apps.create_namespaced_stateful_set(NS, {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                 "template": _template("db", [{"name": "db", "image": busybox}])}})
    k8s.BatchV1Api(api).create_namespaced_job(NS, {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "seed"},
        "spec": {"backoffLimit": 2, "template": _template(
            "seed", [{"name": "seed", "image": busybox, "command": ONCE}], restart="Never")}})
    k8s.BatchV1Api(api).create_namespaced_cron_job(NS, {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": _template(
            "nightly", [{"name": "nightly", "image": busybox, "command": ONCE}],
            restart="OnFailure")}}}})
    apps.create_namespaced_deployment(NS, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "strategy": {"type": "Recreate"},
                 "template": _template("web", [{"name": "web", **sleeper}],
                                       init=[{"name": "migrate", "image": busybox,
                                              "command": ONCE}])}})


def devloop(root: Path, standin, *args: str, timeout: float = 400) -> tuple[int, list[dict]]:
    env = devloop_env(KUBECONFIG=str(standin.kubeconfig), XDG_CACHE_HOME=str(root.parent / "c"),
                      HOME=str(root.parent))
    done = subprocess.run([sys.executable, "-m", "devloop.cli", *args, "-o", "json"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=timeout)
    events = []
    for line in done.stdout.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            events.append({"type": "unparsed", "line": line})
    return done.returncode, events


def _read(standin, kind: str, name: str) -> dict:
    from kubernetes import client as k8s

    api = standin.api_client()
    read = {"statefulset": k8s.AppsV1Api(api).read_namespaced_stateful_set,
            "deployment": k8s.AppsV1Api(api).read_namespaced_deployment,
            "job": k8s.BatchV1Api(api).read_namespaced_job,
            "cronjob": k8s.BatchV1Api(api).read_namespaced_cron_job}[kind]
    return api.sanitize_for_serialization(read(name, NS))


def _pods(standin, app: str) -> list:
    return [p for p in standin.core().list_namespaced_pod(NS, label_selector=f"app={app}").items
            if p.metadata.deletion_timestamp is None]


def _log(standin, pod: str, container: str) -> str:
    return standin.core().read_namespaced_pod_log(pod, NS, container=container)


def test_sync_gets_the_image_into_every_kind_and_waits_for_each(standin, tmp_path, image_prefix,
                                                                 busybox_image):
    root = tmp_path / "repo"
    make_project(standin, root, image_prefix, busybox_image)
    old_job = _read(standin, "job", "seed")["metadata"]["uid"]
    code, events = devloop(root, standin, "sync")
    ready = {e["service"] for e in events if e["type"] == "rollout.ready"}
    errors = [e.get("message") for e in events if e["type"] in ("error", "rollout.failed")]
    assert code == 0, errors
    assert ready == {"db", "seed", "nightly", "migrate"}, errors
    # each names its workload's kind (what the console prints: "rollout ready: statefulset/db")
    assert {e["service"]: e["workload"] for e in events if e["type"] == "rollout.ready"} == \
        {"db": "statefulset/db", "seed": "job/seed", "nightly": "cronjob/nightly",
         "migrate": "deployment/web"}
    built = {e["service"]: e["image"] for e in events if e["type"] == "deploy.patched"}

    # the StatefulSet: its template and its (ready) pod run the built image, and its rollout
    # was complete when sync said so
    sts = _read(standin, "statefulset", "db")
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == built["db"]
    assert sts["status"]["updateRevision"] == sts["status"]["currentRevision"]
    (pod,) = _pods(standin, "db")
    assert pod.spec.containers[0].image == built["db"] and pod.status.container_statuses[0].ready

    # the Job: replaced (a new UID), and complete, having run the built image
    job = _read(standin, "job", "seed")
    assert job["metadata"]["uid"] != old_job
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == built["seed"]
    assert any(c["type"] == "Complete" and c["status"] == "True"
               for c in job["status"].get("conditions") or [])
    (job_pod,) = [p for p in _pods(standin, "seed")
                  if p.spec.containers[0].image == built["seed"]]
    assert "message v1" in _log(standin, job_pod.metadata.name, "seed")

    # the CronJob: its next run uses the built image
    cron = _read(standin, "cronjob", "nightly")
    assert cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] \
        == built["nightly"]

    # the Deployment's init container ran the built image before the main container started
    (web,) = _pods(standin, "web")
    assert web.spec.init_containers[0].image == built["migrate"]
    assert web.spec.containers[0].image != built["migrate"]  # another image: untouched
    assert "message v1" in _log(standin, web.metadata.name, "migrate")

    # a second sync finds everything up to date and healthy
    code, events = devloop(root, standin, "sync")
    assert code == 0 and not [e for e in events if e["type"] == "deploy.patched"]


def test_an_edit_during_watch_reaches_every_kind(standin, tmp_path, image_prefix, busybox_image):
    root = tmp_path / "repo"
    make_project(standin, root, image_prefix, busybox_image)
    watch = Watch(root, standin.kubeconfig)
    try:
        for name in ("db", "seed", "nightly", "migrate"):
            watch.wait("reload.finished", timeout=300, service=name, ok=True)
        mark = watch.mark()
        (root / "services/app/src/message.txt").write_text("v2\n")
        for name in ("db", "seed", "nightly", "migrate"):
            started = watch.wait("reload.started", after=mark, timeout=120, service=name)
            done = watch.wait("reload.finished", after=watch.events.index(started), timeout=300,
                              service=name)
            assert done["ok"], done
        # the StatefulSet's running container serves v2 (synced live or rebuilt)
        (pod,) = _pods(standin, "db")
        wait_for(lambda: "message v2" in _log(standin, pod.metadata.name, "db"), 30,
                 what="v2 in the StatefulSet's pod")
        # the Job ran again with v2; the CronJob and the init container got a new image
        job = _read(standin, "job", "seed")
        image = job["spec"]["template"]["spec"]["containers"][0]["image"]
        (job_pod,) = [p for p in _pods(standin, "seed") if p.spec.containers[0].image == image]
        assert "message v2" in _log(standin, job_pod.metadata.name, "seed")
        (web,) = _pods(standin, "web")
        assert "message v2" in _log(standin, web.metadata.name, "migrate")
        patched = {e["service"]: e["image"] for e in watch.since(mark, "deploy.patched")}
        cron = _read(standin, "cronjob", "nightly")
        assert cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0][
            "image"] == patched["nightly"]
    finally:
        watch.stop()


def test_a_resource_devloop_does_not_build_shows_health_logs_and_forward(
        standin, tmp_path, image_prefix, busybox_image):
    root = tmp_path / "repo"
    busybox_context(root / "services/app", {"src/message.txt": "v1\n"}, cmd=LOOP)
    port = free_port()
    (root / "devloop.yaml").write_text(
        f"version: 1\nnamespace: {NS}\nrollout_timeout_s: 120\nservices:\n"
        f"  app:\n    context: services/app\n    image: {image_prefix}-app\n"
        "    workload: statefulset/app\n"
        "resources:\n  cache:\n    workload: statefulset/cache\n"
        f"    port_forwards: ['{port}:8080']\n"
        "    logs: {exclude: [noisy]}\n")
    standin.create_namespace(NS)
    script = ("echo cache-page > /tmp/index.html; httpd -p 8080 -h /tmp; "
              "while true; do echo cache-alive; echo noisy line; sleep 0.3; done")
    for name, image, cmd in (("app", busybox_image, ["sleep", "3600"]),
                             ("cache", busybox_image, ["/bin/sh", "-c", script])):
        container = {"name": name, "image": image,
                     "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}} \
            if name == "cache" else {"name": name, "image": image}
        if cmd:
            container["command"] = cmd
        standin.apps().create_namespaced_stateful_set(NS, {
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"replicas": 1, "serviceName": name,
                     "selector": {"matchLabels": {"app": name}},
                     "template": _template(name, [container])}})
    watch = Watch(root, standin.kubeconfig)
    try:
        watch.wait("rollout.ready", timeout=300, service="app")
        line = watch.wait("log", timeout=120, service="cache", line="cache-alive")
        assert line["pod"] == "cache-0"
        ready = watch.wait("forward.ready", timeout=120, service="cache")
        assert ready["pod"] == "cache-0"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as r:
            assert r.read().decode().strip() == "cache-page"
        time.sleep(1)
        assert not [e for e in watch.events if e.get("type") == "log"
                    and e.get("service") == "cache" and "noisy" in str(e.get("line"))]
    finally:
        watch.stop()
    code, events = devloop(root, standin, "status")
    assert code == 0, events
    (doc,) = [e for e in events if "services" in e] or [{}]
    rows = {r["service"]: r for r in doc.get("services", [])}
    cache = rows["cache"]
    assert cache["resource"] is True and cache["workload"] == "statefulset/cache"
    assert cache["healthy"] is True and cache["state"] == "running", cache
    assert [p["name"] for p in cache["pods"]] == ["cache-0"] and cache["pods"][0]["ready"]
    assert rows["app"]["workload"] == "statefulset/app" and rows["app"]["healthy"] is True
