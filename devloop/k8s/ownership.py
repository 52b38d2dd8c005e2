"""devloop's own mark on the cluster objects it creates, and the one test of it.

`devloop down` deletes an object only when it carries this mark: Helm's release annotation is
not enough, since a person's own `helm install` of the same release sets it too, and deleting
their objects would be deleting what devloop did not make. Every path that creates or applies
objects (the server-side apply of the manifests) sets the mark with `mark()`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kubernetes.client.exceptions import ApiException

from devloop.k8s import timeouts
from devloop.k8s.errors import is_connection_error

if TYPE_CHECKING:
    from devloop.k8s.cluster import Cluster

MANAGED_LABEL = "devloop.dev/managed-by"  # a label, so `-l devloop.dev/managed-by` finds them
MANAGED_VALUE = "devloop"
RELEASE_ANNOTATION = "devloop.dev/release"  # the chart release devloop created it for


def mark(obj: Mapping[str, Any], release: str | None = None) -> dict[str, Any]:
    """A copy of the manifest `obj` carrying devloop's label (and the release it belongs to)."""
    meta = dict(obj.get("metadata") or {})
    meta["labels"] = {**(meta.get("labels") or {}), MANAGED_LABEL: MANAGED_VALUE}
    if release:
        meta["annotations"] = {**(meta.get("annotations") or {}), RELEASE_ANNOTATION: release}
    return {**obj, "metadata": meta}


def unmark(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `obj` without devloop's mark: what is applied to an object that exists and is
    not devloop's (a person's own `helm install`, a ConfigMap made by hand), so that applying
    to it never makes it look like devloop made it."""
    meta = dict(obj.get("metadata") or {})
    meta["labels"] = {k: v for k, v in (meta.get("labels") or {}).items() if k != MANAGED_LABEL}
    meta["annotations"] = {k: v for k, v in (meta.get("annotations") or {}).items()
                           if k != RELEASE_ANNOTATION}
    for key in ("labels", "annotations"):
        if not meta[key]:
            del meta[key]
    return {**obj, "metadata": meta}


def is_devloop_owned(obj: Mapping[str, Any], release: str | None = None) -> bool:
    """Whether devloop created `obj` (a JSON object from the API), for `release` when given.

    Only devloop's own label counts: Helm's `meta.helm.sh/release-name` or
    `app.kubernetes.io/managed-by: Helm` say nothing about who ran the install."""
    meta = obj.get("metadata") or {}
    if (meta.get("labels") or {}).get(MANAGED_LABEL) != MANAGED_VALUE:
        return False
    return release is None or (meta.get("annotations") or {}).get(RELEASE_ANNOTATION) == release


def owned_secrets(cluster: Cluster) -> list[dict[str, Any]]:
    """The namespace's Secret objects that carry devloop's mark, as JSON objects: redaction
    sources for a command that renders no chart (status) or that may print a pod's output
    before it renders one (a pod still running from an earlier run). Empty when they cannot
    be read: the environment and values files are still masked."""
    try:
        resp = cluster.core.list_namespaced_secret(
            cluster.namespace, label_selector=f"{MANAGED_LABEL}={MANAGED_VALUE}",
            _preload_content=False, _request_timeout=timeouts.REQUEST)
    except ApiException:
        return []
    except Exception as exc:
        if not is_connection_error(exc):
            raise
        return []
    try:
        return [{"kind": "Secret", **item} for item in json.loads(resp.data).get("items") or []]
    except ValueError:
        return []
    finally:
        resp.release_conn()
