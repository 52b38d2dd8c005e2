"""One view of a workload of any kind: its pods, its pod template, and when its rollout is done.

Logs, forwards, live update, status and the rollout wait all ask the same questions of a
Deployment, a StatefulSet, a DaemonSet, a Job, a CronJob or a bare Pod: which pods are its own
(a label query), which of them run the current template, what image a container of the template
runs, and whether the change devloop made has finished rolling out. The answers differ per kind
(kinds.py says where the template lives; this module says how each kind rolls out), so they are
answered here once, on the API's JSON, and the other modules stay kind-blind.

Rollout rules are kubectl's `rollout status` per kind; a Job's completion is its rollout (a
Job's template is immutable: it is replaced, i.e. deleted and created again); a CronJob only has
its template updated (its next run uses it: nothing to wait for); a Pod is replaced.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from devloop.k8s import timeouts
from devloop.k8s.errors import api_message, connection_detail, is_connection_error, one_line
from devloop.k8s.inject import users
from devloop.k8s.kinds import WORKLOAD_KINDS, ImagePaths, Kind, client_method, find_kind, kind_of
from devloop.k8s.pods import Pod, list_pods
from devloop.k8s.selectors import selector_query

Obj = dict[str, Any]
_TIMEOUT = timeouts.REQUEST
# Labels the Job controller writes into a Job it creates: a Job created again from a read one
# must not carry them (the API server generates them anew for the new Job's UID).
_JOB_GENERATED = ("controller-uid", "batch.kubernetes.io/controller-uid", "job-name",
                  "batch.kubernetes.io/job-name")
_JOB_UID_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")
# Kinds whose pod template cannot be changed in place: devloop replaces the object.
REPLACED_KINDS = frozenset({"Job", "Pod"})


class WorkloadError(ValueError):
    """A workload named wrongly in devloop.yaml (one line saying what to write)."""


@dataclass(frozen=True)
class WorkloadRef:
    """A workload as devloop.yaml names it: `statefulset/db`, or `db` for a Deployment."""

    kind: Kind
    name: str

    @classmethod
    def parse(cls, text: str, default_kind: str = "Deployment") -> WorkloadRef:
        kind_text, _, name = text.rpartition("/")
        kind = find_kind(kind_text or default_kind)
        if kind is None or not kind.workload:
            names = ", ".join(k.lower() for k in WORKLOAD_KINDS)
            raise WorkloadError(f"'{kind_text}' is not a workload kind (write KIND/NAME with"
                                f" KIND one of {names})")
        if not name:
            raise WorkloadError(f"'{text}' has no name (write KIND/NAME, e.g. {kind.kind.lower()}"
                                "/web)")
        return cls(kind, name)

    def __str__(self) -> str:
        return f"{self.kind.kind.lower()}/{self.name}"


def _path(obj: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


@dataclass(frozen=True)
class Workload:
    """One read of a workload (the API's JSON) and what devloop needs to know about it."""

    obj: Obj

    @property
    def kind(self) -> Kind:
        kind = kind_of(self.obj)
        assert kind is not None and kind.workload, f"not a workload: {self.obj.get('kind')}"
        return kind

    @property
    def ref(self) -> WorkloadRef:
        return WorkloadRef(self.kind, self.name)

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"].get("namespace") or "")

    @property
    def uid(self) -> str:
        return str(self.obj["metadata"].get("uid") or "")

    @property
    def generation(self) -> int:
        return int(self.obj["metadata"].get("generation") or 0)

    @property
    def template(self) -> Obj:
        """The pod template (a Pod's template is the Pod)."""
        return _path(self.obj, self.kind.template or ()) or {}

    @property
    def containers(self) -> list[Obj]:
        """Init containers, then containers, of the pod template."""
        spec = self.template.get("spec") or {}
        return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]

    def container_names(self) -> list[str]:
        return [str(c.get("name")) for c in self.containers]

    def template_image(self, container: str) -> str | None:
        """The image the template gives `container` (an init container too); None: no such."""
        return next((c.get("image") for c in self.containers if c.get("name") == container),
                    None)

    @property
    def selector(self) -> Mapping[str, Any] | None:
        """The label selector of its pods. A CronJob has none: its template's labels select
        the pods of all its Jobs; a Pod's own labels select it (with others: see owns())."""
        if self.kind.kind in ("CronJob", "Pod"):
            return (self.template.get("metadata") or {}).get("labels") or {}
        if self.kind.kind == "Job":  # not its UID: the pods of the Job that replaces it too
            labels = (self.template.get("metadata") or {}).get("labels") or {}
            return {k: v for k, v in labels.items() if k not in _JOB_UID_LABELS}
        return (self.obj.get("spec") or {}).get("selector")

    @property
    def selector_query(self) -> str:
        return selector_query(self.selector)

    def owns(self, pod: Pod) -> bool:
        """Whether a pod that the selector matched really is this workload's (a bare Pod's
        labels may match other pods; a Job's pods carry its UID)."""
        if self.kind.kind == "Pod":
            return pod.name == self.name
        if self.kind.kind == "Job":
            return self.uid in pod.owners or self.uid in (
                pod.labels.get("controller-uid"), pod.labels.get("batch.kubernetes.io/"
                                                                 "controller-uid"))
        return True

    def is_current(self, pod: Pod) -> bool:
        """Whether a pod of this workload runs its current template (old pods of a rollout in
        progress, pods being deleted and pods of other workloads are not)."""
        if pod.deleting or not self.owns(pod):
            return False
        labels = pod.labels
        status = self.obj.get("status") or {}
        if self.kind.kind == "StatefulSet" and status.get("updateRevision") and \
                labels.get("controller-revision-hash"):
            return bool(labels["controller-revision-hash"] == status["updateRevision"])
        if self.kind.kind == "DaemonSet" and labels.get("pod-template-generation"):
            return bool(labels["pod-template-generation"] == str(self.generation))
        if self.kind.kind in ("Job", "Pod"):
            return True  # replaced whole: a Job's or a Pod's pods run its only template
        return {c.name: c.image for c in pod.specs} == \
            {str(c.get("name")): c.get("image") for c in self.containers}


def current_pods(core: Any, workload: Workload) -> list[Pod]:
    """The pods of `workload` that run its current template (Workload.is_current): the ones
    a rollout waits for and a live update syncs into."""
    return [p for p in list_pods(core, workload.namespace, workload.selector_query)
            if workload.is_current(p)]


# --- rollout rules -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Progress:
    """Where a rollout stands: done, failed (with the reason), or the text of what it waits for."""

    done: bool
    text: str
    failed: str | None = None  # a reason: the rollout will not complete


def _condition(obj: Obj, kind: str) -> Obj | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or []
                 if c.get("type") == kind and c.get("status") == "True"), None)


def rollout_progress(obj: Obj, generation: int = 0) -> Progress:
    """kubectl's rollout rule for a StatefulSet, DaemonSet, ReplicaSet, Job, CronJob or Pod;
    `generation` is the one devloop's change produced (the controller must have seen it).
    Deployments keep their own, richer rule in rollout.py."""
    kind = str(obj.get("kind"))
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    ident = f"{kind.lower()}/{meta.get('name')}"
    if kind == "Job":
        if (failed := _condition(obj, "Failed")) is not None:
            return Progress(False, f"{ident} failed", one_line(
                f"{failed.get('reason') or 'Failed'}: {failed.get('message') or ''}"))
        if _condition(obj, "Complete") is not None:
            return Progress(True, f"{ident} completed ({status.get('succeeded') or 0}"
                            " succeeded)")
        return Progress(False, f"{ident}: {status.get('active') or 0} active,"
                        f" {status.get('succeeded') or 0} succeeded,"
                        f" {status.get('failed') or 0} failed")
    if kind == "CronJob":
        return Progress(True, f"{ident}: its next run uses the new template")
    if kind == "Pod":
        phase = status.get("phase") or "Pending"
        if phase == "Failed":
            return Progress(False, f"{ident} failed", one_line(status.get("reason") or phase))
        ready = _condition(obj, "Ready") is not None
        return Progress(ready or phase == "Succeeded", f"{ident}: {phase}"
                        + ("" if ready else ", not ready"))
    wanted = max(generation, int(meta.get("generation") or 0))
    if int(status.get("observedGeneration") or 0) < wanted:
        return Progress(False, f"waiting for the controller to observe generation {wanted}")
    if kind == "DaemonSet":
        desired = int(status.get("desiredNumberScheduled") or 0)
        updated = int(status.get("updatedNumberScheduled") or 0)
        available = int(status.get("numberAvailable") or 0)
        if updated < desired:
            return Progress(False, f"{updated} of {desired} updated pods scheduled")
        if available < desired:
            return Progress(False, f"{available} of {desired} updated pods available")
        return Progress(True, f"{desired} of {desired} pods updated and available")
    replicas = int(spec["replicas"]) if spec.get("replicas") is not None else 1
    ready = int(status.get("readyReplicas") or 0)
    if kind == "StatefulSet":
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return Progress(True, f"{ident} uses updateStrategy {strategy.get('type')}:"
                            " pods change when deleted")
        if ready < replicas:
            return Progress(False, f"{ready} of {replicas} pods ready")
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        updated = int(status.get("updatedReplicas") or 0)
        if partition > 0:
            if updated < replicas - partition:
                return Progress(False, f"{updated} of {replicas - partition} pods updated")
            return Progress(True, f"{updated} new pods updated (partition {partition})")
        if status.get("updateRevision") != status.get("currentRevision"):
            return Progress(False, f"{updated} of {replicas} pods updated")
        return Progress(True, f"{replicas} of {replicas} pods updated and ready")
    available = int(status.get("availableReplicas") or 0)  # ReplicaSet
    if available < replicas:
        return Progress(False, f"{available} of {replicas} pods available")
    return Progress(True, f"{replicas} of {replicas} pods available")


# --- which workloads an image feeds ------------------------------------------------------------

def fed_by(service: Any, objects: list[Obj], image_paths: ImagePaths | None = None) -> list[Any]:
    """The workloads (and containers) `objects` run `service`'s image in, as copies of the
    service (a ServiceConfig) with `kind`, `deployment` (the name) and `container` set: every
    built-in workload kind, containers and init containers, matched by repository. The service
    itself when none is (its workload as devloop.yaml names it)."""
    found = [dataclasses.replace(service, kind=use.kind, deployment=use.name,
                                 container=use.container)
             for use in users(objects, service.image, image_paths)
             if use.container and (kind := find_kind(use.kind)) is not None and kind.workload]
    return found or [service]


# --- reading, waiting, replacing -----------------------------------------------------------------

def read_workload(api_client: Any, namespace: str, ref: WorkloadRef) -> Workload:
    """The workload now (ApiException 404 when it does not exist; connection errors as raised)."""
    resp = client_method(api_client, ref.kind, "read")(
        ref.name, namespace, _preload_content=False, _request_timeout=_TIMEOUT)
    try:
        obj = json.loads(resp.data or b"{}")
    finally:
        resp.release_conn()
    obj.setdefault("kind", ref.kind.kind)
    obj.setdefault("apiVersion", ref.kind.api_version)
    return Workload(obj)


def await_workload(api_client: Any, namespace: str, ref: WorkloadRef, stop: threading.Event,
                   wake: threading.Event, on_error: Callable[[str], None], label: str,
                   retry_s: float = 2.0) -> Workload | None:
    """The workload whose pods a watch follows, once it exists (on a fresh cluster, after the
    first deploy): read again every `retry_s`, or at once when `wake` is set. A failure other
    than 404 is said once; None when `stop` is set first."""
    said = False
    while not stop.is_set():
        try:
            return read_workload(api_client, namespace, ref)
        except Exception as exc:
            if not (isinstance(exc, ApiException) or is_connection_error(exc)):
                raise
            if not said and not (isinstance(exc, ApiException) and exc.status == 404):
                said = True
                detail = api_message(exc) if isinstance(exc, ApiException) \
                    else connection_detail(exc)
                on_error(one_line(f"{label}: cannot read {ref}: {detail}; retrying"))
        wake.wait(retry_s)
        wake.clear()
    return None


def fresh_copy(obj: Obj) -> Obj:
    """`obj` as a new object to create: without what the API server wrote (status, UID,
    resourceVersion, ...) and, for a Job, without the selector and labels it generated."""
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.setdefault("metadata", {})
    for key in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields",
                "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "ownerReferences"):
        meta.pop(key, None)
    if out.get("kind") == "Job":
        spec = out.setdefault("spec", {})
        if not spec.get("manualSelector"):
            spec.pop("selector", None)
            labels = (spec.get("template") or {}).get("metadata", {}).get("labels") or {}
            for key in _JOB_GENERATED:
                labels.pop(key, None)
    if out.get("kind") == "Pod":
        out.get("spec", {}).pop("nodeName", None)
    return out


def replace_workload(api_client: Any, namespace: str, obj: Obj, deadline_s: float = 60.0,
                     sleep: Callable[[float], None] = time.sleep) -> Obj:
    """Delete the Job or Pod `obj` names (propagation Background) and create `obj` again once
    the old one is gone; returns the created object. The way to change an immutable template,
    as `kubectl replace --force` does. ApiException for a refusal; TimeoutError when the old
    object is still there after `deadline_s`."""
    kind = kind_of(obj)
    assert kind is not None
    name = obj["metadata"]["name"]
    try:
        client_method(api_client, kind, "delete")(
            name, namespace, body={"propagationPolicy": "Background"},
            _request_timeout=_TIMEOUT)
    except ApiException as exc:
        if exc.status != 404:
            raise
    body = fresh_copy(obj)
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            resp = client_method(api_client, kind, "create")(
                namespace, body, _preload_content=False, _request_timeout=_TIMEOUT)
        except ApiException as exc:
            if exc.status != 409 or time.monotonic() > deadline:  # 409: the old one is leaving
                if exc.status == 409:
                    raise TimeoutError(f"{kind.kind.lower()}/{name} was deleted but is still"
                                       f" there after {deadline_s:.0f}s (a finalizer?)") from exc
                raise
            sleep(0.2)
            continue
        try:
            return dict(json.loads(resp.data or b"{}"))
        finally:
            resp.release_conn()
