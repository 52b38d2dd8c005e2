"""Wait for a Deployment rollout with kubectl's completion rule, failing early on broken pods.

Polling, woken by a watch: every `poll` seconds the Deployment and its newest pods are read
(early failure detection needs the pods anyway), and a watch on the one Deployment wakes the
loop as soon as the controller writes a new status, so completion is seen within milliseconds
rather than half a poll interval. The watch is only a wake-up call: if it drops or is refused,
polling alone still finishes the job, and no resourceVersion bookkeeping or 410 recovery is
needed. The stop event is honoured within one poll interval.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from devloop.k8s import retry, timeouts
from devloop.k8s.errors import api_message, connection_detail, is_connection_error, one_line
from devloop.k8s.pods import Pod, list_pods
from devloop.k8s.selectors import selector_query
from devloop.k8s.workloads import (
    Workload,
    WorkloadRef,
    current_pods,
    read_workload,
    rollout_progress,
)

# Waiting reasons that will not fix themselves while devloop waits: the image or config is wrong.
FAILING_WAITING = frozenset({
    "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull",
    "CreateContainerConfigError", "CreateContainerError", "InvalidImageName",
})
LOG_TAIL_LINES = 20
_TIMEOUT = timeouts.REQUEST


@dataclass
class RolloutResult:
    ok: bool
    reason: str
    message: str
    pod: str | None = None
    log_tail: list[str] = field(default_factory=list)


def rollout_status(dep: k8s.V1Deployment, generation: int) -> tuple[bool, str, bool]:
    """(done, text, deadline_exceeded) by kubectl's DeploymentStatusViewer rule."""
    status = dep.status or k8s.V1DeploymentStatus()
    wanted_gen = max(generation, int(dep.metadata.generation or 0))
    if int(status.observed_generation or 0) < wanted_gen:
        return False, f"waiting for the controller to observe generation {wanted_gen}", False
    for cond in status.conditions or []:
        if cond.type == "Progressing" and cond.reason == "ProgressDeadlineExceeded":
            return False, one_line(cond.message or "progress deadline exceeded"), True
    replicas = dep.spec.replicas if dep.spec.replicas is not None else 1
    updated = int(status.updated_replicas or 0)
    current = int(status.replicas or 0)
    available = int(status.available_replicas or 0)
    if updated < replicas:
        return False, f"{updated} of {replicas} new replicas updated", False
    if current > updated:
        return False, f"{current - updated} old replicas pending termination", False
    if available < updated:
        return False, f"{available} of {updated} updated replicas available", False
    return True, f"{updated} of {replicas} replicas updated and available", False


def current_template(rs_template: dict[str, Any], dep_template: dict[str, Any]) -> bool:
    """Whether a ReplicaSet's pod template (as JSON) is the Deployment's current one, its
    pod-template-hash label aside: how the deployment controller finds its new ReplicaSet."""
    def plain(template: dict[str, Any]) -> dict[str, Any]:
        meta = dict(template.get("metadata") or {})
        meta["labels"] = {k: v for k, v in (meta.get("labels") or {}).items()
                          if k != "pod-template-hash"}
        return {**template, "metadata": {k: v for k, v in meta.items() if v}}
    return plain(rs_template) == plain(dep_template)


def _new_revision_pods(apps: k8s.AppsV1Api, core: k8s.CoreV1Api, dep: k8s.V1Deployment
                       ) -> list[Pod]:
    """Pods of the Deployment's current template: those of the ReplicaSet made from it, none
    while the controller has not made it yet (a Recreate rollout scales the old pods down
    first, and says it observed the new generation meanwhile: the old pods, perhaps failing,
    are not the new revision's); when no ReplicaSet is visible, the pods whose container
    images match the template."""
    namespace = dep.metadata.namespace
    selector = selector_query(dep.spec.selector)
    pods = list_pods(core, namespace, selector)
    try:
        sets = apps.list_namespaced_replica_set(namespace, label_selector=selector,
                                                _request_timeout=_TIMEOUT).items
    except ApiException:
        sets = []
    owned = [rs for rs in sets
             if any(ref.uid == dep.metadata.uid for ref in rs.metadata.owner_references or [])]
    if owned:
        plain = apps.api_client.sanitize_for_serialization
        template = plain(dep.spec.template)
        newest = [rs for rs in owned if current_template(plain(rs.spec.template), template)]
        pod_hash = (newest[0].metadata.labels or {}).get("pod-template-hash") if newest else None
        return [p for p in pods if pod_hash and p.labels.get("pod-template-hash") == pod_hash]
    images = {c.name: c.image for c in dep.spec.template.spec.containers}
    return [p for p in pods
            if {c.name: c.image for c in p.specs if not c.init} == images and not p.deleting]


def _log_tail(core: k8s.CoreV1Api, pod: Pod, container: str, previous: bool
              ) -> list[str]:
    """The container's last lines; the previous instance's for a container that crashed."""
    for prev in ([True, False] if previous else [False]):
        try:
            text = core.read_namespaced_pod_log(
                pod.name, pod.namespace, container=container,
                tail_lines=LOG_TAIL_LINES, previous=prev, limit_bytes=64 * 1024,
                _request_timeout=_TIMEOUT)
        except ApiException:
            continue
        except Exception as exc:
            if is_connection_error(exc):
                return []
            raise
        lines = (text or "").splitlines()
        if lines:
            return lines[-LOG_TAIL_LINES:]
    return []


def _pod_failure(core: k8s.CoreV1Api, pod: Pod) -> RolloutResult | None:
    for cs in pod.containers:
        if cs.waiting in FAILING_WAITING:
            detail = cs.waiting_message
            if cs.last_exit_code is not None and cs.waiting == "CrashLoopBackOff":
                detail = f"exit code {cs.last_exit_code}, restarted {cs.restarts} times"
            crashed = cs.waiting == "CrashLoopBackOff" or cs.restarts > 0
            tail = _log_tail(core, pod, cs.name, previous=True) if crashed else []
            return RolloutResult(False, cs.waiting, one_line(
                f"pod {pod.name} container {cs.name}: {cs.waiting}"
                + (f" ({detail})" if detail else "")), pod=pod.name, log_tail=tail)
        if cs.exit_code not in (0, None) and cs.restarts >= 1:
            return RolloutResult(False, cs.terminated or "Error", one_line(
                f"pod {pod.name} container {cs.name}: {cs.terminated} (exit code {cs.exit_code},"
                f" restarted {cs.restarts} times)"), pod=pod.name,
                log_tail=_log_tail(core, pod, cs.name, previous=False))
    return None


def _pod_progress(pod: Pod) -> str | None:
    """`pod x: ContainerCreating` for a new pod that is not ready yet."""
    for cs in pod.main:
        if cs.waiting:
            return f"pod {pod.name}: {cs.waiting}"
        if not cs.ready:
            return f"pod {pod.name}: not ready"
    if not pod.main:
        return f"pod {pod.name}: {pod.phase}"
    return None


def _unsettled(pods: list[Pod], settle_s: float) -> str | None:
    """Why the new pods do not count as up yet: a container not running, or one without a
    readiness probe running for less than settle_s (pod clock vs ours: fine for local clusters,
    bounded by the deadline). A container with a readiness probe is up when Ready: its probe
    is the better signal, and waiting longer would only slow every reload."""
    now = datetime.now(UTC)
    for pod in pods:
        for cs in pod.main:
            if not cs.running:
                return f"pod {pod.name}: container {cs.name} is not running"
            if cs.name in pod.probed and cs.ready:
                continue
            started = cs.running_since
            if started is not None and (now - started).total_seconds() < settle_s:
                return f"pod {pod.name}: checking that {cs.name} stays up"
    return None


def _all_probed(dep: k8s.V1Deployment) -> bool:
    containers = dep.spec.template.spec.containers or []
    return bool(containers) and all(c.readiness_probe is not None for c in containers)


def _not_ready_tail(core: k8s.CoreV1Api, pods: list[Pod]) -> tuple[str | None, list[str]]:
    for pod in pods:
        for cs in pod.main:
            if not cs.ready:
                return pod.name, _log_tail(core, pod, cs.name, previous=False)
    return None, []


class _StatusWake:
    """Sets `event` whenever the Deployment changes, from a daemon thread with its own watch."""

    def __init__(self, apps: k8s.AppsV1Api, namespace: str, deployment: str) -> None:
        self.event = threading.Event()
        self._done = threading.Event()
        self._args = (apps, namespace, deployment)
        threading.Thread(target=self._run, daemon=True, name=f"rollout-wake:{deployment}").start()

    def _run(self) -> None:
        apps, namespace, deployment = self._args
        while not self._done.is_set():
            watcher = k8s_watch.Watch()
            try:
                for _ in watcher.stream(apps.list_namespaced_deployment, namespace,
                                        field_selector=f"metadata.name={deployment}",
                                        timeout_seconds=5, _request_timeout=timeouts.watch(5)):
                    self.event.set()
                    if self._done.is_set():
                        break
            except Exception:
                if self._done.wait(1.0):  # refused or dropped: polling carries on alone
                    return
            finally:
                watcher.stop()

    def close(self) -> None:
        self._done.set()


def wait_rollout(apps: k8s.AppsV1Api, core: k8s.CoreV1Api, namespace: str, deployment: str,
                 generation: int, timeout_s: float, stop: threading.Event,
                 on_progress: Callable[[str], None], poll: float = 0.5,
                 settle_s: float = 2.0, watch: bool = True) -> RolloutResult:
    """Wait until the rollout of `generation` is complete, has failed, timed out or is stopped.

    Beyond kubectl's rule, the new pods' containers must have been running for settle_s: a
    pod without a readiness probe is Ready the moment it starts, so an image that crashes on
    start would otherwise "roll out" and crash a second later. Containers with a readiness
    probe count as up once Ready. `watch` wakes the loop on every Deployment change.
    on_progress gets a short text each time the status text changes (not on every poll).
    API errors are retried until the deadline; they end up in the timeout message.
    """
    ident = f"deployment {namespace}/{deployment}"
    deadline = time.monotonic() + timeout_s
    wake = _StatusWake(apps, namespace, deployment) if watch else None
    try:
        return _wait(apps, core, namespace, deployment, generation, timeout_s, stop,
                     on_progress, poll, settle_s, ident, deadline, wake)
    finally:
        if wake is not None:
            wake.close()


def _wait(apps: k8s.AppsV1Api, core: k8s.CoreV1Api, namespace: str, deployment: str,
          generation: int, timeout_s: float, stop: threading.Event,
          on_progress: Callable[[str], None], poll: float, settle_s: float, ident: str,
          deadline: float, wake: _StatusWake | None) -> RolloutResult:
    last_text = ""
    new_pods: list[Pod] = []
    unreachable = False  # the last poll could not reach the API server

    def report(text: str) -> None:
        nonlocal last_text
        if text != last_text:
            last_text = text
            on_progress(text)

    while True:
        try:
            dep = apps.read_namespaced_deployment(deployment, namespace, _request_timeout=_TIMEOUT)
            unreachable = False
            result, text, new_pods = _check(apps, core, dep, generation, settle_s, ident,
                                            new_pods)
            if result is not None:
                return result
            report(text)
        except ApiException as exc:
            if exc.status == 404:
                return RolloutResult(False, "NotFound", f"{ident} not found")
            # no answer, credentials refused, or an overloaded server: not the rollout's fault
            was, unreachable = unreachable, exc.status in (0, 401, 403) or retry.is_transient(exc)
            if not (was and unreachable):  # one line per outage, not one per poll
                report(one_line(f"cannot read {ident}: {api_message(exc)}; retrying"))
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            if not unreachable:
                report(f"API server unreachable ({connection_detail(exc)}); retrying")
            unreachable = True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if unreachable:
                return RolloutResult(False, "ClusterUnreachable", one_line(
                    f"{ident}: rollout state unknown after {timeout_s:g}s: {last_text}"))
            pod, tail = _not_ready_tail(core, new_pods)
            return RolloutResult(False, "Timeout", one_line(
                f"{ident} not rolled out after {timeout_s:g}s: {last_text}"), pod=pod,
                log_tail=tail)
        if wake is not None:
            wake.event.wait(min(poll, remaining))
            wake.event.clear()
        if stop.wait(0 if wake is not None else min(poll, remaining)):
            return RolloutResult(False, "Cancelled", f"stopped waiting for {ident}")


def _check(apps: k8s.AppsV1Api, core: k8s.CoreV1Api, dep: k8s.V1Deployment, generation: int,
           settle_s: float, ident: str, new_pods: list[Pod]
           ) -> tuple[RolloutResult | None, str, list[Pod]]:
    """One look at the Deployment and its newest pods: (final result or None, progress text,
    the newest pods). `new_pods` are the pods seen last time (for a deadline's log tail)."""
    done, text, exceeded = rollout_status(dep, generation)
    if exceeded:
        pod, tail = _not_ready_tail(core, new_pods)
        return RolloutResult(False, "ProgressDeadlineExceeded", one_line(
            f"{ident} exceeded its progress deadline: {text}"), pod=pod, log_tail=tail), text, \
            new_pods
    if done and _all_probed(dep):
        # every container has a readiness probe and all new replicas are available:
        # nothing left to check on the pods (saves two list calls on the hot path)
        return RolloutResult(True, "Complete", f"{ident} rolled out: {text}"), text, new_pods
    if text.startswith("waiting for the controller"):
        return None, text, new_pods
    new_pods = _new_revision_pods(apps, core, dep)
    for pod in new_pods:
        failure = _pod_failure(core, pod)
        if failure is not None:
            return failure, text, new_pods
    if done:
        unsettled = _unsettled(new_pods, settle_s)
        if unsettled is None:
            return RolloutResult(True, "Complete", f"{ident} rolled out: {text}"), text, new_pods
        return None, f"{text}; {unsettled}", new_pods
    detail = next(filter(None, map(_pod_progress, new_pods)), None)
    return None, f"{text}; {detail}" if detail else text, new_pods


def rollout_health(apps: k8s.AppsV1Api, core: k8s.CoreV1Api, dep: k8s.V1Deployment
                   ) -> RolloutResult:
    """The Deployment's state right now, without waiting (for `devloop status`): Complete, a
    pod failure (with its last log lines), or reason "Progressing" with the progress text."""
    ident = f"deployment {dep.metadata.namespace}/{dep.metadata.name}"
    result, text, _ = _check(apps, core, dep, int(dep.metadata.generation or 0), 0.0, ident, [])
    return result or RolloutResult(False, "Progressing", one_line(f"{ident}: {text}"))


# --- workloads of other kinds (devloop.k8s.workloads) ---------------------------------------

def workload_health(core: k8s.CoreV1Api, workload: Workload, generation: int = 0,
                    settle_s: float = 0.0) -> tuple[RolloutResult | None, str, list[Pod]]:
    """One look at a workload of any kind but Deployment and its current pods: (final result
    or None, progress text, the current pods), by workloads.rollout_progress plus the early
    failures and the settle rule wait_rollout applies to a Deployment's pods."""
    ident = f"{workload.ref} in namespace {workload.namespace}"
    progress = rollout_progress(workload.obj, generation)
    if progress.text.startswith("waiting for the controller"):
        return None, progress.text, []
    pods = current_pods(core, workload)
    if progress.failed:
        pod, tail = next(((p.name, _log_tail(core, p, p.main[0].name, previous=False))
                          for p in pods if p.main), (None, []))
        return RolloutResult(False, "Failed", one_line(f"{ident}: {progress.failed}"),
                             pod=pod, log_tail=tail), progress.text, pods
    for pod in pods:
        failure = _pod_failure(core, pod)
        if failure is not None:
            return failure, progress.text, pods
    if progress.done:
        settled = None if workload.kind.kind in ("Job", "CronJob") else _unsettled(pods, settle_s)
        if settled is None:
            return RolloutResult(True, "Complete", f"{ident} rolled out: {progress.text}"), \
                progress.text, pods
        return None, f"{progress.text}; {settled}", pods
    detail = next(filter(None, map(_pod_progress, pods)), None)
    return None, f"{progress.text}; {detail}" if detail else progress.text, pods


def wait_workload(api_client: k8s.ApiClient, core: k8s.CoreV1Api, namespace: str,
                  ref: WorkloadRef, generation: int, timeout_s: float, stop: threading.Event,
                  on_progress: Callable[[str], None], poll: float = 0.5,
                  settle_s: float = 2.0) -> RolloutResult:
    """wait_rollout for a StatefulSet, DaemonSet, ReplicaSet, Job (its completion), CronJob (no
    wait) or Pod: polled (no watch: these reloads are rarer than a Deployment's), the same early
    failures, deadline and stop as a Deployment's rollout."""
    ident = f"{ref} in namespace {namespace}"
    deadline = time.monotonic() + timeout_s
    last_text, pods = "", []
    while True:
        try:
            workload = read_workload(api_client, namespace, ref)
            result, text, pods = workload_health(core, workload, generation, settle_s)
            if result is not None:
                return result
        except ApiException as exc:
            if exc.status == 404:
                return RolloutResult(False, "NotFound", f"{ident} not found")
            text = one_line(f"cannot read {ident}: {api_message(exc)}; retrying")
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            text = f"API server unreachable ({connection_detail(exc)}); retrying"
        if text != last_text:
            last_text = text
            on_progress(text)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pod, tail = _not_ready_tail(core, pods)
            return RolloutResult(False, "Timeout", one_line(
                f"{ident} not rolled out after {timeout_s:g}s: {last_text}"), pod=pod,
                log_tail=tail)
        if stop.wait(min(poll, remaining)):
            return RolloutResult(False, "Cancelled", f"stopped waiting for {ident}")
