"""Paths and helpers shared by the Kubernetes-side tests (imported as tests.k8s.support)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
HELM = REPO_ROOT / ".tools" / "bin" / "helm"
CHART = REPO_ROOT / "k8s"


def deployment(name: str, image: str, *, strategy: str = "RollingUpdate", replicas: int = 1,
               claim: str | None = None, min_ready_seconds: int = 0,
               progress_deadline_seconds: int | None = None) -> dict[str, Any]:
    """A one-container Deployment whose container is named like it (the lumina convention)."""
    labels = {"app": name}
    pod_spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": 2,
        "containers": [{"name": name, "image": image, "imagePullPolicy": "IfNotPresent"}],
    }
    if claim:
        pod_spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
        pod_spec["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": labels},
        "strategy": {"type": strategy},
        "minReadySeconds": min_ready_seconds,
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if progress_deadline_seconds is not None:
        spec["progressDeadlineSeconds"] = progress_deadline_seconds
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": spec}


def pvc(name: str, size: str = "64Mi") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": size}}}}


def pods_of(core: Any, namespace: str, app: str) -> list[Any]:
    """Pods of a test Deployment that are not being deleted."""
    pods = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def container_id(pod: Any) -> str:
    """The Docker container id behind a pod's first container (`docker://<id>`)."""
    status = pod.status.container_statuses[0]
    return status.container_id.split("://", 1)[-1]


def plain_http_cluster(standin: Any, directory: Path) -> Any:
    """A Cluster on `standin` over plain HTTP, in a fresh namespace.

    The stand-in serves HTTP and HTTPS on one port; its stop() cuts HTTP connections the way
    a dying API server does but cannot cut its TLS-wrapped ones (reported to the lead), so
    outage tests use HTTP.
    """
    from devloop.k8s.cluster import connect
    from tests.kube_standin.kubeconfig import CONTEXT, write_kubeconfig

    namespace = f"t-{uuid.uuid4().hex[:8]}"
    kubeconfig = write_kubeconfig(directory / "kubeconfig-http",
                                  standin.url.replace("https://", "http://"), standin.token)
    cluster = connect(CONTEXT, namespace, str(kubeconfig))
    cluster.core.create_namespace({"metadata": {"name": namespace}})
    return cluster
