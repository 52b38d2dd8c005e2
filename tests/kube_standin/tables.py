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
            _modes(status.get("accessModes")),
            spec.get("storageClassName", ""), _age(obj)]


def _event(obj: Obj) -> list[Any]:
    involved = obj.get("involvedObject") or {}
    return [_age(obj, "lastTimestamp"), obj.get("type", ""), obj.get("reason", ""),
            f"{involved.get('kind', '').lower()}/{involved.get('name', '')}",
            obj.get("message", "")]


def _modes(modes: list[str] | None) -> str:
    short = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
             "ReadWriteOncePod": "RWOP"}
    return ",".join(short.get(m, m) for m in modes or [])


def _volume(obj: Obj) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ref = spec.get("claimRef") or {}
    claim = f"{ref.get('namespace')}/{ref.get('name')}" if ref else ""
    return [obj["metadata"]["name"], (spec.get("capacity") or {}).get("storage", ""),
            _modes(spec.get("accessModes")), spec.get("persistentVolumeReclaimPolicy", ""),
            status.get("phase", ""), claim, spec.get("storageClassName", ""), "<unset>",
            status.get("reason", ""), _age(obj)]


def _statefulset(obj: Obj) -> list[Any]:
    status, spec = obj.get("status") or {}, obj.get("spec") or {}
    return [obj["metadata"]["name"], f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            _age(obj)]


def _daemonset(obj: Obj) -> list[Any]:
    status = obj.get("status") or {}
    selector = ((obj.get("spec") or {}).get("template") or {}).get("spec", {}).get(
        "nodeSelector") or {}
    return [obj["metadata"]["name"], status.get("desiredNumberScheduled", 0),
            status.get("currentNumberScheduled", 0), status.get("numberReady", 0),
            status.get("updatedNumberScheduled", 0), status.get("numberAvailable", 0),
            ",".join(f"{k}={v}" for k, v in selector.items()) or "<none>", _age(obj)]


def _job(obj: Obj) -> list[Any]:
    status, spec = obj.get("status") or {}, obj.get("spec") or {}
    conditions = {c.get("type") for c in status.get("conditions") or []
                  if c.get("status") == "True"}
    state = "Complete" if "Complete" in conditions else (
        "Failed" if "Failed" in conditions else (
            "Suspended" if spec.get("suspend") else "Running"))
    return [obj["metadata"]["name"], state,
            f"{status.get('succeeded', 0)}/{spec.get('completions', 1)}", "", _age(obj)]


def _cronjob(obj: Obj) -> list[Any]:
    status, spec = obj.get("status") or {}, obj.get("spec") or {}
    last = status.get("lastScheduleTime")
    return [obj["metadata"]["name"], spec.get("schedule", ""), spec.get("timeZone", "<none>"),
            str(bool(spec.get("suspend"))), len(status.get("active") or []),
            _age(status, "lastScheduleTime") if last else "<none>", _age(obj)]


def _ingress(obj: Obj) -> list[Any]:
    spec = obj.get("spec") or {}
    hosts = ",".join(r["host"] for r in spec.get("rules") or [] if r.get("host")) or "*"
    ports = "80, 443" if spec.get("tls") else "80"
    return [obj["metadata"]["name"], spec.get("ingressClassName", "<none>"), hosts, "", ports,
            _age(obj)]


def _node(obj: Obj) -> list[Any]:
    status = obj.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or [])
    roles = ",".join(sorted(k.rsplit("/", 1)[1] for k in obj["metadata"].get("labels") or {}
                            if k.startswith("node-role.kubernetes.io/"))) or "<none>"
    return [obj["metadata"]["name"], "Ready" if ready else "NotReady", roles, _age(obj),
            (status.get("nodeInfo") or {}).get("kubeletVersion", "")]


def _namespace(obj: Obj) -> list[Any]:
    return [obj["metadata"]["name"], (obj.get("status") or {}).get("phase", "Active"), _age(obj)]


def _autoscaler(obj: Obj) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    targets = []
    for metric in spec.get("metrics") or []:
        source = metric.get(metric.get("type", "").lower()) or {}
        target = source.get("target") or {}
        wanted = f"{target['averageUtilization']}%" if "averageUtilization" in target else \
            target.get("averageValue") or target.get("value") or ""
        targets.append(f"{source.get('name') or metric.get('type', '').lower()}: "
                       f"<unknown>/{wanted}")
    return [obj["metadata"]["name"], f"{ref.get('kind')}/{ref.get('name')}",
            ", ".join(targets) or "<none>", spec.get("minReplicas", 1), spec.get("maxReplicas"),
            status.get("currentReplicas", 0), _age(obj)]


def _disruption_budget(obj: Obj) -> list[Any]:
    spec = obj.get("spec") or {}
    return [obj["metadata"]["name"], spec.get("minAvailable", "N/A"),
            spec.get("maxUnavailable", "N/A"),
            (obj.get("status") or {}).get("disruptionsAllowed", 0), _age(obj)]


def _network_policy(obj: Obj) -> list[Any]:
    labels = ((obj.get("spec") or {}).get("podSelector") or {}).get("matchLabels") or {}
    return [obj["metadata"]["name"],
            ",".join(f"{k}={v}" for k, v in labels.items()) or "<none>", _age(obj)]


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
    "PersistentVolume": (["Name", "Capacity", "Access Modes", "Reclaim Policy", "Status",
                          "Claim", "StorageClass", "VolumeAttributesClass", "Reason", "Age"],
                         _volume),
    "ReplicationController": (["Name", "Desired", "Current", "Ready", "Age"], _replicaset),
    "HorizontalPodAutoscaler": (["Name", "Reference", "Targets", "MinPods", "MaxPods",
                                 "Replicas", "Age"], _autoscaler),
    "PodDisruptionBudget": (["Name", "Min Available", "Max Unavailable", "Allowed Disruptions",
                             "Age"], _disruption_budget),
    "NetworkPolicy": (["Name", "Pod-Selector", "Age"], _network_policy),
    "Node": (["Name", "Status", "Roles", "Age", "Version"], _node),
    "Namespace": (["Name", "Status", "Age"], _namespace),
    "StatefulSet": (["Name", "Ready", "Age"], _statefulset),
    "DaemonSet": (["Name", "Desired", "Current", "Ready", "Up-to-date", "Available",
                   "Node Selector", "Age"], _daemonset),
    "Job": (["Name", "Status", "Completions", "Duration", "Age"], _job),
    "CronJob": (["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule", "Age"],
                _cronjob),
    "Ingress": (["Name", "Class", "Hosts", "Address", "Ports", "Age"], _ingress),
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

