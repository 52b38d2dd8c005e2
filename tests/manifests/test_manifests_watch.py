"""Plain-YAML manifests as a watched input: a real `devloop watch` against the stand-in.

The project: a Deployment with an init container, a second Deployment and a claim, a
StatefulSet, a CronJob and a Job, all running the one image devloop builds.

A save to a manifest applies only what changed (server-side apply, field manager devloop), a
changed ConfigMap rolls exactly the workload that reads it, a YAML mistake is one line with file
and line and leaves the cluster as it is, a dropped object is orphaned, then pruned with
`prune: true` (never the claim), and another field manager's value is a one-line conflict.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from kubernetes import client as k8s

from tests.conftest import busybox_context, devloop_env
from tests.kube_standin.fixtures import wait_for
from tests.watchproc import Watch

APP = """\
apiVersion: v1
kind: ConfigMap
metadata: {{name: web-config}}
data: {{MODE: {mode}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      initContainers: [{{name: init, image: {image}, command: [sh, -c, "echo init done"]}}]
      containers:
        - name: web
          image: {image}:latest
          command: [sh, -c, "echo MODE=$MODE; trap 'exit 0' TERM; while true; do sleep 1; done"]
          envFrom: [{{configMapRef: {{name: web-config}}}}]
"""
OTHER = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: other}}
spec:
  selector: {{matchLabels: {{app: other}}}}
  template:
    metadata: {{labels: {{app: other}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: other
          image: {image}
          command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 16Mi}}}}
"""
BATCH = """\
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db}}
spec:
  serviceName: db
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      containers: [{{name: db, image: {image}, command: [sh, -c, "sleep 3600"]}}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {{name: nightly}}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{{name: n, image: {image}, command: [echo, nightly]}}]
---
apiVersion: batch/v1
kind: Job
metadata: {{name: migrate}}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{{name: migrate, image: {image}, command: [echo, migrated]}}]
"""
CONFIG = """\
version: 1
namespace: {namespace}
quiet_period_ms: 100
manifests: [k8s]
services:
  web:
    context: services/web
    image: {image}
"""


def _project(root: Path, image: str, namespace: str) -> Path:
    busybox_context(root / "services/web", {"src/main.txt": "hello\n"})
    (root / "k8s").mkdir(parents=True)
    (root / "k8s/app.yaml").write_text(APP.format(mode="one", replicas=1, image=image))
    (root / "k8s/other.yaml").write_text(OTHER.format(image=image))
    (root / "k8s/batch.yaml").write_text(BATCH.format(image=image))
    (root / "devloop.yaml").write_text(CONFIG.format(namespace=namespace, image=image))
    return root


def _images(obj: k8s.V1PodTemplateSpec) -> list[str]:
    spec = obj.spec
    return [c.image for c in [*(spec.init_containers or []), *spec.containers]]


def test_manifest_edits_apply_only_what_changed_orphans_prune_and_conflicts(
        standin, image_prefix, tmp_path):
    ns = standin.create_namespace()
    image = f"{image_prefix}-web"
    root = _project(tmp_path / "repo", image, ns)
    apps, core = standin.apps(), standin.core()
    watch = Watch(root, standin.kubeconfig)
    try:
        ready = watch.wait("rollout.ready", service="web", timeout=180)
        built = watch.wait("deploy.patched", service="web")["image"]
        installed = watch.wait("deploy.installed", service="web")
        assert {"Deployment/web", "PersistentVolumeClaim/data"} <= set(installed["objects"])
        web = apps.read_namespaced_deployment("web", ns)
        # the built image goes wherever the manifests name its repository, tags and all
        assert _images(web.spec.template) == [built, built]
        assert _images(apps.read_namespaced_stateful_set("db", ns).spec.template) == [built]
        cron = k8s.BatchV1Api(standin.api_client()).read_namespaced_cron_job("nightly", ns)
        assert _images(cron.spec.job_template.spec.template) == [built]
        job = k8s.BatchV1Api(standin.api_client()).read_namespaced_job("migrate", ns)
        assert _images(job.spec.template) == [built]
        other = apps.read_namespaced_deployment("other", ns)
        claim_uid = core.read_namespaced_persistent_volume_claim("data", ns).metadata.uid
        assert ready

        # a ConfigMap edit rolls the workload that reads it, and only that one
        mark = watch.mark()
        (root / "k8s/app.yaml").write_text(APP.format(mode="two", replicas=1, image=image))
        applied = watch.wait("manifests.applied", after=mark, timeout=60)
        assert applied["objects"] == ["ConfigMap/web-config", "Deployment/web"]
        assert applied["rolls"] == {"Deployment/web": ["ConfigMap/web-config"]}
        watch.wait("log", after=mark, line="MODE=two", timeout=90)
        assert _images(apps.read_namespaced_deployment("web", ns).spec.template) == [built,
                                                                                      built]
        again = apps.read_namespaced_deployment("other", ns)
        assert again.metadata.generation == other.metadata.generation

        # a YAML mistake: one line with file and line, nothing applied
        mark = watch.mark()
        (root / "k8s/app.yaml").write_text(APP.format(mode="two", replicas=1, image=image)
                                           + "---\nkind: [\n")
        failed = watch.wait("manifests.failed", after=mark, timeout=60)
        assert re.match(r"^k8s/app\.yaml:2[34]: invalid YAML: ", failed["message"])
        assert "\n" not in failed["message"]
        assert watch.since(mark, "manifests.applied") == []
        (root / "k8s/app.yaml").write_text(APP.format(mode="three", replicas=1, image=image))
        watch.wait("log", after=mark, line="MODE=three", timeout=90)  # alive after the fix

        # a dropped object is orphaned and stays; prune: true deletes it, never the claim
        mark = watch.mark()
        (root / "k8s/other.yaml").unlink()
        orphaned = watch.wait("manifests.orphaned", after=mark, timeout=60)
        assert sorted(orphaned["objects"]) == ["Deployment/other", "PersistentVolumeClaim/data"]
        assert orphaned["prune"] is False
        assert apps.read_namespaced_deployment("other", ns).metadata.uid == other.metadata.uid
        status = subprocess.run(  # a separate process finds them by devloop's mark
            [sys.executable, "-m", "devloop.cli", "status", "-o", "json"], cwd=root,
            env=devloop_env(KUBECONFIG=str(standin.kubeconfig), HOME=str(tmp_path)),
            capture_output=True, text=True, timeout=120)
        report = json.loads(status.stdout.strip().splitlines()[-1])
        assert report["orphaned"] == ["Deployment/other", "PersistentVolumeClaim/data"]
        mark = watch.mark()
        with (root / "devloop.yaml").open("a") as handle:
            handle.write("prune: true\n")
        pruned = watch.wait("manifests.pruned", after=mark, timeout=60)
        assert pruned["objects"] == ["Deployment/other"]
        wait_for(lambda: not [d for d in apps.list_namespaced_deployment(ns).items
                              if d.metadata.name == "other"], what="Deployment/other deleted")
        assert core.read_namespaced_persistent_volume_claim("data", ns).metadata.uid == claim_uid

        # another field manager's value: one line naming it and the field, nothing forced
        apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 2}},
                                         field_manager="kubectl-edit")
        mark = watch.mark()
        (root / "k8s/app.yaml").write_text(APP.format(mode="three", replicas=3, image=image))
        conflict = watch.wait("manifests.failed", after=mark, timeout=60)["message"]
        assert "kubectl-edit" in conflict and ".spec.replicas" in conflict
        assert "Deployment/web (k8s/app.yaml)" in conflict and "\n" not in conflict
        assert apps.read_namespaced_deployment("web", ns).spec.replicas == 2
    finally:
        watch.stop()


def test_devloop_sync_applies_a_plain_yaml_project_and_exits_0(standin, image_prefix, tmp_path):
    ns = standin.create_namespace()
    image = f"{image_prefix}-web"
    root = _project(tmp_path / "repo", image, ns)
    (root / "k8s/batch.yaml").unlink()
    done = subprocess.run([sys.executable, "-m", "devloop.cli", "sync", "-o", "json"], cwd=root,
                          env=devloop_env(KUBECONFIG=str(standin.kubeconfig),
                                          HOME=str(tmp_path)),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    applied = [e for e in events if e["type"] == "manifests.applied"]
    assert applied and "Deployment/other" in applied[0]["objects"]
    assert standin.apps().read_namespaced_deployment("other", ns).spec.template.spec.containers[
        0].image.startswith(f"{image}:dl-")
