"""Manifests shared by the manifests and down tests (a Deployment `web` running one image, a
custom kind Widget), and "is it gone"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException

SLEEP = "trap 'exit 0' TERM; sleep 3600 & wait"

WIDGET_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"""
CLAIM = """\
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Mi}}
"""


def widget(name: str) -> str:
    """A Widget manifest."""
    return (f"apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: {name}}}\n"
            "spec: {size: 3}\n")


def web_deployment(image: str, command: str = SLEEP, container: dict[str, Any] | None = None,
                   pod: dict[str, Any] | None = None, spec: dict[str, Any] | None = None) -> str:
    """A Deployment `web` (pods labelled app=web) whose container `web` runs `command` in
    `image`; `container`, `pod` and `spec` add fields to the container, pod spec and spec."""
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, **(spec or {}), "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"terminationGracePeriodSeconds": 1, **(pod or {}), "containers": [
                {"name": "web", "image": image, "command": ["sh", "-c", command],
                 **(container or {})}]}}}}, sort_keys=False)


def gone(read: Callable[[], object]) -> bool:
    """The object `read` returns is deleted: absent (404), or going (its deletionTimestamp)."""
    try:
        obj = read()
    except ApiException as exc:
        return exc.status == 404
    if isinstance(obj, dict):
        return bool((obj.get("metadata") or {}).get("deletionTimestamp"))
    return bool(obj.metadata.deletion_timestamp)  # type: ignore[attr-defined]
