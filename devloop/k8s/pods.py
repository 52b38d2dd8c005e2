"""One view of a pod: built here, from the API's JSON, and read the same way everywhere.

The rollout wait (failure and progress), `devloop status` (what it shows), the pod watch and what
follows it (logs, port forwards, container restarts) and live update (which containers to sync
into) all ask a pod the same questions: is it being deleted, which containers run, waiting or
terminated for what reason, how often restarted, which image, and which container instance runs
now. `pod_view` answers them once per read, so no module walks `status.containerStatuses` of its
own; `Pod.obj` keeps the API's JSON for the few readers that need a raw field (probe paths).

"The running container of this pod" is `Pod.running_id(name)`: the runtime's ID of the instance
running now (`docker://<id>`, `containerd://<id>`), "" when none runs. A container that restarts
(crash, OOM kill, liveness probe) comes back with a new ID and the image's files: whatever was
synced into the old one is gone. `split_container_id` reads such an ID.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dateutil import parser as date_parser
from kubernetes import client as k8s

from devloop.k8s import timeouts

Obj = dict[str, Any]


@dataclass(frozen=True)
class ContainerState:
    """One container's status, read from the pod."""

    name: str
    init: bool
    ready: bool
    restarts: int
    image: str | None
    waiting: str | None = None  # waiting reason (CrashLoopBackOff, ContainerCreating, ...)
    waiting_message: str = ""
    terminated: str | None = None  # terminated reason of the current instance
    exit_code: int | None = None
    last_exit_code: int | None = None  # exit code of the previous instance
    running_since: datetime | None = None
    running: bool = False
    container_id: str = ""  # the runtime's ID of the current instance ("" before it exists)
    started: bool = False  # an instance has run (running now, or terminated since)

    @property
    def running_id(self) -> str:
        """The ID of the instance running now; "" when none runs."""
        return self.container_id if self.running else ""


@dataclass(frozen=True)
class ContainerSpec:
    """One container as the pod's spec gives it."""

    name: str
    image: str | None
    init: bool
    run_as_user: int | None  # the container's securityContext, else the pod's; None: unsaid
    mounts: tuple[str, ...]  # volume mount paths
    readiness_probe: bool


@dataclass(frozen=True, eq=False)
class Pod:
    """One read of a pod. Build it with `pod_view`; `obj` is the API's JSON it was read from."""

    name: str
    namespace: str
    uid: str
    phase: str
    deleting: bool
    containers: tuple[ContainerState, ...]  # init containers first
    probed: frozenset[str]  # containers with a readiness probe
    created: datetime | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    owners: frozenset[str] = frozenset()  # UIDs of its ownerReferences
    pod_ip: str = ""
    ready_condition: bool = False  # the pod's Ready condition is True
    specs: tuple[ContainerSpec, ...] = ()  # init containers first
    obj: Obj = field(default_factory=dict)

    @property
    def main(self) -> tuple[ContainerState, ...]:
        return tuple(c for c in self.containers if not c.init)

    @property
    def ready(self) -> bool:
        """Every main container is ready (what `devloop status` shows)."""
        return bool(self.main) and all(c.ready for c in self.main)

    @property
    def serving(self) -> bool:
        """Ready condition True and not being deleted: the pods a Service sends traffic to."""
        return self.ready_condition and not self.deleting

    @property
    def final(self) -> bool:
        """No new container instance will start in this pod."""
        return self.deleting or self.phase in ("Succeeded", "Failed")

    @property
    def restarts(self) -> int:
        return sum(c.restarts for c in self.main)

    @property
    def reason(self) -> str | None:
        """The last waiting or terminated reason among the main containers."""
        reason = None
        for c in self.main:
            reason = c.waiting or c.terminated or reason
        return reason

    def status(self, container: str) -> ContainerState | None:
        """The status of main container `container`; None before the kubelet reports one."""
        return next((c for c in self.main if c.name == container), None)

    def spec(self, container: str) -> ContainerSpec | None:
        """Main container `container` of the spec; None when the pod has no such container."""
        return next((c for c in self.specs if c.name == container and not c.init), None)

    def image(self, container: str) -> str | None:
        """The image the spec gives main container `container`."""
        spec = self.spec(container)
        return spec.image if spec else None

    def running_id(self, container: str) -> str:
        """The running container of this pod: the ID of `container`'s instance running now,
        "" when none runs (not started, ended, restarting)."""
        status = self.status(container)
        return status.running_id if status else ""

    def running_ids(self) -> dict[str, str]:
        """{container name: ID} of the main containers running now."""
        return {c.name: c.running_id for c in self.main if c.running_id}

    def row(self) -> dict[str, Any]:
        """The JSON form `devloop status` prints."""
        return {"name": self.name, "phase": self.phase, "ready": self.ready,
                "restarts": self.restarts, "reason": self.reason,
                "image": self.main[0].image if self.main else None,
                "created": self.created.isoformat() if self.created else None}


def split_container_id(container_id: str) -> tuple[str, str]:
    """("docker", "<id>") from "docker://<id>": the runtime and its own ID; ("", text) when
    the text names no runtime."""
    runtime, sep, rest = container_id.partition("://")
    return (runtime, rest) if sep else ("", container_id)


def parse_time(text: Any) -> datetime | None:
    """An API timestamp as the kubernetes client reads it (dateutil); None when absent."""
    if not text:
        return None
    try:
        return date_parser.parse(str(text))
    except (ValueError, OverflowError):
        return None


def _dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _container(cs: Obj, init: bool) -> ContainerState:
    state = _dict(cs.get("state"))
    waiting, running = state.get("waiting"), state.get("running")
    term = _dict(state.get("terminated")) if state.get("terminated") is not None else None
    last = _dict(cs.get("lastState")).get("terminated")
    code = term.get("exitCode") if term is not None else None
    return ContainerState(
        name=str(cs.get("name")), init=init, ready=bool(cs.get("ready")),
        restarts=int(cs.get("restartCount") or 0), image=cs.get("image"),
        waiting=_dict(waiting).get("reason") or None,
        waiting_message=str(_dict(waiting).get("message") or ""),
        terminated=(term.get("reason") or "Error") if term is not None and code not in (0, None)
        else (term.get("reason") if term is not None else None),
        exit_code=code,
        last_exit_code=_dict(last).get("exitCode") if last is not None else None,
        running_since=parse_time(_dict(running).get("startedAt")),
        running=running is not None,
        container_id=str(cs.get("containerID") or ""),
        started=bool(running or state.get("terminated") or last))


def _spec(c: Obj, init: bool, pod_user: int | None) -> ContainerSpec:
    user = _dict(c.get("securityContext")).get("runAsUser")
    return ContainerSpec(
        name=str(c.get("name")), image=c.get("image"), init=init,
        run_as_user=user if user is not None else pod_user,
        mounts=tuple(str(m.get("mountPath")) for m in c.get("volumeMounts") or []),
        readiness_probe=c.get("readinessProbe") is not None)


def pod_view(obj: Mapping[str, Any]) -> Pod:
    """The typed view of a pod from the API's JSON (a list item, a watch event's object)."""
    raw = dict(obj)
    meta, spec, status = _dict(raw.get("metadata")), _dict(raw.get("spec")), \
        _dict(raw.get("status"))
    pod_user = _dict(spec.get("securityContext")).get("runAsUser")
    specs = tuple([_spec(c, True, pod_user) for c in spec.get("initContainers") or []]
                  + [_spec(c, False, pod_user) for c in spec.get("containers") or []])
    return Pod(
        name=str(meta.get("name") or ""), namespace=str(meta.get("namespace") or ""),
        uid=str(meta.get("uid") or ""), phase=str(status.get("phase") or "Pending"),
        deleting=meta.get("deletionTimestamp") is not None,
        containers=tuple(
            [_container(cs, True) for cs in status.get("initContainerStatuses") or []]
            + [_container(cs, False) for cs in status.get("containerStatuses") or []]),
        probed=frozenset(c.name for c in specs if not c.init and c.readiness_probe),
        created=parse_time(meta.get("creationTimestamp")),
        labels=dict(meta.get("labels") or {}), annotations=dict(meta.get("annotations") or {}),
        owners=frozenset(str(o.get("uid")) for o in meta.get("ownerReferences") or []),
        pod_ip=str(status.get("podIP") or ""),
        ready_condition=any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in status.get("conditions") or []),
        specs=specs, obj=raw)


def list_pods(core: k8s.CoreV1Api, namespace: str, selector: str) -> list[Pod]:
    """The pods `selector` matches in `namespace` (ApiException and connection errors as
    raised)."""
    resp = core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False,
                                    _request_timeout=timeouts.REQUEST)
    try:
        listing = json.loads(resp.data or b"{}")
    finally:
        resp.release_conn()
    return [pod_view(item) for item in listing.get("items") or []]


def read_pod(core: k8s.CoreV1Api, name: str, namespace: str,
             timeout: timeouts.Timeout = timeouts.REQUEST) -> Pod:
    """Pod `name` now (ApiException 404 when it is gone)."""
    resp = core.read_namespaced_pod(name, namespace, _preload_content=False,
                                    _request_timeout=timeout)
    try:
        return pod_view(json.loads(resp.data or b"{}"))
    finally:
        resp.release_conn()
