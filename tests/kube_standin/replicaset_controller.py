"""ReplicaSet controller: keeps `spec.replicas` pods of the template and reports their status."""

from __future__ import annotations

import logging
from collections import defaultdict

from . import errors
from .api import Api
from .pod_state import (
    Obj,
    controller_uid,
    is_active,
    is_available,
    is_ready,
)
from .workloads import pod_from_template

log = logging.getLogger("kube_standin.replicasets")


def _deletion_rank(pod: Obj) -> tuple[int, str]:
    """Which pods go first when scaling down: unscheduled, pending, not ready, then newest."""
    status = pod.get("status") or {}
    if not (pod.get("spec") or {}).get("nodeName"):
        stage = 0
    elif status.get("phase") == "Pending":
        stage = 1
    elif not is_ready(pod):
        stage = 2
    else:
        stage = 3
    # Newer pods first within a stage: invert by sorting on negative-ish timestamp.
    return (stage, "".join(chr(255 - ord(c)) for c in pod["metadata"]["creationTimestamp"]))


class ReplicaSetController:
    def __init__(self, api: Api) -> None:
        self._api = api
        self._rs = api.table.by_plural("replicasets")
        self._pods = api.table.by_plural("pods")

    def reconcile(self) -> None:
        store = self._api.store
        replicasets, _ = store.list_raw("replicasets")
        pods, _ = store.list_raw("pods")
        owned: dict[str, list[Obj]] = defaultdict(list)
        for pod in pods:
            uid = controller_uid(pod)
            if uid:
                owned[uid].append(pod)
        for rs in replicasets:
            if rs["metadata"].get("deletionTimestamp"):
                continue
            try:
                self._sync(rs, owned.get(rs["metadata"]["uid"], []))
            except errors.ApiError as exc:
                if exc.code not in (404, 409):
                    log.warning("replicaset %s/%s: %s", rs["metadata"].get("namespace"),
                                rs["metadata"]["name"], exc.message)

    def _sync(self, rs: Obj, pods: list[Obj]) -> None:
        ns, name = rs["metadata"]["namespace"], rs["metadata"]["name"]
        active = [p for p in pods if is_active(p)]
        wanted = (rs.get("spec") or {}).get("replicas", 1)
        if len(active) < wanted:
            for _ in range(wanted - len(active)):
                self._api.create(self._pods, ns, pod_from_template(rs, rs["spec"].get("template")))
        elif len(active) > wanted:
            for pod in sorted(active, key=_deletion_rank)[: len(active) - wanted]:
                self._api.delete(self._pods, ns, pod["metadata"]["name"])
        min_ready = (rs.get("spec") or {}).get("minReadySeconds", 0)
        status = {
            "replicas": len(active),
            "fullyLabeledReplicas": len(active),
            "readyReplicas": sum(1 for p in active if is_ready(p)),
            "availableReplicas": sum(1 for p in active if is_available(p, min_ready)),
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        if status.get("readyReplicas") == 0:
            status.pop("readyReplicas")
        if status.get("availableReplicas") == 0:
            status.pop("availableReplicas")
        if rs.get("status") != status:
            def write(obj: Obj) -> Obj:
                obj["status"] = status
                return obj

            self._api.store.update(self._rs, ns, name, write)
