"""The verbs of the REST API (get/list/create/update/patch/delete) over the store.

Transport-free: the HTTP layer parses requests and calls these; everything that decides what a
client sees (defaulting, validation, status subresources, graceful deletion) lives here.
"""

from __future__ import annotations

import copy
import datetime as dt
import ipaddress
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import checks, defaults, errors
from .clock import now, random_suffix, rfc3339
from .managed_fields import FieldManager, manager_required, scope
from .patching import StrategicMerge, json_merge_patch, json_patch
from .resources import Resource, ResourceTable
from .schema import Schemas
from .selectors import parse_field_selector, parse_label_selector
from .store import Obj, Store

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"

PVC_PROTECTION = "kubernetes.io/pvc-protection"


@dataclass
class Query:
    """Filters shared by list, watch and deletecollection."""

    label_selector: str | None = None
    field_selector: str | None = None

    def matcher(self) -> Callable[[Obj], bool]:
        labels = parse_label_selector(self.label_selector)
        fields = parse_field_selector(self.field_selector)
        return lambda obj: labels((obj.get("metadata") or {}).get("labels") or {}) and fields(obj)


class Api:
    """Implements the storage verbs. `pods_graceful` says whether a kubelet will finish deletes."""

    def __init__(
        self,
        store: Store,
        table: ResourceTable,
        schemas: Schemas,
        pods_graceful: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.table = table
        self.schemas = schemas
        self._strategic = StrategicMerge(schemas)
        self.fields = FieldManager(schemas)
        self._pods_graceful = pods_graceful

    # -- reads ---------------------------------------------------------------------------------

    def get(self, res: Resource, namespace: str, name: str) -> Obj:
        obj = self.store.get(res.plural, namespace if res.namespaced else "", name)
        if obj is None:
            raise errors.not_found(res.plural, res.group, name)
        return obj

    def list(self, res: Resource, namespace: str | None, query: Query) -> Obj:
        match = query.matcher()
        objs, rv = self.store.list_raw(res.plural, namespace if res.namespaced else None)
        items = []
        for obj in objs:
            if match(obj):
                item = copy.deepcopy(obj)
                item.pop("kind", None)
                item.pop("apiVersion", None)
                items.append(item)
        return {
            "kind": f"{res.kind}List",
            "apiVersion": res.api_version,
            "metadata": {"resourceVersion": str(rv)},
            "items": items,
        }

    # -- admission -----------------------------------------------------------------------------

    def _check_type(self, res: Resource, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request("the request body must be a JSON object")
        api_version = body.get("apiVersion") or res.api_version
        kind = body.get("kind") or res.kind
        body = {**body, "apiVersion": api_version, "kind": kind}
        if api_version != res.api_version or kind != res.kind:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({res.api_version})"
                if api_version != res.api_version
                else f"the kind in the data ({kind}) does not match the expected kind ({res.kind})"
            )
        return body

    def _validate(self, res: Resource, obj: Obj, old: Obj | None, status: bool = False) -> None:
        """Schema + semantic checks; `status` only when the status itself is being written."""
        name = (obj.get("metadata") or {}).get("name", "")
        causes = self.schemas.errors(obj if status else _without_status(obj))
        if not causes:
            causes = checks.object_causes(obj)
        if not causes and old is not None:
            causes = checks.update_causes(old, obj)
        if causes:
            raise errors.invalid(res.kind, res.group, name, causes)

    def _require_namespace(self, res: Resource, namespace: str) -> None:
        if not res.namespaced:
            return
        ns = self.store.get("namespaces", "", namespace)
        if ns is None:
            raise errors.not_found("namespaces", "", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise errors.ApiError(
                403,
                "Forbidden",
                f'{res.plural} "{"..."}" is forbidden: unable to create new content in namespace '
                f"{namespace} because it is being terminated",
            )

    # -- writes --------------------------------------------------------------------------------

    def create(
        self, res: Resource, namespace: str, body: Any, dry_run: bool = False,
        manager: str | None = None, applied: Obj | None = None,
    ) -> Obj:
        """`manager`: the field manager of an API request (None for the stand-in's own
        controllers, which own no fields); `applied`: the configuration of a create-on-apply."""
        obj = self._check_type(res, body)
        meta = obj.setdefault("metadata", {})
        if res.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + random_suffix()
        for field in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                      "generation"):
            meta.pop(field, None)
        if res.has_status and res.kind not in ("Pod", "Namespace", "Node"):
            # e.g. ReplicaSetStatus.replicas is required (clients reject a status without it).
            obj["status"] = defaults.initial_status(res.kind)
        if res.kind == "Pod":
            obj.pop("status", None)
        self._validate_raw(res, obj)
        defaults.apply(res.kind, obj)
        self._on_create(res, obj)
        self._validate(res, obj, None)
        self._require_namespace(res, namespace)
        if manager:
            self.fields.created(obj, manager, scope(res.has_status, None), applied=applied)
        else:
            meta.pop("managedFields", None)
        if dry_run:
            if self.store.get(res.plural, meta.get("namespace", ""), meta["name"]):
                raise errors.already_exists(res.plural, res.group, meta["name"])
            return obj
        return self._written(res, self.store.create(res, obj))

    def _written(self, res: Resource, obj: Obj) -> Obj:
        """After a write: a CustomResourceDefinition change changes what the API serves."""
        if res.kind == "CustomResourceDefinition":
            self.table.set_custom(self.store.list_raw(res.plural)[0])
        return obj

    def _validate_raw(self, res: Resource, obj: Obj) -> None:
        """Schema check of what the client sent (unknown fields, wrong types) before defaults."""
        causes = self.schemas.errors(_without_status(obj))
        if causes:
            raise errors.invalid(res.kind, res.group, obj["metadata"].get("name", ""), causes)

    def _on_create(self, res: Resource, obj: Obj) -> None:
        if res.kind == "Service":
            spec = obj.setdefault("spec", {})
            if spec.get("clusterIP") != "None":
                spec["clusterIP"] = spec.get("clusterIP") or self._allocate_cluster_ip()
                spec["clusterIPs"] = [spec["clusterIP"]]
            used = self._used_node_ports()
            for index, port in enumerate(spec.get("ports") or []):
                if spec.get("type") in ("NodePort", "LoadBalancer"):
                    if port.get("nodePort") is None:
                        # Random like the real allocator, so two stand-ins rarely collide.
                        port["nodePort"] = secrets.choice(
                            [p for p in range(30000, 32768) if p not in used])
                    elif port["nodePort"] in used:
                        raise errors.invalid("Service", "", obj["metadata"]["name"], [(
                            f"spec.ports[{index}].nodePort",
                            f"Invalid value: {port['nodePort']}: provided port is already "
                            "allocated",
                        )])
                    used.add(port["nodePort"])
            obj["status"] = {"loadBalancer": {}}
        elif res.kind == "Job":
            _select_own_pods(obj)
        elif res.kind == "PersistentVolumeClaim":
            finalizers = obj["metadata"].setdefault("finalizers", [])
            if PVC_PROTECTION not in finalizers:
                finalizers.append(PVC_PROTECTION)
            spec = obj.setdefault("spec", {})
            obj["status"] = {"phase": "Pending"}
            spec.setdefault("storageClassName", "standard")

    def _allocate_cluster_ip(self) -> str:
        services, _ = self.store.list_raw("services")
        used = {s.get("spec", {}).get("clusterIP") for s in services}
        for host in ipaddress.ip_network("10.96.0.0/16").hosts():
            if str(host) not in used and str(host) != "10.96.0.1":
                return str(host)
        raise errors.ApiError(500, "InternalError", "no cluster IPs left")

    def _used_node_ports(self) -> set[int]:
        services, _ = self.store.list_raw("services")
        return {
            p["nodePort"]
            for s in services
            for p in (s.get("spec") or {}).get("ports") or []
            if p.get("nodePort")
        }

    def _admit_update(self, res: Resource, current: Obj, new: Obj, subresource: str | None) -> Obj:
        """Merges a replacement with the stored object according to the endpoint written to."""
        meta = new.setdefault("metadata", {})
        if subresource == "status":
            result = copy.deepcopy(current)
            result["status"] = new.get("status") or {}
            self._validate(res, result, None, status=True)
            return result
        if res.has_status:
            if "status" in current:
                new["status"] = current["status"]
            else:
                new.pop("status", None)
        if "managedFields" not in meta and "managedFields" in current["metadata"]:
            meta["managedFields"] = current["metadata"]["managedFields"]  # omitted: unchanged
        if current["metadata"].get("finalizers") and "finalizers" not in meta and \
                res.kind == "PersistentVolumeClaim":
            meta["finalizers"] = current["metadata"]["finalizers"]
        self._validate_raw(res, new)
        defaults.apply(res.kind, new)
        self._validate(res, new, current)
        return new

    def replace(
        self,
        res: Resource,
        namespace: str,
        name: str,
        body: Any,
        subresource: str | None = None,
        dry_run: bool = False,
        manager: str | None = None,
    ) -> Obj:
        new = self._check_type(res, body)
        meta = new.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(
                "the name of the object "
                f"({meta['name']}) does not match the name on the URL ({name})"
            )
        meta["name"] = name
        if res.namespaced:
            meta["namespace"] = namespace
        wanted_rv = meta.get("resourceVersion")

        def change(current: Obj) -> Obj:
            if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
                raise errors.conflict(res.plural, res.group, name)
            result = self._admit_update(res, current, copy.deepcopy(new), subresource)
            self.fields.updated(current, result, manager, scope(res.has_status, subresource),
                                subresource or "")
            return result

        if dry_run:
            return change(self.get(res, namespace, name))
        return self._written(res, self.store.update(res, namespace, name, change))

    def patch(
        self,
        res: Resource,
        namespace: str,
        name: str,
        content_type: str,
        body: Any,
        subresource: str | None = None,
        dry_run: bool = False,
        manager: str | None = None,
        force: bool = False,
    ) -> Obj:
        content_type = content_type.split(";")[0].strip().lower()
        if content_type == APPLY:
            return self._apply(res, namespace, name, body, subresource, dry_run, manager, force)
        if force:
            raise errors.invalid("PatchOptions", "meta.k8s.io", "", [
                ("force", "Forbidden: may not be specified for non-apply patch")])
        if content_type not in (STRATEGIC, MERGE, JSON_PATCH):
            raise errors.ApiError(
                415, "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {JSON_PATCH}, {MERGE}, {APPLY}, {STRATEGIC}",
            )

        def change(current: Obj) -> Obj:
            if content_type == STRATEGIC:
                patched = self._strategic.apply(current, body)
            elif content_type == MERGE:
                patched = json_merge_patch(current, body)
            else:
                patched = json_patch(current, body)
            if not isinstance(patched, dict):
                raise errors.bad_request("the patch did not produce an object")
            wanted_rv = (patched.get("metadata") or {}).get("resourceVersion")
            if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
                raise errors.conflict(res.plural, res.group, name)
            patched.setdefault("metadata", {})["resourceVersion"] = \
                current["metadata"]["resourceVersion"]
            for field in ("apiVersion", "kind"):
                patched[field] = current[field]
            result = self._admit_update(res, current, patched, subresource)
            self.fields.updated(current, result, manager, scope(res.has_status, subresource),
                                subresource or "")
            return result

        if dry_run:
            return change(self.get(res, namespace, name))
        return self._written(res, self.store.update(res, namespace, name, change))

    def _apply(
        self, res: Resource, namespace: str, name: str, body: Any, subresource: str | None,
        dry_run: bool, manager: str | None, force: bool,
    ) -> Obj:
        """Server-side apply: creates the object when missing, else merges the configuration
        with field ownership (conflicts, force, removal of fields no longer applied)."""
        if not manager:
            raise manager_required()
        applied = _without_nulls(self._check_type(res, body))
        meta = applied.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({name})")
        meta["name"] = name
        if res.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request")
            meta["namespace"] = namespace
        meta.pop("managedFields", None)
        meta.pop("resourceVersion", None)
        part = scope(res.has_status, subresource)
        current = self.store.get(res.plural, namespace if res.namespaced else "", name)
        if current is None:
            if subresource:
                raise errors.not_found(res.plural, res.group, name)
            return self.create(res, namespace, copy.deepcopy(applied), dry_run, manager,
                               applied=applied)

        def change(live: Obj) -> Obj:
            merged = self.fields.apply(live, applied, manager, force, part, subresource or "")
            merged["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
            for field in ("apiVersion", "kind"):
                merged[field] = live[field]
            return self._admit_update(res, live, merged, subresource)

        if dry_run:
            return change(self.get(res, namespace, name))
        return self.store.update(res, namespace, name, change)

    def delete(
        self,
        res: Resource,
        namespace: str,
        name: str,
        options: Obj | None = None,
        dry_run: bool = False,
    ) -> Obj:
        options = options or {}
        current = self.get(res, namespace, name)
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != current["metadata"].get("uid"):
            raise errors.ApiError(
                409, "Conflict",
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: "
                f"{current['metadata'].get('uid')}",
            )
        if pre.get("resourceVersion") and \
                pre["resourceVersion"] != current["metadata"]["resourceVersion"]:
            raise errors.conflict(res.plural, res.group, name)
        if dry_run:
            return current
        if _orphans(res, options):
            self._orphan_dependents(current)
        grace = options.get("gracePeriodSeconds")
        deferred = (
            res.kind == "Namespace"
            or bool(current["metadata"].get("finalizers"))
            or (res.kind == "Pod" and self._pods_graceful()
                and bool((current.get("spec") or {}).get("nodeName")))
        )
        if not deferred:
            self.store.remove(res, namespace, name)
            self._written(res, current)
            return errors.success_status(res.plural, res.group, name,
                                         current["metadata"].get("uid", ""))

        def mark(obj: Obj) -> Obj:
            meta = obj["metadata"]
            if not meta.get("deletionTimestamp"):
                seconds = grace
                if seconds is None:
                    seconds = (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 0) \
                        if res.kind == "Pod" else 0
                meta["deletionTimestamp"] = rfc3339(now() + dt.timedelta(seconds=seconds))
                meta["deletionGracePeriodSeconds"] = seconds
            elif grace is not None and grace < (meta.get("deletionGracePeriodSeconds") or 0):
                meta["deletionGracePeriodSeconds"] = grace
            if res.kind == "Namespace":
                obj.setdefault("status", {})["phase"] = "Terminating"
            return obj

        return self.store.update(res, namespace, name, mark)

    def _orphan_dependents(self, owner: Obj) -> None:
        uid = owner["metadata"].get("uid")
        for res in self.table.all:
            if not res.namespaced:
                continue
            objs, _ = self.store.list_raw(res.plural, owner["metadata"].get("namespace"))
            for obj in objs:
                refs = obj["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == uid for r in refs):
                    def strip(o: Obj, uid: str = uid) -> Obj:
                        o["metadata"]["ownerReferences"] = [
                            r for r in o["metadata"].get("ownerReferences") or []
                            if r.get("uid") != uid
                        ]
                        if not o["metadata"]["ownerReferences"]:
                            del o["metadata"]["ownerReferences"]
                        return o

                    self.store.update(res, obj["metadata"]["namespace"],
                                      obj["metadata"]["name"], strip)

    def delete_collection(
        self, res: Resource, namespace: str | None, query: Query, options: Obj | None
    ) -> Obj:
        listing = self.list(res, namespace, query)
        for item in listing["items"]:
            try:
                self.delete(res, item["metadata"].get("namespace", ""), item["metadata"]["name"],
                            options)
            except errors.ApiError as exc:
                if exc.code != 404:
                    raise
        return listing

    # -- pod binding (what a scheduler posts) -------------------------------------------------

    def bind(self, namespace: str, body: Any) -> Obj:
        """Binding: assigns a pod to the node; 409 when the pod already has one."""
        if not isinstance(body, dict) or not (body.get("target") or {}).get("name"):
            raise errors.invalid("Binding", "", "", [("target.name", "Required value")])
        name = (body.get("metadata") or {}).get("name", "")
        node = body["target"]["name"]
        pods = self.table.by_plural("pods")

        def assign(pod: Obj) -> Obj:
            current = (pod.get("spec") or {}).get("nodeName")
            if current:
                raise errors.ApiError(409, "Conflict", f'Operation cannot be fulfilled on '
                                      f'pods/binding "{name}": pod {name} is already assigned '
                                      f'to node "{current}"')
            pod["spec"]["nodeName"] = node
            return pod

        self.store.update(pods, namespace, name, assign)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "code": 201}

    # -- scale subresource ---------------------------------------------------------------------

    def get_scale(self, res: Resource, namespace: str, name: str) -> Obj:
        obj = self.get(res, namespace, name)
        return _scale_of(obj)

    def update_scale(
        self, res: Resource, namespace: str, name: str, replicas: int,
        expected_rv: str | None = None,
    ) -> Obj:
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid("Scale", "autoscaling", name, [
                ("spec.replicas", f"Invalid value: {replicas}: must be greater than or equal to 0")
            ])

        def change(obj: Obj) -> Obj:
            if expected_rv and expected_rv != obj["metadata"]["resourceVersion"]:
                raise errors.conflict(res.plural, res.group, name)
            obj["spec"]["replicas"] = replicas
            return obj

        return _scale_of(self.store.update(res, namespace, name, change))


def _scale_of(obj: Obj) -> Obj:
    selector = (obj.get("spec") or {}).get("selector") or {}
    if obj.get("kind") != "ReplicationController":  # its selector is a plain label map
        selector = selector.get("matchLabels") or {}
    labels = ",".join(f"{k}={v}" for k, v in selector.items())
    meta = obj["metadata"]
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta.get("namespace"), "uid": meta.get("uid"),
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
        "status": {"replicas": (obj.get("status") or {}).get("replicas", 0), "selector": labels},
    }


def _without_status(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k != "status"}


def _without_nulls(value: Any) -> Any:
    """An applied configuration's nulls mean "no opinion" (the field is not applied)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _orphans(res: Resource, options: Obj) -> bool:
    """Whether a delete leaves the dependents behind. batch/v1 Jobs do by default (kept for
    compatibility by the real server; kubectl asks for Background explicitly)."""
    policy = options.get("propagationPolicy")
    if policy is None and options.get("orphanDependents") is not None:
        return bool(options["orphanDependents"])
    return policy == "Orphan" or (policy is None and res.kind == "Job")


def _select_own_pods(job: Obj) -> None:
    """What the API server does to a new Job (unless `manualSelector`): a uid of its own, a
    selector on it, and the labels that match it on the pod template."""
    spec = job.setdefault("spec", {})
    if spec.get("manualSelector"):
        return
    meta = job["metadata"]
    meta["uid"] = str(uuid.uuid4())
    labels = {"batch.kubernetes.io/controller-uid": meta["uid"],
              "batch.kubernetes.io/job-name": meta["name"],
              "controller-uid": meta["uid"], "job-name": meta["name"]}
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": meta["uid"]}}
    template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
    template_meta["labels"] = {**(template_meta.get("labels") or {}), **labels}
