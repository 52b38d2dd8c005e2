"""One table of the Kubernetes kinds devloop reads, applies or deletes, and where their pods are.

Every module that needs "which API serves this kind", "is it namespaced" or "where is this
workload's pod template" asks here, so a kind added once works for install, apply, down, image
injection and the workload views alike.

Custom kinds (an Argo Rollout, a Knative Service, ...) carry images at places only the user
knows; devloop.yaml names them with `image_paths: {Kind: [path, ...]}`. A path is keys joined by
dots; `[*]` after a key means every item of that list and `[N]` the item at index N, e.g.
`spec.image` or `spec.template.spec.containers[*].image`. A key is `apiVersion group/Kind` or just
`Kind` (e.g. `argoproj.io/Rollout` or `Rollout`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ImagePaths = Mapping[str, Sequence[str]]

# Where a workload kind keeps its pod template; () = the object itself is the pod.
_TEMPLATE = ("spec", "template")
_CRON_TEMPLATE = ("spec", "jobTemplate", "spec", "template")


@dataclass(frozen=True)
class Kind:
    """One kind: how the API serves it and where its pod template lives."""

    kind: str
    group: str  # "" for the core group
    version: str
    plural: str
    namespaced: bool = True
    template: tuple[str, ...] | None = None  # path to the pod template; () = a Pod; None = no pods
    client: str = "CoreV1Api"  # the kubernetes client API class serving it
    snake: str = ""  # the client's method suffix: read_namespaced_<snake>, ...

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def workload(self) -> bool:
        """True when objects of this kind run pods."""
        return self.template is not None


def _k(kind: str, group: str, version: str, plural: str, snake: str, client: str,
       namespaced: bool = True, template: tuple[str, ...] | None = None) -> Kind:
    return Kind(kind, group, version, plural, namespaced, template, client, snake)


KINDS: tuple[Kind, ...] = (
    _k("Namespace", "", "v1", "namespaces", "namespace", "CoreV1Api", namespaced=False),
    _k("ServiceAccount", "", "v1", "serviceaccounts", "service_account", "CoreV1Api"),
    _k("ConfigMap", "", "v1", "configmaps", "config_map", "CoreV1Api"),
    _k("Secret", "", "v1", "secrets", "secret", "CoreV1Api"),
    _k("PersistentVolumeClaim", "", "v1", "persistentvolumeclaims", "persistent_volume_claim",
       "CoreV1Api"),
    _k("PersistentVolume", "", "v1", "persistentvolumes", "persistent_volume", "CoreV1Api",
       namespaced=False),
    _k("Service", "", "v1", "services", "service", "CoreV1Api"),
    _k("Endpoints", "", "v1", "endpoints", "endpoints", "CoreV1Api"),
    _k("Pod", "", "v1", "pods", "pod", "CoreV1Api", template=()),
    _k("ReplicaSet", "apps", "v1", "replicasets", "replica_set", "AppsV1Api", template=_TEMPLATE),
    _k("Deployment", "apps", "v1", "deployments", "deployment", "AppsV1Api", template=_TEMPLATE),
    _k("StatefulSet", "apps", "v1", "statefulsets", "stateful_set", "AppsV1Api",
       template=_TEMPLATE),
    _k("DaemonSet", "apps", "v1", "daemonsets", "daemon_set", "AppsV1Api", template=_TEMPLATE),
    _k("Job", "batch", "v1", "jobs", "job", "BatchV1Api", template=_TEMPLATE),
    _k("CronJob", "batch", "v1", "cronjobs", "cron_job", "BatchV1Api", template=_CRON_TEMPLATE),
    _k("Ingress", "networking.k8s.io", "v1", "ingresses", "ingress", "NetworkingV1Api"),
    _k("NetworkPolicy", "networking.k8s.io", "v1", "networkpolicies", "network_policy",
       "NetworkingV1Api"),
    _k("Role", "rbac.authorization.k8s.io", "v1", "roles", "role", "RbacAuthorizationV1Api"),
    _k("RoleBinding", "rbac.authorization.k8s.io", "v1", "rolebindings", "role_binding",
       "RbacAuthorizationV1Api"),
    _k("ClusterRole", "rbac.authorization.k8s.io", "v1", "clusterroles", "cluster_role",
       "RbacAuthorizationV1Api", namespaced=False),
    _k("ClusterRoleBinding", "rbac.authorization.k8s.io", "v1", "clusterrolebindings",
       "cluster_role_binding", "RbacAuthorizationV1Api", namespaced=False),
    _k("HorizontalPodAutoscaler", "autoscaling", "v2", "horizontalpodautoscalers",
       "horizontal_pod_autoscaler", "AutoscalingV2Api"),
    _k("PodDisruptionBudget", "policy", "v1", "poddisruptionbudgets", "pod_disruption_budget",
       "PolicyV1Api"),
)

_BY_GROUP_KIND = {(k.group, k.kind): k for k in KINDS}
_BY_NAME = {n: k for k in KINDS for n in (k.kind.lower(), k.plural)}
WORKLOAD_KINDS: tuple[str, ...] = tuple(k.kind for k in KINDS if k.workload)


def group_of(api_version: str | None) -> str:
    """"apps" for "apps/v1", "" for "v1" (the core group)."""
    return api_version.rsplit("/", 1)[0] if api_version and "/" in api_version else ""


def kind_of(obj: Mapping[str, Any]) -> Kind | None:
    """The table entry of a manifest object, by its apiVersion group and kind; None if unknown."""
    return _BY_GROUP_KIND.get((group_of(obj.get("apiVersion")), str(obj.get("kind"))))


def find_kind(name: str) -> Kind | None:
    """The kind a user names in devloop.yaml ("statefulset", "StatefulSet", "statefulsets")."""
    return _BY_NAME.get(name.lower())


def client_method(api_client: Any, kind: Kind, verb: str) -> Any:
    """The kubernetes client's bound method `verb` ("read", "create", "list", "delete", "patch",
    "replace") for `kind`: `read_namespaced_stateful_set` or `read_namespace`, ..."""
    from kubernetes import client as k8s  # the table itself needs no client

    api = getattr(k8s, kind.client)(api_client)
    scope = "namespaced_" if kind.namespaced else ""
    return getattr(api, f"{verb}_{scope}{kind.snake}")


# --- paths into objects ------------------------------------------------------------------------

_STEP = re.compile(r"([^.\[\]]+)((?:\[(?:\*|\d+)\])*)")


class PathError(ValueError):
    """An image path that does not follow the documented syntax."""


def parse_path(path: str) -> list[str | int]:
    """`spec.template.spec.containers[*].image` -> ["spec", "template", "spec", "containers",
    "*", "image"]; ints for `[N]`. PathError says what is wrong."""
    steps: list[str | int] = []
    for part in path.split("."):
        match = _STEP.fullmatch(part)
        if not match:
            raise PathError(f"image path {path!r}: {part!r} is not a key, key[*] or key[N]"
                            " (write keys joined by dots, e.g. spec.template.spec.containers[*]"
                            ".image)")
        steps.append(match.group(1))
        for index in re.findall(r"\[(\*|\d+)\]", match.group(2)):
            steps.append("*" if index == "*" else int(index))
    return steps


def resolve(obj: Any, path: str) -> Iterator[tuple[Any, str | int]]:
    """Every (parent, key) that `path` names in `obj` (references: parent[key] is the value).

    Missing keys and wrong types yield nothing: a path that does not apply to one object of the
    kind is not an error."""
    steps = parse_path(path)

    def walk(node: Any, rest: list[str | int]) -> Iterator[tuple[Any, str | int]]:
        step, more = rest[0], rest[1:]
        if step == "*":
            keys: list[Any] = list(range(len(node))) if isinstance(node, list) else []
        elif isinstance(step, int):
            keys = [step] if isinstance(node, list) and step < len(node) else []
        else:
            keys = [step] if isinstance(node, dict) and step in node else []
        for key in keys:
            if more:
                yield from walk(node[key], more)
            else:
                yield node, key

    yield from walk(obj, steps)


def custom_paths(obj: Mapping[str, Any], image_paths: ImagePaths | None) -> list[str]:
    """The configured image paths that apply to `obj` (by `group/Kind` or `Kind`)."""
    if not image_paths:
        return []
    kind = str(obj.get("kind"))
    group = group_of(obj.get("apiVersion"))
    return [*image_paths.get(f"{group}/{kind}", ()), *image_paths.get(kind, ())]


def pod_template(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The pod template of a built-in workload (a reference into `obj`); a Pod is its own."""
    kind = kind_of(obj)
    if kind is None or kind.template is None:
        return None
    node: Any = obj
    for key in kind.template:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def pod_specs(obj: Mapping[str, Any], image_paths: ImagePaths | None = None
              ) -> list[dict[str, Any]]:
    """Every pod spec in `obj` (references, so a caller may edit them in place).

    A built-in workload has one (its template's `spec`; a Pod's own `spec`). A custom kind has
    those its image paths reach through `...containers[*].image` or `...initContainers[*].image`:
    the dict holding that list is taken for a pod spec."""
    found: list[dict[str, Any]] = []
    template = pod_template(obj)
    if template is not None and isinstance(template.get("spec"), dict):
        found.append(template["spec"])
    for path in custom_paths(obj, image_paths):
        steps = parse_path(path)
        for i, step in enumerate(steps):
            if step in ("containers", "initContainers") and i > 0:
                prefix = ".".join(_render(steps[:i]))
                for parent, key in resolve(obj, prefix) if prefix else ():
                    spec = parent[key]
                    if isinstance(spec, dict) and all(spec is not f for f in found):
                        found.append(spec)
                break
    return found


def _render(steps: list[str | int]) -> list[str]:
    """Steps back to path parts ("a", "b[*]", ...) so a prefix can be resolved again."""
    parts: list[str] = []
    for step in steps:
        if isinstance(step, int) or step == "*":
            parts[-1] += f"[{step}]"
        else:
            parts.append(step)
    return parts
