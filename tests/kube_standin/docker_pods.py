"""Translating a pod's container spec into `docker create` arguments (env, user, limits, ...)."""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.utils import parse_quantity

Obj = dict[str, Any]
Lookup = Callable[[str, str, str], Obj | None]  # (plural, namespace, name) -> object

LABEL = "io.devloop.standin"
LABEL_INSTANCE = "io.devloop.standin.instance"
LABEL_POD_UID = "io.devloop.standin.pod-uid"
LABEL_NAMESPACE = "io.devloop.standin.namespace"
LABEL_POD = "io.devloop.standin.pod"
LABEL_CONTAINER = "io.devloop.standin.container"
LABEL_ATTEMPT = "io.devloop.standin.attempt"
LABEL_INIT = "io.devloop.standin.init"
LABEL_VOLUME_KIND = "io.devloop.standin.volume-kind"
# Where the owning stand-in keeps its state: a container whose state dir is gone is an orphan.
LABEL_STATE_DIR = "io.devloop.standin.state-dir"
# PVC volumes of test stand-ins (removed with them); a user's volumes lack it and are kept.
LABEL_EPHEMERAL = "io.devloop.standin.ephemeral"

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(Exception):
    """The container cannot be created yet; `reason` becomes the waiting state's reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def container_name(namespace: str, pod: str, container: str, uid: str, attempt: int) -> str:
    return f"k8s_{namespace}_{pod}_{container}_{uid[:8]}_{attempt}"


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion; `$$` escapes, unknown references stay as they are."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(sub, text)


def _decode(secret: Obj) -> dict[str, str]:
    return {
        k: base64.b64decode(v).decode("utf-8", "replace")
        for k, v in (secret.get("data") or {}).items()
    }


def _field_ref(pod: Obj, path: str) -> str:
    meta = pod["metadata"]
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": (pod.get("spec") or {}).get("nodeName", ""),
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", "default"),
        "status.podIP": (pod.get("status") or {}).get("podIP", ""),
        "status.hostIP": (pod.get("status") or {}).get("hostIP", ""),
    }
    if path in simple:
        return simple[path]
    found = re.match(r"metadata\.(labels|annotations)\['(.+)'\]$", path)
    if found:
        return (meta.get(found.group(1)) or {}).get(found.group(2), "")
    raise ConfigError("CreateContainerConfigError", f"unsupported fieldRef {path!r}")


def _resource_ref(container: Obj, ref: Obj) -> str:
    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    value = ((container.get("resources") or {}).get(kind) or {}).get(name)
    if value is None:
        return "0"
    divisor = parse_quantity(ref.get("divisor", "1"))
    return str(math.ceil(parse_quantity(value) / divisor))


def resolve_env(pod: Obj, container: Obj, lookup: Lookup) -> list[tuple[str, str]]:
    """The container's environment, as the kubelet resolves it (envFrom first, env wins)."""
    ns = pod["metadata"]["namespace"]
    env: dict[str, str] = {}

    def fetch(plural: str, name: str, optional: bool) -> Obj | None:
        obj = lookup(plural, ns, name)
        if obj is None and not optional:
            kind = "configmap" if plural == "configmaps" else "secret"
            raise ConfigError("CreateContainerConfigError", f'{kind} "{name}" not found')
        return obj

    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref = source["configMapRef"]
            cm = fetch("configmaps", ref["name"], bool(ref.get("optional")))
            for key, value in ((cm or {}).get("data") or {}).items():
                env[prefix + key] = value
        elif "secretRef" in source:
            ref = source["secretRef"]
            secret = fetch("secrets", ref["name"], bool(ref.get("optional")))
            for key, value in _decode(secret or {}).items():
                env[prefix + key] = value
    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" not in item:
            env[name] = expand(item.get("value", ""), env)
            continue
        source = item["valueFrom"]
        if "configMapKeyRef" in source or "secretKeyRef" in source:
            is_cm = "configMapKeyRef" in source
            ref = source["configMapKeyRef" if is_cm else "secretKeyRef"]
            optional = bool(ref.get("optional"))
            obj = fetch("configmaps" if is_cm else "secrets", ref["name"], optional)
            if obj is None:
                continue
            data = (obj.get("data") or {}) if is_cm else _decode(obj)
            if ref["key"] not in data:
                if optional:
                    continue
                kind = "ConfigMap" if is_cm else "Secret"
                raise ConfigError(
                    "CreateContainerConfigError",
                    f"couldn't find key {ref['key']} in {kind} {ns}/{ref['name']}",
                )
            env[name] = data[ref["key"]]
        elif "fieldRef" in source:
            env[name] = _field_ref(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            env[name] = _resource_ref(container, source["resourceFieldRef"])
    return list(env.items())


def security(pod: Obj, container: Obj) -> Obj:
    """Container securityContext with the pod-level defaults merged in."""
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    merged = {k: pod_sc[k] for k in ("runAsUser", "runAsGroup", "runAsNonRoot") if k in pod_sc}
    merged.update(container.get("securityContext") or {})
    return merged


def check_non_root(sc: Obj, image_user: str, pod: str, container: str) -> None:
    """The kubelet's runAsNonRoot verification."""
    if not sc.get("runAsNonRoot"):
        return
    if sc.get("runAsUser") is not None:
        if sc["runAsUser"] == 0:
            raise ConfigError("CreateContainerConfigError",
                              "container's runAsUser breaks non-root policy "
                              f"(pod: \"{pod}\", container: {container})")
        return
    user = image_user.split(":", 1)[0]
    if user in ("", "root", "0"):
        raise ConfigError("CreateContainerConfigError",
                          "container has runAsNonRoot and image will run as root "
                          f"(pod: \"{pod}\", container: {container})")
    if not user.isdigit():
        raise ConfigError("CreateContainerConfigError",
                          f"container has runAsNonRoot and image has non-numeric user ({user}), "
                          "cannot verify user is non-root "
                          f"(pod: \"{pod}\", container: {container})")


@dataclass
class Placement:
    """How the stand-in places containers: the Docker network mode and extra /etc/hosts lines."""

    network: str  # "none" or "host"
    extra_hosts: dict[str, str]


def create_kwargs(
    pod: Obj,
    container: Obj,
    env: list[tuple[str, str]],
    mounts: list[Any],
    placement: Placement,
    name: str,
    labels: dict[str, str],
) -> Obj:
    env_map = dict(env)
    kwargs: Obj = {
        "image": container["image"],
        "name": name,
        "labels": labels,
        "environment": [f"{k}={v}" for k, v in env],
        "network_mode": placement.network,
        "mounts": mounts,
        "detach": True,
    }
    if container.get("command"):
        kwargs["entrypoint"] = [expand(part, env_map) for part in container["command"]]
    if container.get("args"):
        kwargs["command"] = [expand(part, env_map) for part in container["args"]]
    if container.get("workingDir"):
        kwargs["working_dir"] = container["workingDir"]
    sc = security(pod, container)
    if sc.get("runAsUser") is not None:
        user = str(sc["runAsUser"])
        if sc.get("runAsGroup") is not None:
            user += f":{sc['runAsGroup']}"
        kwargs["user"] = user
    if placement.network == "host":
        if placement.extra_hosts:
            kwargs["extra_hosts"] = dict(placement.extra_hosts)
    else:
        kwargs["hostname"] = pod["metadata"]["name"][:63]
    limits = (container.get("resources") or {}).get("limits") or {}
    if "memory" in limits:
        kwargs["mem_limit"] = int(parse_quantity(limits["memory"]))
    if "cpu" in limits:
        kwargs["nano_cpus"] = int(parse_quantity(limits["cpu"]) * 1_000_000_000)
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    groups = [str(g) for g in pod_sc.get("supplementalGroups") or []]
    if pod_sc.get("fsGroup") is not None:
        groups.append(str(pod_sc["fsGroup"]))
    if groups:
        kwargs["group_add"] = groups
    if sc.get("readOnlyRootFilesystem"):
        kwargs["read_only"] = True
    if sc.get("privileged"):
        kwargs["privileged"] = True
    caps = sc.get("capabilities") or {}
    if caps.get("add"):
        kwargs["cap_add"] = [c.removeprefix("CAP_") for c in caps["add"]]
    if caps.get("drop"):
        kwargs["cap_drop"] = [c.removeprefix("CAP_") for c in caps["drop"]]
    if sc.get("allowPrivilegeEscalation") is False:
        kwargs["security_opt"] = ["no-new-privileges"]
    if container.get("tty"):
        kwargs["tty"] = True
    if container.get("stdin"):
        kwargs["stdin_open"] = True
    return kwargs
