"""The resource kinds the stand-in serves, and the discovery documents derived from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STORAGE_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Resource:
    """One REST resource (e.g. `deployments` in `apps/v1`)."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    # Whether metadata.generation tracks spec changes (workloads do, config objects do not).
    has_generation: bool = False
    # Kinds whose deletion waits for a controller (pods wait for their containers to stop).
    graceful_delete: bool = False
    singular: str = field(default="")
    categories: tuple[str, ...] = ()
    # What discovery advertises and the router accepts; reviews are create-only, not stored.
    verbs: tuple[str, ...] = tuple(STORAGE_VERBS)

    @property
    def stored(self) -> bool:
        return "get" in self.verbs

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


REVIEW_VERBS = ("create",)
WORKLOAD = ("status", "scale")


def _stored(group: str, version: str, kind: str, plural: str, namespaced: bool = True,
            short: tuple[str, ...] = (), subresources: tuple[str, ...] = (),
            workload: bool = False, **extra: Any) -> Resource:
    """A kind the stand-in stores; `workload`: generation-tracked and in `kubectl get all`."""
    if workload:
        extra.setdefault("has_generation", True)
        extra.setdefault("categories", ("all",))
    return Resource(group, version, kind, plural, namespaced, short, subresources, **extra)


CORE: tuple[Resource, ...] = (
    Resource("", "v1", "Namespace", "namespaces", False, ("ns",), ("status", "finalize")),
    Resource("", "v1", "Node", "nodes", False, ("no",), ("status",)),
    Resource("", "v1", "ConfigMap", "configmaps", True, ("cm",)),
    Resource("", "v1", "Secret", "secrets", True),
    Resource("", "v1", "ServiceAccount", "serviceaccounts", True, ("sa",)),
    Resource("", "v1", "Service", "services", True, ("svc",), ("status",), categories=("all",)),
    Resource("", "v1", "Endpoints", "endpoints", True, ("ep",)),
    Resource("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ("pvc",),
             ("status",)),
    Resource("", "v1", "PersistentVolume", "persistentvolumes", False, ("pv",), ("status",)),
    Resource(
        "", "v1", "Pod", "pods", True, ("po",), ("status", "log", "exec", "portforward"),
        has_generation=True, graceful_delete=True, categories=("all",),
    ),
    Resource("", "v1", "Event", "events", True, ("ev",)),
    _stored("", "v1", "PodTemplate", "podtemplates"),
    _stored("", "v1", "ReplicationController", "replicationcontrollers", short=("rc",),
            subresources=WORKLOAD, workload=True),
    _stored("", "v1", "LimitRange", "limitranges", short=("limits",)),
    _stored("", "v1", "ResourceQuota", "resourcequotas", short=("quota",),
            subresources=("status",)),
    _stored("", "v1", "ComponentStatus", "componentstatuses", False, ("cs",),
            verbs=("get", "list")),
    Resource("", "v1", "Binding", "bindings", True, verbs=REVIEW_VERBS),
)

APPS: tuple[Resource, ...] = (
    Resource(
        "apps", "v1", "Deployment", "deployments", True, ("deploy",), ("status", "scale"),
        has_generation=True, categories=("all",),
    ),
    Resource(
        "apps", "v1", "ReplicaSet", "replicasets", True, ("rs",), ("status", "scale"),
        has_generation=True, categories=("all",),
    ),
    _stored("apps", "v1", "StatefulSet", "statefulsets", short=("sts",), subresources=WORKLOAD,
            workload=True),
    _stored("apps", "v1", "DaemonSet", "daemonsets", short=("ds",), subresources=("status",),
            workload=True),
    _stored("apps", "v1", "ControllerRevision", "controllerrevisions"),
)

OTHER_GROUPS: tuple[Resource, ...] = (
    _stored("batch", "v1", "Job", "jobs", subresources=("status",), workload=True),
    _stored("batch", "v1", "CronJob", "cronjobs", short=("cj",), subresources=("status",),
            workload=True),
    _stored("networking.k8s.io", "v1", "Ingress", "ingresses", short=("ing",),
            subresources=("status",), has_generation=True),
    _stored("networking.k8s.io", "v1", "IngressClass", "ingressclasses", False),
    _stored("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", short=("netpol",),
            has_generation=True),
    _stored("networking.k8s.io", "v1", "IPAddress", "ipaddresses", False, ("ip",)),
    _stored("networking.k8s.io", "v1", "ServiceCIDR", "servicecidrs", False,
            subresources=("status",)),
    _stored("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
            short=("hpa",), subresources=("status",), workload=True),
    _stored("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", short=("pdb",),
            subresources=("status",), has_generation=True),
    _stored("apiextensions.k8s.io", "v1", "CustomResourceDefinition",
            "customresourcedefinitions", False, ("crd", "crds"), ("status",)),
    _stored("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    _stored("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    _stored("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    _stored("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings",
            False),
    Resource("authorization.k8s.io", "v1", "SelfSubjectAccessReview",
             "selfsubjectaccessreviews", False, verbs=REVIEW_VERBS),
    Resource("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews",
             False, verbs=REVIEW_VERBS),
    Resource("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", False,
             verbs=REVIEW_VERBS),
    Resource("authorization.k8s.io", "v1", "LocalSubjectAccessReview",
             "localsubjectaccessreviews", True, verbs=REVIEW_VERBS),
    Resource("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", False,
             verbs=REVIEW_VERBS),
)

RESOURCES: tuple[Resource, ...] = CORE + APPS + OTHER_GROUPS


class ResourceTable:
    """Looks resources up by (group, version, plural) or by kind."""

    def __init__(self, resources: tuple[Resource, ...] = RESOURCES) -> None:
        self._builtin = resources
        self._index(resources)

    def _index(self, resources: tuple[Resource, ...]) -> None:
        # Built whole, then swapped in: request threads read them while a CRD is written.
        self._by_path = {(r.group, r.version, r.plural): r for r in resources}
        self._by_kind = {(r.api_version, r.kind): r for r in resources}
        self.everything = resources
        # What controllers, garbage collection and namespace termination walk: stored kinds.
        self.all = tuple(r for r in resources if r.stored)

    def set_custom(self, crds: list[dict[str, Any]]) -> None:
        """Serve the custom resources the stored CustomResourceDefinitions define (their served
        versions), as kube-apiserver does once a CRD is established; called on every CRD
        write. A custom plural equal to a built-in one is not served (see README)."""
        builtin_plurals = {r.plural for r in self._builtin}
        custom: list[Resource] = []
        for crd in crds:
            if (crd.get("metadata") or {}).get("deletionTimestamp"):
                continue
            spec = crd.get("spec") or {}
            names = spec.get("names") or {}
            if not spec.get("group") or names.get("plural") in builtin_plurals:
                continue
            for version in spec.get("versions") or []:
                if not version.get("served", True):
                    continue
                status = "status" in (version.get("subresources") or {})
                custom.append(Resource(
                    spec["group"], version["name"], names["kind"], names["plural"],
                    spec.get("scope") == "Namespaced", tuple(names.get("shortNames") or ()),
                    ("status",) if status else (), singular=names.get("singular") or "",
                    categories=tuple(names.get("categories") or ())))
        self._index(self._builtin + tuple(custom))

    def lookup(self, group: str, version: str, plural: str) -> Resource | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> Resource | None:
        return self._by_kind.get((api_version, kind))

    def by_plural(self, plural: str) -> Resource:
        for res in self.all:
            if res.plural == plural:
                return res
        raise KeyError(plural)

    def groups(self) -> list[str]:
        return sorted({r.group for r in self.everything if r.group})

    def versions(self, group: str) -> list[str]:
        return sorted({r.version for r in self.everything if r.group == group})

    # -- discovery documents -------------------------------------------------------------------

    def api_versions(self, server_address: str) -> dict[str, Any]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
            ],
        }

    def api_group(self, group: str) -> dict[str, Any] | None:
        versions = self.versions(group)
        if not versions:
            return None
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": entries,
            "preferredVersion": entries[-1],
        }

    def api_group_list(self) -> dict[str, Any]:
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [self.api_group(g) for g in self.groups()],
        }

    # -- OpenAPI v3 (just enough for kubectl/helm to see server-side field validation) ---------

    def openapi_root(self) -> dict[str, Any]:
        paths = {}
        for group in ["", *self.groups()]:
            for version in self.versions(group) if group else ["v1"]:
                prefix = f"apis/{group}/{version}" if group else f"api/{version}"
                paths[prefix] = {"serverRelativeURL": f"/openapi/v3/{prefix}?hash=standin"}
        return {"paths": paths}

    def openapi_group_version(self, group: str, version: str) -> dict[str, Any] | None:
        members = [r for r in self.all if r.group == group and r.version == version]
        if not members:
            return None
        prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
        query = [{"name": name, "in": "query", "schema": {"type": "string"}}
                 for name in ("dryRun", "fieldManager", "fieldValidation")]
        paths: dict[str, Any] = {}
        for res in members:
            gvk = {"group": group, "version": version, "kind": res.kind}
            base = f"{prefix}/namespaces/{{namespace}}/{res.plural}" if res.namespaced \
                else f"{prefix}/{res.plural}"
            ok = {"200": {"description": "OK"}}
            paths[base] = {
                "post": {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "post",
                         "parameters": query, "responses": ok},
            }
            paths[f"{base}/{{name}}"] = {
                verb: {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": verb,
                       "parameters": query, "responses": ok}
                for verb in ("put", "patch")
            }
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes (devloop stand-in)", "version": "v1.35.0"},
            "paths": paths,
            "components": {"schemas": {}},
        }

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        members = [r for r in self.everything if r.group == group and r.version == version]
        if not members:
            return None
        entries: list[dict[str, Any]] = []
        for res in members:
            entries.append(
                {
                    "name": res.plural,
                    "singularName": res.kind.lower(),
                    "namespaced": res.namespaced,
                    "kind": res.kind,
                    "verbs": list(res.verbs),
                    "shortNames": list(res.short_names),
                    "categories": list(res.categories),
                    "storageVersionHash": "",
                }
            )
            if not res.short_names:
                del entries[-1]["shortNames"]
            if not res.categories:
                del entries[-1]["categories"]
            for sub in res.subresources:
                verbs = {"log": ["get"], "exec": ["create", "get"],
                         "portforward": ["create", "get"]}.get(sub, ["get", "patch", "update"])
                kind = {"log": "Pod", "scale": "Scale", "exec": "PodExecOptions",
                        "portforward": "PodPortForwardOptions"}.get(sub, res.kind)
                entry: dict[str, Any] = {
                    "name": f"{res.plural}/{sub}",
                    "singularName": "",
                    "namespaced": res.namespaced,
                    "kind": kind,
                    "verbs": verbs,
                }
                if sub == "scale":
                    entry.update({"group": "autoscaling", "version": "v1"})
                entries.append(entry)
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": entries,
        }
