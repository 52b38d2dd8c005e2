"""What the workload controllers share: pods stamped from a template, the pods each owner
controls, the revision hash of a template, and status writes that skip no-op updates."""

from __future__ import annotations

import copy
import logging
from collections import defaultdict
from collections.abc import Callable

from . import errors
from .api import Api
from .clock import template_hash
from .pod_state import Obj, controller_uid, is_terminating, owner_reference
from .resources import Resource

REVISION_LABEL = "controller-revision-hash"


def pod_from_template(owner: Obj, template: Obj | None, name: str | None = None,
                      labels: dict[str, str] | None = None) -> Obj:
    """A pod of `owner`: its template, named `name` or generated from the owner's name."""
    template = copy.deepcopy(template or {})
    meta = template.get("metadata") or {}
    meta.pop("name", None)
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = f"{owner['metadata']['name']}-"
    if labels:
        meta["labels"] = {**(meta.get("labels") or {}), **labels}
    meta["ownerReferences"] = [owner_reference(owner)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": template.get("spec") or {}}


def pods_by_controller(api: Api) -> dict[str, list[Obj]]:
    """Every pod, keyed by the uid of its controller (read-only objects)."""
    pods, _ = api.store.list_raw("pods")
    owned: dict[str, list[Obj]] = defaultdict(list)
    for pod in pods:
        uid = controller_uid(pod)
        if uid:
            owned[uid].append(pod)
    return owned


def revision(owner: Obj, template: Obj | None) -> str:
    """`<name>-<hash of the template>`, the controller-revision-hash of StatefulSet and
    DaemonSet pods."""
    return f"{owner['metadata']['name']}-{template_hash(template or {})}"


def write_status(api: Api, res: Resource, obj: Obj, status: Obj) -> None:
    """Stores `status` unless it is what the object already reports."""
    if obj.get("status") == status:
        return

    def write(current: Obj) -> Obj:
        current["status"] = status
        return current

    meta = obj["metadata"]
    api.store.update(res, meta.get("namespace", ""), meta["name"], write)


def sync_each(api: Api, plural: str, sync: Callable[[Obj], None], log: logging.Logger) -> None:
    """Runs `sync` on every object of a kind not being deleted. A 404 or 409 (a race with
    another writer) is left to the next pass; other API errors are logged, never raised."""
    objs, _ = api.store.list_raw(plural)
    for obj in objs:
        if is_terminating(obj):
            continue
        try:
            sync(obj)
        except errors.ApiError as exc:
            if exc.code not in (404, 409):
                log.warning("%s %s/%s: %s", plural, obj["metadata"].get("namespace"),
                            obj["metadata"]["name"], exc.message)
