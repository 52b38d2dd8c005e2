"""The small controllers: garbage collection by ownerReferences, namespace termination, and
PVC provisioning (a PersistentVolume per claim), binding and protection."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from . import errors
from .api import PVC_PROTECTION, Api
from .pod_state import Obj

log = logging.getLogger("kube_standin.housekeeping")

# The provisioner named on PersistentVolumes: the kubelet backs each claim with a Docker volume.
DRIVER = "standin.devloop.io/docker-volume"


class Housekeeping:
    def __init__(
        self,
        api: Api,
        release_claim: Callable[[str, str], None] = lambda ns, name: None,
        volume_name: Callable[[str, str], str] = lambda ns, name: f"standin-pvc-{ns}-{name}",
    ) -> None:
        self._api = api
        self._release_claim = release_claim
        self._volume_name = volume_name

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
                    # As the garbage collector does: the dependent's own dependents go too
                    # (a Job's pods, which a plain Job delete would orphan).
                    self._api.delete(res, obj["metadata"].get("namespace", ""),
                                     obj["metadata"]["name"], {"propagationPolicy": "Background"})
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
        self._reclaim_volumes(claims)
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
            else:
                volume = self._provision(claim)
                if (claim.get("status") or {}).get("phase") != "Bound":
                    store.update(res, meta["namespace"], meta["name"],
                                 lambda obj, volume=volume: _bind(obj, volume))

    def _provision(self, claim: Obj) -> str:
        """The PersistentVolume of a claim (created on first sight, like a dynamic provisioner
        whose volumes are the kubelet's Docker volumes); returns its name."""
        meta, spec = claim["metadata"], claim.get("spec") or {}
        name = spec.get("volumeName") or f"pvc-{meta['uid']}"
        volumes = self._api.table.by_plural("persistentvolumes")
        if self._api.store.get("persistentvolumes", "", name) is not None:
            return name
        storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        self._api.create(volumes, "", {
            "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": DRIVER}},
            "spec": {
                "capacity": {"storage": storage},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": spec.get("storageClassName", ""),
                "volumeMode": spec.get("volumeMode", "Filesystem"),
                "csi": {"driver": DRIVER,
                        "volumeHandle": self._volume_name(meta["namespace"], meta["name"])},
                "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                             "namespace": meta["namespace"], "name": meta["name"],
                             "uid": meta["uid"]},
            },
        })
        self._api.replace(volumes, "", name, {"metadata": {"name": name},
                                              "status": {"phase": "Bound"}}, "status")
        return name

    def _reclaim_volumes(self, claims: list[Obj]) -> None:
        """Deletes provisioned volumes whose claim is gone (reclaim policy Delete)."""
        volumes, _ = self._api.store.list_raw("persistentvolumes")
        live = {c["metadata"]["uid"] for c in claims}
        res = self._api.table.by_plural("persistentvolumes")
        for volume in volumes:
            spec = volume.get("spec") or {}
            uid = (spec.get("claimRef") or {}).get("uid")
            if uid and uid not in live and spec.get("persistentVolumeReclaimPolicy") == "Delete":
                with contextlib.suppress(errors.ApiError):
                    self._api.delete(res, "", volume["metadata"]["name"])


def _bind(claim: Obj, volume: str) -> Obj:
    spec = claim.setdefault("spec", {})
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    spec["volumeName"] = volume
    claim["status"] = {
        "phase": "Bound",
        "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
        "capacity": {"storage": storage},
    }
    annotations = claim["metadata"].setdefault("annotations", {})
    annotations["pv.kubernetes.io/bind-completed"] = "yes"
    annotations["pv.kubernetes.io/bound-by-controller"] = "yes"
    annotations["volume.kubernetes.io/storage-provisioner"] = DRIVER
    return claim
