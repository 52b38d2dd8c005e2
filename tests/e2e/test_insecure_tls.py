"""A kubeconfig with `insecure-skip-tls-verify: true` (remote dev clusters, some k3s/k3d setups).

urllib3 warns on every request to such a server (it sets its security warnings to "always"):
172 lines on stderr in 25 s of `watch`. devloop says it once, as its own warning naming the
context. Real `devloop` subprocesses against the Kubernetes API stand-in over HTTPS.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.conftest import devloop_env, scratch_dockerfile
from tests.kube_standin.kubeconfig import CONTEXT

pytestmark = pytest.mark.e2e

WARNING = f"kube context '{CONTEXT}' skips TLS verification"


def insecure_kubeconfig(source: Path, dest: Path) -> Path:
    """The stand-in's kubeconfig without its CA, trusting any certificate instead."""
    data = yaml.safe_load(source.read_text())
    cluster = data["clusters"][0]["cluster"]
    assert cluster["server"].startswith("https://")
    cluster.pop("certificate-authority-data", None)
    cluster["insecure-skip-tls-verify"] = True
    dest.write_text(yaml.safe_dump(data))
    dest.chmod(0o600)
    return dest


def devloop(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devloop.cli", *args, "-o", "json"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)


def test_insecure_context_is_one_warning_not_one_per_request(standin, make_project, tmp_path):
    root = make_project({"box": {"dockerfile": scratch_dockerfile(
        "src/", cmd='["/bin/sh","-c","cat /app/*; exec sleep 3600"]')}})
    kubeconfig = insecure_kubeconfig(standin.kubeconfig, tmp_path / "insecure-kubeconfig")
    api = k8s_config.new_client_from_config(str(standin.kubeconfig), context=CONTEXT,
                                            persist_config=False)
    k8s.CoreV1Api(api).create_namespace({"metadata": {"name": "lumina"}})
    k8s.AppsV1Api(api).create_namespaced_deployment("lumina", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "box"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "box"}},
                 "template": {"metadata": {"labels": {"app": "box"}}, "spec": {
                     "containers": [{"name": "box", "image": "box:none"}]}}}})
    env = devloop_env(KUBECONFIG=str(kubeconfig), XDG_CACHE_HOME=str(tmp_path / "cache"),
                      HOME=str(tmp_path))

    # sync: build, patch, rollout, pod logs: dozens of HTTPS requests (the positive control).
    sync = devloop(root, env, "sync")
    assert sync.returncode == 0, sync.stdout[-3000:] + sync.stderr[-3000:]
    events = [json.loads(line) for line in sync.stdout.splitlines() if line.strip()]
    assert any(e["type"] == "rollout.ready" for e in events)
    said = [e["message"] for e in events if e["type"] == "warning" and WARNING in e["message"]]
    assert len(said) == 1, said
    assert "insecure-skip-tls-verify" in said[0] and str(kubeconfig) in said[0]
    assert sync.stderr.splitlines() == []  # no InsecureRequestWarning, not even once

    # status: stdout is its JSON report; the one warning goes to stderr, as a single line.
    status = devloop(root, env, "status")
    assert json.loads(status.stdout)["schema"] == "devloop.status/v1"
    lines = status.stderr.splitlines()
    assert len(lines) == 1 and WARNING in lines[0], lines
