"""Server-side defaulting, so objects read back look like the real API server's."""

from __future__ import annotations

import base64
import copy
from typing import Any

Obj = dict[str, Any]

PROBE_DEFAULTS = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                  "failureThreshold": 3}


def default_pull_policy(image: str) -> str:
    """Kubernetes: `Always` for `:latest` or untagged images, else `IfNotPresent`."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _container(container: Obj) -> None:
    container.setdefault("imagePullPolicy", default_pull_policy(container.get("image", "")))
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(probe_name)
        if not probe:
            continue
        for key, value in PROBE_DEFAULTS.items():
            probe.setdefault(key, value)
        if "httpGet" in probe:
            probe["httpGet"].setdefault("scheme", "HTTP")
            probe["httpGet"].setdefault("path", "/")
    for env in container.get("env") or []:
        ref = (env.get("valueFrom") or {}).get("fieldRef")
        if ref:
            ref.setdefault("apiVersion", "v1")


def pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for container in spec.get("initContainers") or []:
        _container(container)
    for container in spec.get("containers") or []:
        _container(container)
    for volume in spec.get("volumes") or []:
        for kind in ("configMap", "secret"):
            if kind in volume:
                volume[kind].setdefault("defaultMode", 420)


def _template(spec: Obj) -> None:
    template = spec.setdefault("template", {})
    pod_spec(template.setdefault("spec", {}))


def _statefulset(spec: Obj) -> None:
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("revisionHistoryLimit", 10)
    strategy = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
    if strategy.get("type") == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    spec.setdefault("persistentVolumeClaimRetentionPolicy",
                    {"whenDeleted": "Retain", "whenScaled": "Retain"})
    _template(spec)


def _daemonset(spec: Obj) -> None:
    spec.setdefault("revisionHistoryLimit", 10)
    strategy = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
    if strategy.get("type") == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", 1)
        rolling.setdefault("maxSurge", 0)
    _template(spec)


def _job(spec: Obj) -> None:
    spec.setdefault("parallelism", 1)
    spec.setdefault("completions", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    _template(spec)


def _cronjob(spec: Obj) -> None:
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    _job(spec.setdefault("jobTemplate", {}).setdefault("spec", {}))


def _replication_controller(spec: Obj) -> None:
    spec.setdefault("replicas", 1)
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    if labels and not spec.get("selector"):
        spec["selector"] = dict(labels)
    _template(spec)


def _persistent_volume(spec: Obj) -> None:
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    spec.setdefault("volumeMode", "Filesystem")


def _network_policy(spec: Obj) -> None:
    spec.setdefault("policyTypes", ["Ingress", "Egress"] if "egress" in spec else ["Ingress"])


_MORE = {
    "StatefulSet": _statefulset,
    "DaemonSet": _daemonset,
    "Job": _job,
    "CronJob": _cronjob,
    "ReplicationController": _replication_controller,
    "PersistentVolume": _persistent_volume,
    "NetworkPolicy": _network_policy,
}

# The status a new object starts with (the fields clients require, at zero), for kinds with a
# status subresource; what clients send as status on create is dropped, as the real server does.
_INITIAL_STATUS: dict[str, Obj] = {
    "ReplicaSet": {"replicas": 0},
    "ReplicationController": {"replicas": 0},
    "StatefulSet": {"replicas": 0, "availableReplicas": 0},
    "DaemonSet": {"currentNumberScheduled": 0, "desiredNumberScheduled": 0,
                  "numberMisscheduled": 0, "numberReady": 0},
    "HorizontalPodAutoscaler": {"currentReplicas": 0, "desiredReplicas": 0},
    "PodDisruptionBudget": {"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0,
                            "expectedPods": 0},
    "PersistentVolume": {"phase": "Available"},
    "Ingress": {"loadBalancer": {}},
}


def initial_status(kind: str) -> Obj:
    return copy.deepcopy(_INITIAL_STATUS.get(kind, {}))


def apply(kind: str, obj: Obj) -> Obj:
    """Returns `obj` with defaults filled in (mutates and returns it)."""
    meta = obj.setdefault("metadata", {})
    spec = obj.get("spec")
    if kind == "Pod":
        pod_spec(obj.setdefault("spec", {}))
        obj.setdefault("status", {}).setdefault("phase", "Pending")
        obj["status"].setdefault("qosClass", "BestEffort")
    elif kind == "Deployment" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxSurge", "25%")
            rolling.setdefault("maxUnavailable", "25%")
        _template(spec)
    elif kind == "ReplicaSet" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        _template(spec)
    elif kind == "Secret":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None) or {}
        if string_data:
            data = obj.setdefault("data", {})
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
    elif kind == "Service" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        if spec["type"] in ("NodePort", "LoadBalancer"):
            spec.setdefault("externalTrafficPolicy", "Cluster")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
    elif kind == "PersistentVolumeClaim" and isinstance(spec, dict):
        spec.setdefault("volumeMode", "Filesystem")
    elif kind == "PodTemplate":
        _template(obj)
    elif kind in _MORE and isinstance(spec, dict):
        _MORE[kind](spec)
    elif kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta.get("name", "")
    return obj


def copy_with_defaults(kind: str, obj: Obj) -> Obj:
    return apply(kind, copy.deepcopy(obj))
