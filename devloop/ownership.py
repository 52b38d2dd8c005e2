"""devloop's own mark on the cluster objects it creates, and the one test of it.

`devloop down` deletes an object only when it carries this mark: Helm's release annotation is
not enough, since a person's own `helm install` of the same release sets it too, and deleting
their objects would be deleting what devloop did not make. Every path that creates or applies
objects (install.py's create-only install, a server-side apply) sets the mark with `mark()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def is_devloop_owned(obj: Mapping[str, Any], release: str | None = None) -> bool:
    """Whether devloop created `obj` (a JSON object from the API), for `release` when given.

    Only devloop's own label counts: Helm's `meta.helm.sh/release-name` or
    `app.kubernetes.io/managed-by: Helm` say nothing about who ran the install."""
    meta = obj.get("metadata") or {}
    if (meta.get("labels") or {}).get(MANAGED_LABEL) != MANAGED_VALUE:
        return False
    return release is None or (meta.get("annotations") or {}).get(RELEASE_ANNOTATION) == release
