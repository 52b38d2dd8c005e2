"""helm and kubectl (client-go: HTTPS, protobuf Secrets, OpenAPI, WatchList) on the stand-in."""

from __future__ import annotations

import pytest

from tests.kube_standin.fixtures import wait_for
from tests.standin.clis import run, tool

pytestmark = pytest.mark.docker


CHART = {
    "Chart.yaml": "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
    "values.yaml": "image: x\nrev: '1'\n",
    "templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: demo-config}\n"
                         "data: {rev: '{{ .Values.rev }}'}\n",
    "templates/deploy.yaml": """apiVersion: apps/v1
kind: Deployment
metadata: {name: demo}
spec:
  selector: {matchLabels: {app: demo}}
  template:
    metadata: {labels: {app: demo}, annotations: {rev: "{{ .Values.rev }}"}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: demo
          image: {{ .Values.image }}
          imagePullPolicy: IfNotPresent
          command: ["sh", "-c", "echo serving; exec httpd -f -p 8080 -h /www"]
          readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
""",
}


def test_helm_install_upgrade_wait_and_uninstall(standin, busybox_image, tmp_path):
    helm = tool("helm")
    for rel, text in CHART.items():
        (tmp_path / "demo" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "demo" / rel).write_text(text)
    ns = standin.create_namespace()
    chart = str(tmp_path / "demo")
    run(standin, helm, "upgrade", "--install", "demo", chart, "-n", ns, "--set",
        f"image={busybox_image}", "--wait", "--timeout", "60s")
    apps, core = standin.apps(), standin.core()
    assert apps.read_namespaced_deployment("demo", ns).status.available_replicas == 1
    secrets = [s.metadata.name for s in core.list_namespaced_secret(ns).items]
    assert "sh.helm.release.v1.demo.v1" in secrets
    run(standin, helm, "upgrade", "--install", "demo", chart, "-n", ns, "--set",
        f"image={busybox_image}", "--set", "rev=2", "--wait", "--timeout", "60s")
    assert core.read_namespaced_config_map("demo-config", ns).data == {"rev": "2"}
    assert len(apps.list_namespaced_replica_set(ns).items) == 2
    assert "deployed" in run(standin, helm, "status", "demo", "-n", ns)
    run(standin, helm, "uninstall", "demo", "-n", ns, "--wait", "--timeout", "60s")
    wait_for(lambda: not core.list_namespaced_pod(ns).items, what="pods gone after uninstall")


def test_kubectl_apply_and_rollout_status(standin, busybox_image, tmp_path):
    kubectl = tool("kubectl")
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(CHART["templates/deploy.yaml"].replace(
        "{{ .Values.image }}", busybox_image).replace('"{{ .Values.rev }}"', "'1'"))
    ns = standin.create_namespace()
    run(standin, kubectl, "apply", "-n", ns, "-f", str(manifest))
    out = run(standin, kubectl, "rollout", "status", "-n", ns, "deployment/demo",
              "--timeout=60s")
    assert "successfully rolled out" in out
    assert run(standin, kubectl, "logs", "-n", ns, "deployment/demo").strip() == "serving"
