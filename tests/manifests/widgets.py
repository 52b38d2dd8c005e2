"""Shared by the manifests and down tests: a custom kind (Widget) and "is it gone"."""

from __future__ import annotations

from collections.abc import Callable

from kubernetes.client.exceptions import ApiException

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


def widget(name: str) -> str:
    """A Widget manifest."""
    return (f"apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: {name}}}\n"
            "spec: {size: 3}\n")


def gone(read: Callable[[], object]) -> bool:
    """The object `read` returns is deleted: absent (404), or going (its deletionTimestamp)."""
    try:
        obj = read()
    except ApiException as exc:
        return exc.status == 404
    if isinstance(obj, dict):
        return bool((obj.get("metadata") or {}).get("deletionTimestamp"))
    return bool(obj.metadata.deletion_timestamp)  # type: ignore[attr-defined]
