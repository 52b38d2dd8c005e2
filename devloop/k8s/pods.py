"""What a pod's containers are doing, read once from the pod status.

Shared by the rollout wait (which decides failure and progress from it) and `devloop status`
(which shows it), so both read waiting/terminated reasons and restarts the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes import client as k8s


@dataclass(frozen=True)
class ContainerState:
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


@dataclass(frozen=True)
class PodState:
    name: str
    namespace: str
    phase: str
    deleting: bool
    containers: tuple[ContainerState, ...]  # init containers first
    probed: frozenset[str]  # containers with a readiness probe
    created: datetime | None = None

    @property
    def main(self) -> tuple[ContainerState, ...]:
        return tuple(c for c in self.containers if not c.init)

    @property
    def ready(self) -> bool:
        return bool(self.main) and all(c.ready for c in self.main)

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

    def row(self) -> dict[str, Any]:
        """The JSON form `devloop status` prints."""
        return {"name": self.name, "phase": self.phase, "ready": self.ready,
                "restarts": self.restarts, "reason": self.reason,
                "image": self.main[0].image if self.main else None,
                "created": self.created.isoformat() if self.created else None}


def _container(cs: k8s.V1ContainerStatus, init: bool) -> ContainerState:
    state = cs.state or k8s.V1ContainerState()
    last = cs.last_state.terminated if cs.last_state else None
    waiting, term, running = state.waiting, state.terminated, state.running
    return ContainerState(
        name=cs.name, init=init, ready=bool(cs.ready), restarts=int(cs.restart_count or 0),
        image=cs.image,
        waiting=waiting.reason if waiting and waiting.reason else None,
        waiting_message=(waiting.message or "") if waiting else "",
        terminated=(term.reason or "Error") if term and term.exit_code not in (0, None)
        else (term.reason if term else None),
        exit_code=term.exit_code if term else None,
        last_exit_code=last.exit_code if last else None,
        running_since=running.started_at if running else None,
        running=running is not None)


def pod_state(pod: k8s.V1Pod) -> PodState:
    status = pod.status or k8s.V1PodStatus()
    containers = tuple(
        [_container(cs, True) for cs in status.init_container_statuses or []]
        + [_container(cs, False) for cs in status.container_statuses or []])
    probed = frozenset(c.name for c in (pod.spec.containers if pod.spec else None) or []
                       if c.readiness_probe is not None)
    return PodState(name=pod.metadata.name, namespace=pod.metadata.namespace or "",
                    phase=status.phase or "Pending",
                    deleting=pod.metadata.deletion_timestamp is not None,
                    containers=containers, probed=probed,
                    created=pod.metadata.creation_timestamp)
