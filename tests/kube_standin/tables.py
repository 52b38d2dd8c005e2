"""Server-side printing (`as=Table`), so `kubectl get` shows the usual columns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .clock import now, parse_time

Obj = dict[str, Any]


def wants_table(accept: str) -> bool:
    first = accept.split(",")[0]
    return "as=Table" in first


def _age(obj: Obj, field: str = "creationTimestamp") -> str:
    stamp = obj.get("metadata", {}).get(field) if field == "creationTimestamp" else obj.get(field)
    if not stamp:
        return "<unknown>"
    seconds = int((now() - parse_time(stamp)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * 2 or (unit == "m" and seconds >= 120):
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _pod(obj: Obj) -> list[Any]:
    status = obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    total = len((obj.get("spec") or {}).get("containers") or [])
    reason = status.get("phase", "Pending")
    for cs in statuses:
        state = cs.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state and state["terminated"].get("reason"):
            reason = state["terminated"]["reason"]
    if obj["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    restarts = sum(c.get("restartCount", 0) for c in statuses)
    return [obj["metadata"]["name"], f"{ready}/{total}", reason, restarts, _age(obj)]


def _deployment(obj: Obj) -> list[Any]:
    status, spec = obj.get("status") or {}, obj.get("spec") or {}
    return [obj["metadata"]["name"], f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0), _age(obj)]


def _replicaset(obj: Obj) -> list[Any]:
    status, spec = obj.get("status") or {}, obj.get("spec") or {}
    return [obj["metadata"]["name"], spec.get("replicas", 0), status.get("replicas", 0),
            status.get("readyReplicas", 0), _age(obj)]


def _service(obj: Obj) -> list[Any]:
    spec = obj.get("spec") or {}
    ports = ",".join(
        f"{p.get('port')}{':' + str(p['nodePort']) if p.get('nodePort') else ''}/"
        f"{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
    return [obj["metadata"]["name"], spec.get("type", "ClusterIP"), spec.get("clusterIP", ""),
            "<none>", ports or "<none>", _age(obj)]


def _claim(obj: Obj) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [obj["metadata"]["name"], status.get("phase", "Pending"), spec.get("volumeName", ""),
            (status.get("capacity") or {}).get("storage", ""),
            ",".join({"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX"}.get(
                m, m) for m in status.get("accessModes") or []),
            spec.get("storageClassName", ""), _age(obj)]


def _event(obj: Obj) -> list[Any]:
    involved = obj.get("involvedObject") or {}
    return [_age(obj, "lastTimestamp"), obj.get("type", ""), obj.get("reason", ""),
            f"{involved.get('kind', '').lower()}/{involved.get('name', '')}",
            obj.get("message", "")]


def _default(obj: Obj) -> list[Any]:
    return [obj["metadata"]["name"], _age(obj)]


COLUMNS: dict[str, tuple[list[str], Callable[[Obj], list[Any]]]] = {
    "Pod": (["Name", "Ready", "Status", "Restarts", "Age"], _pod),
    "Deployment": (["Name", "Ready", "Up-to-date", "Available", "Age"], _deployment),
    "ReplicaSet": (["Name", "Desired", "Current", "Ready", "Age"], _replicaset),
    "Service": (["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"], _service),
    "PersistentVolumeClaim": (["Name", "Status", "Volume", "Capacity", "Access Modes",
                               "StorageClass", "Age"], _claim),
    "Event": (["Last Seen", "Type", "Reason", "Object", "Message"], _event),
}


def table(kind: str, items: list[Obj], resource_version: str) -> Obj:
    names, row = COLUMNS.get(kind, (["Name", "Age"], _default))
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {"name": n, "type": "integer" if n in ("Restarts", "Desired", "Current") else
             "string", "format": "name" if n == "Name" else "", "description": n, "priority": 0}
            for n in names
        ],
        "rows": [
            {"cells": row(item), "object": {
                "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": item["metadata"]}}
            for item in items
        ],
    }

