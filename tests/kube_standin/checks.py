"""Semantic validation the API server does beyond the schema (names, selectors, immutability)."""

from __future__ import annotations

import json
import re
from typing import Any

from .cron_schedule import Schedule, ScheduleError
from .selectors import label_selector_object

Obj = dict[str, Any]
Causes = list[tuple[str, str]]

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character"
)


def name_causes(kind: str, name: str) -> Causes:
    if not name:
        return [("metadata.name", "Required value: name or generateName is required")]
    dns_label_kinds = ("Namespace", "Service")
    if kind in dns_label_kinds:
        if len(name) > 63 or not _LABEL.match(name):
            return [("metadata.name", f'Invalid value: "{name}": {LABEL_MSG}')]
    elif len(name) > 253 or not _SUBDOMAIN.match(name):
        return [("metadata.name", f'Invalid value: "{name}": {SUBDOMAIN_MSG}')]
    return []


def pod_spec_causes(spec: Obj, prefix: str, claim_templates: list[str] | None = None) -> Causes:
    """`claim_templates`: a StatefulSet's volumeClaimTemplates, which mounts may name too."""
    causes: Causes = []
    containers = spec.get("containers") or []
    if not containers:
        causes.append((f"{prefix}.containers", "Required value"))
    seen: set[str] = set()
    for group in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(group) or []):
            path = f"{prefix}.{group}[{index}]"
            name = container.get("name", "")
            if not _LABEL.match(name or "") or len(name) > 63:
                causes.append((f"{path}.name", f'Invalid value: "{name}": {LABEL_MSG}'))
            if name in seen:
                causes.append((f"{path}.name", f'Duplicate value: "{name}"'))
            seen.add(name)
            if not container.get("image"):
                causes.append((f"{path}.image", "Required value"))
    volume_names = [v.get("name") for v in spec.get("volumes") or []] + (claim_templates or [])
    for group in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(group) or []):
            for mi, mount in enumerate(container.get("volumeMounts") or []):
                if mount.get("name") not in volume_names:
                    causes.append((
                        f"{prefix}.{group}[{index}].volumeMounts[{mi}].name",
                        f'Not found: "{mount.get("name")}"',
                    ))
    return causes


def workload_causes(obj: Obj) -> Causes:
    spec = obj.get("spec") or {}
    causes: Causes = []
    selector = spec.get("selector")
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        causes.append(("spec.selector", "Required value"))
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if selector and not label_selector_object(selector)(labels):
        causes.append((
            "spec.template.metadata.labels",
            f"Invalid value: {json.dumps(labels)}: `selector` does not match template `labels`",
        ))
    if (spec.get("replicas") or 0) < 0:
        causes.append(("spec.replicas", "Invalid value: must be greater than or equal to 0"))
    claims = [(t.get("metadata") or {}).get("name") for t in spec.get("volumeClaimTemplates") or []]
    causes.extend(pod_spec_causes(template.get("spec") or {}, "spec.template.spec", claims))
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate" and strategy.get("rollingUpdate"):
        causes.append((
            "spec.strategy.rollingUpdate",
            "Forbidden: may not be specified when strategy `type` is 'Recreate'",
        ))
    return causes


def job_causes(spec: Obj, prefix: str) -> Causes:
    """A Job's pods must not restart in place forever: Never or OnFailure only."""
    pod = (spec.get("template") or {}).get("spec") or {}
    causes = pod_spec_causes(pod, f"{prefix}.template.spec")
    policy = pod.get("restartPolicy")
    if policy not in ("Never", "OnFailure"):
        causes.append((f"{prefix}.template.spec.restartPolicy",
                       f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"'))
    return causes


def _schedule_causes(schedule: Any) -> Causes:
    try:
        Schedule.parse(str(schedule or ""))
    except ScheduleError as exc:
        return [("spec.schedule", f"Invalid value: {json.dumps(schedule)}: {exc}")]
    return []


def object_causes(obj: Obj) -> Causes:
    """Validation of a new or replaced object (after defaulting)."""
    kind = obj.get("kind", "")
    causes = name_causes(kind, (obj.get("metadata") or {}).get("name", ""))
    if kind == "Pod":
        causes.extend(pod_spec_causes(obj.get("spec") or {}, "spec"))
    elif kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"):
        causes.extend(workload_causes(obj))
    elif kind in ("Job", "CronJob"):
        spec = obj.get("spec") or {}
        prefix = "spec"
        if kind == "CronJob":
            causes.extend(_schedule_causes(spec.get("schedule")))
            spec, prefix = (spec.get("jobTemplate") or {}).get("spec") or {}, \
                "spec.jobTemplate.spec"
        causes.extend(job_causes(spec, prefix))
    elif kind in ("ReplicationController", "PodTemplate"):
        template = (obj.get("spec") if kind != "PodTemplate" else obj) or {}
        prefix = "spec.template.spec" if kind != "PodTemplate" else "template.spec"
        causes.extend(pod_spec_causes((template.get("template") or {}).get("spec") or {},
                                      prefix))
    elif kind == "Service":
        for index, port in enumerate((obj.get("spec") or {}).get("ports") or []):
            node_port = port.get("nodePort")
            if node_port is not None and not 30000 <= node_port <= 32767:
                causes.append((
                    f"spec.ports[{index}].nodePort",
                    f"Invalid value: {node_port}: provided port is not in the valid range. "
                    "The range of valid ports is 30000-32767",
                ))
    return causes


def _without_images(spec: Obj) -> Obj:
    clean = json.loads(json.dumps(spec))
    for group in ("initContainers", "containers"):
        for container in clean.get(group) or []:
            container.pop("image", None)
    clean.pop("activeDeadlineSeconds", None)
    clean.pop("tolerations", None)
    return clean


def update_causes(old: Obj, new: Obj) -> Causes:
    """Immutability rules on update."""
    kind = new.get("kind", "")
    causes: Causes = []
    if kind in ("Deployment", "ReplicaSet"):
        if (old.get("spec") or {}).get("selector") != (new.get("spec") or {}).get("selector"):
            causes.append((
                "spec.selector",
                f"Invalid value: {json.dumps((new.get('spec') or {}).get('selector'))}: "
                "field is immutable",
            ))
    elif kind == "Job":
        old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
        if old_spec.get("template") != new_spec.get("template"):
            causes.append((
                "spec.template",
                f"Invalid value: {json.dumps(new_spec.get('template'))[:200]}: field is immutable",
            ))
        if old_spec.get("selector") != new_spec.get("selector"):
            causes.append(("spec.selector", "Invalid value: field is immutable"))
    elif kind == "Pod":
        old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
        node = old_spec.get("nodeName")
        if node and not new_spec.get("nodeName"):
            new_spec["nodeName"] = node
        if _without_images(old_spec) != _without_images(new_spec):
            causes.append((
                "spec",
                "Forbidden: pod updates may not change fields other than "
                "`spec.containers[*].image`, `spec.initContainers[*].image`, "
                "`spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing "
                "tolerations), `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if "
                "it was previously negative)",
            ))
    elif kind == "Service":
        old_ip = (old.get("spec") or {}).get("clusterIP")
        new_spec = new.setdefault("spec", {})
        if not new_spec.get("clusterIP"):
            new_spec["clusterIP"] = old_ip
            new_spec["clusterIPs"] = (old.get("spec") or {}).get("clusterIPs", [old_ip])
        elif new_spec.get("clusterIP") != old_ip:
            causes.append(("spec.clusterIP", "Invalid value: field is immutable"))
    elif kind == "PersistentVolumeClaim":
        old_spec, new_spec = dict(old.get("spec") or {}), dict(new.get("spec") or {})
        for spec in (old_spec, new_spec):
            spec.pop("resources", None)
            spec.pop("volumeName", None)
        if old_spec != new_spec:
            causes.append((
                "spec",
                "Forbidden: spec is immutable after creation except resources.requests and "
                "volumeAttributesClassName for bound claims",
            ))
    return causes
