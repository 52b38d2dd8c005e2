"""The small controllers: garbage collection by ownerReferences, namespace termination, and
PVC binding/protection."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from . import errors
from .api import PVC_PROTECTION, Api
from .pod_state import Obj

log = logging.getLogger("kube_standin.housekeeping")


class Housekeeping:
    def __init__(
        self,
        api: Api,
        release_claim: Callable[[str, str], None] = lambda ns, name: None,
    ) -> None:
        self._api = api
        self._release_claim = release_claim

    def reconcile(self) -> None:
        self._collect_garbage()
        self._terminate_namespaces()
        self._claims()

    def _collect_garbage(self) -> None:
        store = self._api.store
        alive: set[str] = set()
        dependents: list[tuple[str, Obj]] = []
        for res in self._api.table.all:
            objs, _ = store.list_raw(res.plural)
            for obj in objs:
                alive.add(obj["metadata"]["uid"])
                if obj["metadata"].get("ownerReferences"):
                    dependents.append((res.plural, obj))
        for plural, obj in dependents:
            if obj["metadata"].get("deletionTimestamp"):
                continue
            refs = obj["metadata"]["ownerReferences"]
            if refs and all(ref.get("uid") not in alive for ref in refs):
                res = self._api.table.by_plural(plural)
                try:
                    self._api.delete(res, obj["metadata"].get("namespace", ""),
                                     obj["metadata"]["name"])
                except errors.ApiError as exc:
                    if exc.code != 404:
                        log.warning("gc of %s %s: %s", plural, obj["metadata"]["name"],
                                    exc.message)

    def _terminate_namespaces(self) -> None:
        store = self._api.store
        namespaces, _ = store.list_raw("namespaces")
        for ns in namespaces:
            if not ns["metadata"].get("deletionTimestamp"):
                continue
            name = ns["metadata"]["name"]
            contents = store.namespaced_kinds_in(name)
            if not contents:
                with contextlib.suppress(errors.ApiError):
                    store.remove(self._api.table.by_plural("namespaces"), "", name)
                continue
            for plural, obj_name in contents:
                res = self._api.table.by_plural(plural)
                obj = store.get(plural, name, obj_name)
                if obj is None or obj["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    self._api.delete(res, name, obj_name)
                except errors.ApiError as exc:
                    if exc.code != 404:
                        log.warning("namespace %s: deleting %s %s: %s", name, plural, obj_name,
                                    exc.message)

    def _claims(self) -> None:
        store = self._api.store
        res = self._api.table.by_plural("persistentvolumeclaims")
        claims, _ = store.list_raw("persistentvolumeclaims")
        if not claims:
            return
        pods, _ = store.list_raw("pods")
        in_use = {
            (pod["metadata"]["namespace"], vol["persistentVolumeClaim"]["claimName"])
            for pod in pods
            for vol in (pod.get("spec") or {}).get("volumes") or []
            if vol.get("persistentVolumeClaim")
            and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        }
        for claim in claims:
            meta = claim["metadata"]
            key = (meta["namespace"], meta["name"])
            if meta.get("deletionTimestamp"):
                if key in in_use or PVC_PROTECTION not in (meta.get("finalizers") or []):
                    continue
                self._release_claim(*key)

                def unprotect(obj: Obj) -> Obj:
                    obj["metadata"]["finalizers"] = [
                        f for f in obj["metadata"].get("finalizers") or [] if f != PVC_PROTECTION
                    ]
                    return obj

                store.update(res, meta["namespace"], meta["name"], unprotect)
            elif (claim.get("status") or {}).get("phase") != "Bound":
                def bind(obj: Obj) -> Obj:
                    spec = obj.get("spec") or {}
                    storage = ((spec.get("resources") or {}).get("requests") or {}).get(
                        "storage", "1Gi")
                    spec["volumeName"] = f"pvc-{obj['metadata']['uid']}"
                    obj["status"] = {
                        "phase": "Bound",
                        "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                        "capacity": {"storage": storage},
                    }
                    annotations = obj["metadata"].setdefault("annotations", {})
                    annotations["pv.kubernetes.io/bind-completed"] = "yes"
                    return obj

                store.update(res, meta["namespace"], meta["name"], bind)
