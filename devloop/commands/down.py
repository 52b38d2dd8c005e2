"""`devloop down`: remove what devloop installed or patched for the selected services, and never
a PersistentVolumeClaim.

Tilt's `down` and Skaffold's cleanup delete claims and their users lose data (sk#4366,
sk#5144). Here the candidates are the manifests' objects of each service (its Deployment, the
ConfigMaps and Secrets its pod template refers to, the Services selecting its pods), found by
rendering the manifests (`chart:`, `kustomize:` or `manifests:`) like the first deploy does;
when every service goes, also the manifests' other objects and those an earlier run applied
that they no longer render. A candidate is deleted only
when the cluster's object carries devloop's own mark (ownership.py: Helm's release annotation is
not enough, a person's own `helm install` sets it too) or, for the Deployment, devloop's patch
(the digest annotation); anything else, and anything another selected-out Deployment still uses,
is left alone and reported. Claims are always kept, with the kubectl command that deletes them.
The namespace goes only with `--namespace`, and only when API discovery of every namespaced kind
(custom resources included) finds nothing left in it but what Kubernetes itself puts there and
what depends on the objects just deleted.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from devloop import events as ev
from devloop import exitcodes
from devloop.config.loader import Config, ServiceConfig
from devloop.deploy.manifest_session import project_name
from devloop.deploy.patch import DIGEST_ANNOTATION
from devloop.k8s import timeouts
from devloop.k8s.cluster import Cluster, ClusterUnreachable
from devloop.k8s.discovery import (
    DiscoveryIncomplete,
    Kind,
    Unreachable,
    list_objects,
    namespaced_kinds,
)
from devloop.k8s.errors import api_message, is_connection_error, one_line
from devloop.k8s.kinds import client_method, find_kind, group_of, kind_of
from devloop.k8s.ownership import is_devloop_owned
from devloop.manifests import apply as manifest_api
from devloop.manifests.plan import kind_name
from devloop.manifests.render import RenderError, render

# Deleted in this order: the workload first (its pods stop using config and claims).
DELETE_ORDER = ("Deployment", "Service", "Secret", "ConfigMap")
# What Kubernetes itself puts in a namespace: it does not stop `--namespace`.
_BUILTIN = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}


class DownFailed(Exception):
    """One line naming the object that could not be read or deleted; `code` is the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Plan:
    """What `down` does: objects to delete ("Kind/name") and to keep (with the reason)."""

    delete: dict[str, str] = field(default_factory=dict)  # object -> why it is devloop's
    keep: dict[str, str] = field(default_factory=dict)  # object -> why it stays
    claims: list[str] = field(default_factory=list)  # PersistentVolumeClaim names kept
    # the chart's other kinds (Ingress, Role, HPA, custom resources): "Kind/name" -> apiVersion
    other_kinds: dict[str, str] = field(default_factory=dict)


# --- which chart objects belong to a service ---------------------------------------------------

def _template_spec(deployment: Mapping[str, Any]) -> Mapping[str, Any]:
    return ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}


def references(deployment: Mapping[str, Any]) -> set[str]:
    """"Kind/name" of every ConfigMap, Secret and PersistentVolumeClaim a Deployment's pod
    template uses (volumes, projected volumes, env, envFrom, imagePullSecrets)."""
    spec = _template_spec(deployment)
    found: set[str] = set()
    for volume in spec.get("volumes") or []:
        if (volume.get("configMap") or {}).get("name"):
            found.add(f"ConfigMap/{volume['configMap']['name']}")
        if (volume.get("secret") or {}).get("secretName"):
            found.add(f"Secret/{volume['secret']['secretName']}")
        if (volume.get("persistentVolumeClaim") or {}).get("claimName"):
            found.add(f"PersistentVolumeClaim/{volume['persistentVolumeClaim']['claimName']}")
        for source in (volume.get("projected") or {}).get("sources") or []:
            if (source.get("configMap") or {}).get("name"):
                found.add(f"ConfigMap/{source['configMap']['name']}")
            if (source.get("secret") or {}).get("name"):
                found.add(f"Secret/{source['secret']['name']}")
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        for env in container.get("env") or []:
            source = env.get("valueFrom") or {}
            if (source.get("configMapKeyRef") or {}).get("name"):
                found.add(f"ConfigMap/{source['configMapKeyRef']['name']}")
            if (source.get("secretKeyRef") or {}).get("name"):
                found.add(f"Secret/{source['secretKeyRef']['name']}")
        for env_from in container.get("envFrom") or []:
            if (env_from.get("configMapRef") or {}).get("name"):
                found.add(f"ConfigMap/{env_from['configMapRef']['name']}")
            if (env_from.get("secretRef") or {}).get("name"):
                found.add(f"Secret/{env_from['secretRef']['name']}")
    for pull in spec.get("imagePullSecrets") or []:
        if pull.get("name"):
            found.add(f"Secret/{pull['name']}")
    return found


def _selects(service: Mapping[str, Any], deployment: Mapping[str, Any]) -> bool:
    selector = (service.get("spec") or {}).get("selector") or {}
    labels = (((deployment.get("spec") or {}).get("template") or {}).get("metadata")
              or {}).get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def chart_objects_of(objects: list[dict[str, Any]], deployment: str) -> set[str]:
    """"Kind/name" of the chart objects that belong to the chart's Deployment `deployment`."""
    dep = next((o for o in objects if o.get("kind") == "Deployment"
                and (o.get("metadata") or {}).get("name") == deployment), None)
    if dep is None:
        return set()
    rendered = {kind_name(o) for o in objects}
    owned = {f"Deployment/{deployment}"} | (references(dep) & rendered)
    owned |= {kind_name(o) for o in objects if o.get("kind") == "Service" and _selects(o, dep)}
    return owned


# --- the plan ----------------------------------------------------------------------------------

def plan(cluster: Cluster, config: Config, services: Iterable[ServiceConfig],
         chart_objects: list[dict[str, Any]] | None, whole_chart: bool = False) -> Plan:
    """Decide, from the chart and the cluster's objects, what to delete and what to keep.
    With `whole_chart` (every service selected), the chart's objects that belong to no service
    (an Ingress, a Role, an HPA, a custom resource) are candidates too."""
    selected = list(services)
    release = project_name(config)
    candidates: set[str] = set()
    for svc in selected:
        candidates.add(f"Deployment/{svc.deployment}")
        if chart_objects is not None:
            candidates |= chart_objects_of(chart_objects, svc.deployment)
    # a ConfigMap, Secret or Service another Deployment still uses stays
    leaving = {f"Deployment/{s.deployment}" for s in selected}
    used_by: dict[str, str] = {}
    services = _list(cluster, "Service")
    for dep in _list(cluster, "Deployment"):
        if kind_name(dep) in leaving:
            continue
        for ref in references(dep):
            used_by.setdefault(ref, kind_name(dep).lower())
        for svc_obj in services:
            if _selects(svc_obj, dep):
                used_by.setdefault(kind_name(svc_obj), kind_name(dep).lower())
    result = Plan()
    for ident in sorted(candidates):
        kind, name = ident.split("/", 1)
        obj = _read(cluster, kind, name)
        if obj is None:
            continue  # not there: nothing to do
        if kind == "PersistentVolumeClaim":
            result.claims.append(name)
            result.keep[ident] = "devloop never deletes a PersistentVolumeClaim (its data)"
            continue
        meta = obj.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        if ident in used_by:
            result.keep[ident] = f"still used by {used_by[ident]}"
        elif is_devloop_owned(obj, release):
            result.delete[ident] = installed_from(config)
        elif kind == "Deployment" and annotations.get(DIGEST_ANNOTATION):
            result.delete[ident] = "patched by devloop"
        else:
            result.keep[ident] = "not created by devloop"
    if whole_chart and chart_objects:
        _plan_other_kinds(cluster, chart_objects, candidates, config, result)
    return result


def installed_from(config: Config) -> str:
    """Why an object is devloop's, for `down.deleted`: where devloop applied it from."""
    if config.chart is not None:
        return f"installed by devloop from the chart (release {config.chart.release})"
    if config.kustomize is not None:
        return f"installed by devloop from the kustomization {config.kustomize}"
    return "installed by devloop from the manifests"


def _plan_other_kinds(cluster: Cluster, chart_objects: list[dict[str, Any]],
                      candidates: set[str], config: Config, result: Plan) -> None:
    """The manifests' namespaced objects of any other kind (and those an earlier run applied
    that they no longer render): deleted when they carry devloop's mark for the project (the
    manifests apply every kind they render)."""
    release = project_name(config)
    for obj in chart_objects:
        ident, kind = kind_name(obj), str(obj.get("kind"))
        if ident in candidates or kind in ("Namespace", "PersistentVolumeClaim"):
            continue
        api_version = str(obj.get("apiVersion"))
        entry = kind_of(obj)
        if entry is not None and not entry.namespaced:
            continue  # cluster-wide: not what a namespace's `down` removes
        name = str((obj.get("metadata") or {}).get("name"))
        try:
            current = manifest_api.read(cluster.api_client, api_version, kind,
                                        cluster.namespace, name)
        except manifest_api.ApplyError as exc:
            if "serves no" in str(exc):
                continue  # the kind is not served: no such object can exist
            raise DownFailed(str(exc), exitcodes.DEPLOY_FAILED) from exc
        if current is None or not (current.get("metadata") or {}).get("namespace"):
            continue  # absent, or cluster-wide (a CRD: deleting it deletes everyone's objects)
        if is_devloop_owned(current, release):
            result.delete[ident] = installed_from(config)
            result.other_kinds[ident] = api_version
        else:
            result.keep[ident] = "not created by devloop"


def kubectl_delete_claims(cluster: Cluster, config: Config, claims: list[str]) -> str:
    """The exact command that deletes the kept claims by hand (their data is lost)."""
    args = ["kubectl"]
    if config.kubeconfig:
        args += ["--kubeconfig", str(config.kubeconfig)]
    args += ["--context", cluster.context, "--namespace", cluster.namespace, "delete",
             "persistentvolumeclaim", *claims]
    return shlex.join(args)


# --- the command -------------------------------------------------------------------------------

def run_down(cluster: Cluster, config: Config, services: list[ServiceConfig], bus: ev.EventBus,
             env: Mapping[str, str], helm: str, namespace: bool = False) -> int:
    """Delete what the plan says, report kept objects, and return the exit code."""
    ns = cluster.namespace
    try:
        whole = {s.name for s in services} == set(config.services)
        chart_objects = applied_objects(cluster, config, {**env, "DEVLOOP_HELM": helm}, whole)
        todo = plan(cluster, config, services, chart_objects, whole_chart=whole)
        deleted: list[str] = []
        gone: set[str] = set()
        unseen = None  # why what the namespace holds is unknown
        if namespace:
            try:
                gone = dependents(_everything(cluster), set(todo.delete))
            except DiscoveryIncomplete as exc:
                unseen = str(exc)
        for ident in sorted(todo.delete, key=_delete_order):
            if ident in todo.other_kinds:
                if not _delete_other(cluster, ident, todo.other_kinds[ident],
                                     project_name(config)):
                    todo.keep[ident] = "not created by devloop"  # its mark went meanwhile
                    continue
            else:
                _delete(cluster, ident)
            deleted.append(ident)
            bus.publish(ev.DOWN_DELETED, None, object=ident, namespace=ns,
                        reason=todo.delete[ident])
        command = kubectl_delete_claims(cluster, config, todo.claims) if todo.claims else None
        for ident, reason in todo.keep.items():
            claim = ident.startswith("PersistentVolumeClaim/")
            bus.publish(ev.DOWN_KEPT, None, object=ident, namespace=ns, reason=reason,
                        command=command if claim else None)
        kept = list(todo.keep)
        if namespace:
            blockers: list[str] = []
            if unseen is None:
                try:
                    blockers = namespace_blockers(_everything(cluster), set(deleted), gone)
                except DiscoveryIncomplete as exc:
                    unseen = str(exc)
            reason = None
            if unseen is not None:
                reason = (f"devloop cannot see everything in it ({one_line(unseen, 200)}),"
                          " and deleting a namespace deletes everything in it; check that"
                          " `kubectl api-resources` answers, then run down --namespace again")
            elif blockers:
                reason = "it still holds " + ", ".join(blockers[:4]) + \
                    (f" and {len(blockers) - 4} more" if len(blockers) > 4 else "") + \
                    " (deleting a namespace deletes everything in it)"
            if reason:
                bus.publish(ev.DOWN_KEPT, None, object=f"Namespace/{ns}", namespace=ns,
                            reason=reason, command=None)
                kept.append(f"Namespace/{ns}")
            else:
                _delete(cluster, f"Namespace/{ns}")
                deleted.append(f"Namespace/{ns}")
                bus.publish(ev.DOWN_DELETED, None, object=f"Namespace/{ns}", namespace=ns,
                            reason="it held only what devloop installed")
        code = exitcodes.OK
    except ClusterUnreachable as exc:
        bus.publish(ev.ERROR, None, message=str(exc))
        code, deleted, kept = exitcodes.CLUSTER_UNREACHABLE, [], []
    except (DownFailed, RenderError, manifest_api.ApplyError) as exc:
        bus.publish(ev.ERROR, None, message=str(exc))
        code = exc.code if isinstance(exc, DownFailed) else exitcodes.DEPLOY_FAILED
        deleted, kept = [], []
    bus.publish(ev.DOWN_FINISHED, None, exit_code=code, deleted=deleted, kept=kept)
    return code


def applied_objects(cluster: Cluster, config: Config, env: Mapping[str, str], whole: bool
                    ) -> list[dict[str, Any]] | None:
    """What devloop applies for the project, in any deploy format (None without one): the
    rendered manifests and, when every service goes (`whole`), the namespace's objects an
    earlier run applied that they no longer render (found by devloop's mark)."""
    if not config.deploy_format:
        return None
    objects = [r.obj for r in render(config, cluster.namespace, env)]
    if whole:
        rendered = {(group_of(o.get("apiVersion")), kind_name(o)) for o in objects}
        kinds = [k for k in manifest_api.served(cluster.api_client) if k.namespaced]
        objects += [o for o in manifest_api.list_owned(cluster.api_client, cluster.namespace,
                                                       project_name(config), kinds)
                    if (group_of(o.get("apiVersion")), kind_name(o)) not in rendered]
    return objects


def _not_events(kind: Kind) -> bool:
    """Events are Kubernetes' own records about objects, not something anyone made there."""
    return kind.kind != "Event"


def _everything(cluster: Cluster) -> list[dict[str, Any]]:
    """Every object in the namespace, of every namespaced kind discovery finds; raise
    DiscoveryIncomplete when a group or kind cannot be read."""
    try:
        return [obj for kind in namespaced_kinds(cluster.api_client, _not_events)
                for obj in list_objects(cluster.api_client, kind, cluster.namespace)]
    except Unreachable as exc:
        raise cluster.unreachable(exc.__cause__ or exc) from exc


def dependents(objects: list[dict[str, Any]], owners: set[str]) -> set[str]:
    """UIDs of `owners` and of every object owned by them, at any depth (a Deployment's
    ReplicaSets and their pods, a Service's EndpointSlices, a custom controller's children)."""
    uids = {u for o in objects
            if kind_name(o) in owners and (u := (o.get("metadata") or {}).get("uid"))}
    grew = True
    while grew:
        grew = False
        for obj in objects:
            meta = obj.get("metadata") or {}
            if meta.get("uid") not in uids and \
                    {r.get("uid") for r in meta.get("ownerReferences") or []} & uids:
                uids.add(meta.get("uid"))
                grew = True
    return uids


def namespace_blockers(objects: list[dict[str, Any]], deleted: set[str], gone: set[str]
                       ) -> list[str]:
    """What `objects` (the namespace after the deletions) hold that is neither among the
    `deleted` objects nor owned by one (`gone`: their UIDs and their dependents', taken before
    the deletion, since the garbage collector removes owners and dependents in any order) nor
    Kubernetes' own; claims first."""
    deleted_services = {i.split("/", 1)[1] for i in deleted if i.startswith("Service/")}
    present = {(o.get("metadata") or {}).get("uid") for o in objects}
    blockers: list[str] = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        kind, ident = obj.get("kind"), kind_name(obj)
        owners = {r.get("uid") for r in meta.get("ownerReferences") or []}
        if ident in deleted or meta.get("uid") in gone or owners & gone:
            continue
        if meta.get("deletionTimestamp") or _collected(meta, present):
            continue  # already going: an earlier down's pods still terminating, say
        if (kind, meta.get("name")) in _BUILTIN:
            continue
        if kind == "Endpoints" and meta.get("name") in deleted_services:
            continue
        if kind == "Secret" and obj.get("type") == "kubernetes.io/service-account-token":
            continue
        blockers.append(ident)
    return sorted(blockers, key=lambda i: (not i.startswith("PersistentVolumeClaim/"), i))


def _collected(meta: Mapping[str, Any], present: set[Any]) -> bool:
    """True when every owner of the object is gone from the namespace: the garbage collector
    deletes it (a pod whose ReplicaSet an earlier down deleted). Only owners of built-in
    namespaced kinds count: a cluster-scoped or custom owner may live where we did not look."""
    refs = meta.get("ownerReferences") or []
    return bool(refs) and all(
        (k := kind_of(r)) is not None and k.namespaced and r.get("uid") not in present
        for r in refs)


# --- API access --------------------------------------------------------------------------------

def _method(cluster: Cluster, verb: str, kind: str) -> Any:
    """The client method `verb` for `kind`, from the one kind table (devloop.k8s.kinds): what
    the plan reads and deletes (the namespace check uses discovery instead: every kind there is)."""
    entry = find_kind(kind)
    assert entry is not None, f"{kind} is not in devloop.k8s.kinds.KINDS"
    return client_method(cluster.api_client, entry, verb)


def _call(cluster: Cluster, what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
    """One API call returning the JSON object; None on 404; DownFailed/ClusterUnreachable else."""
    try:
        resp = method(*args, **kwargs, _preload_content=False, _request_timeout=timeouts.BULK)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise DownFailed(one_line(f"cannot {what} in namespace {cluster.namespace}:"
                                  f" {api_message(exc)}"), exitcodes.DEPLOY_FAILED) from exc
    except Exception as exc:
        if is_connection_error(exc):
            raise cluster.unreachable(exc) from exc
        raise
    try:
        return json.loads(resp.data or b"{}")
    finally:
        resp.release_conn()


def _list(cluster: Cluster, kind: str) -> list[dict[str, Any]]:
    """The namespace's objects of `kind` (empty when the server does not serve the kind)."""
    listing = _call(cluster, f"list {kind} objects", _method(cluster, "list", kind),
                    cluster.namespace)
    items = (listing or {}).get("items") or []
    for item in items:
        item.setdefault("kind", kind)
    return items


def _read(cluster: Cluster, kind: str, name: str) -> dict[str, Any] | None:
    return _call(cluster, f"read {kind}/{name}", _method(cluster, "read", kind), name,
                 cluster.namespace)


def _delete_order(ident: str) -> tuple[int, str]:
    """The workload first; the chart's other kinds next; then Services, Secrets, ConfigMaps."""
    kind = ident.split("/")[0]
    return (DELETE_ORDER.index(kind) * 2 if kind in DELETE_ORDER else 1), ident


def _delete_other(cluster: Cluster, ident: str, api_version: str, release: str | None) -> bool:
    """Delete an object of any kind, checking devloop's mark again at the moment it goes;
    False when it no longer carries it."""
    kind, name = ident.split("/", 1)
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    try:
        done = manifest_api.delete_owned(
            cluster.api_client, f"{group}/{kind}/{cluster.namespace}/{name}", api_version,
            owned=lambda o: is_devloop_owned(o, release))
    except manifest_api.ApplyError as exc:
        raise DownFailed(str(exc), exitcodes.DEPLOY_FAILED) from exc
    return done != "kept"


def _delete(cluster: Cluster, ident: str) -> None:
    kind, name = ident.split("/", 1)
    if kind == "PersistentVolumeClaim":  # the one rule of this module, enforced where it acts
        raise AssertionError(f"devloop down must never delete {ident}")
    body = k8s.V1DeleteOptions(propagation_policy="Background")
    if kind == "Namespace":
        _call(cluster, f"delete {ident}", _method(cluster, "delete", kind), name, body=body)
        return
    _call(cluster, f"delete {ident}", _method(cluster, "delete", kind), name,
          cluster.namespace, body=body)
