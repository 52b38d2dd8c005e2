"""Live update, the cluster half: copy changed sources into a service's running containers.

The pure decision (which files go where, or why only a rebuild will do) is
`devloop.liveupdate.plan`; the copy itself is a `ContainerUpdater`. This module finds the
containers of the Deployment's current revision, plans per container from what it holds
(the image's files, recorded in the `SnapshotStore`, plus what devloop synced into that very
container ID), runs the updates, and records the truth on each pod as an annotation so
`devloop status` can tell "runs the image as built" from "N files ahead of it".

Anything that cannot be synced raises `NeedRebuild` with a one-line reason: the pipeline then
does a full reload in the same cycle.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from devloop import events as ev
from devloop.cluster import Cluster
from devloop.config import ServiceConfig
from devloop.containerupdate import ContainerUpdater, Target, UpdateFailed
from devloop.digest import ServiceDigest, image_tag
from devloop.errors_k8s import api_message, is_connection_error
from devloop.liveupdate import LivePlan, Rebuild, dest_for, not_writable_hint, plan, rules_for
from devloop.pipeline import LiveState, NeedRebuild
from devloop.snapshots import SnapshotStore
from devloop.workloads import read_workload

LIVE_ANNOTATION = "devloop.dev/live"
_TIMEOUT = (5, 15)


@dataclass(frozen=True)
class LiveTarget:
    target: Target
    pod_uid: str
    mounts: tuple[str, ...]
    annotation: dict[str, Any] | None  # what an earlier sync recorded in this container
    uid: int | None  # the user the container runs as, when the spec says


class LiveSyncer:
    """Syncs services of one cluster namespace; called from pipeline worker threads."""

    def __init__(self, bus: ev.EventBus, cluster: Cluster, updater: ContainerUpdater,
                 snapshots: SnapshotStore, root: Path,
                 shared_daemon: ContainerUpdater | None = None) -> None:
        """`updater` works on every cluster (the exec API); `shared_daemon`, when the pods run
        in the Docker Engine devloop builds with, copies through the Docker API instead:
        measured 1.5x to 3x faster (bench/bench_transfer.py)."""
        self.bus = bus
        self.cluster = cluster
        self.updater = updater
        self.shared_daemon = shared_daemon
        self.snapshots = snapshots
        self.root = root  # the project root, for repository paths in messages

    # --- image records ---------------------------------------------------------------------------

    def record_image(self, digest: ServiceDigest, value: str) -> None:
        """Remember the files of image `value`, just built or deployed from these inputs."""
        self.snapshots.save(value, digest.context_files(), digest.meta_digest())

    # --- the containers --------------------------------------------------------------------------

    def targets(self, svc: ServiceConfig) -> list[LiveTarget]:
        """Running containers of the workload's current pod template (old pods of a rollout
        in progress are skipped: they are about to go), for a workload of any kind."""
        ns = self.cluster.namespace
        try:
            workload = read_workload(self.cluster.api_client, ns, svc.workload)
            image = workload.template_image(svc.container)
            pods = self.cluster.core.list_namespaced_pod(
                ns, label_selector=workload.selector_query, _request_timeout=_TIMEOUT)
        except ApiException as exc:
            raise NeedRebuild(f"cannot list the pods of {svc.workload} in namespace {ns}: "
                              f"{api_message(exc)}") from None
        except Exception as exc:
            if is_connection_error(exc):
                raise NeedRebuild(f"cannot reach the cluster to sync {svc.name}") from None
            raise
        out = []
        for pod in pods.items:
            if pod.metadata.deletion_timestamp is not None:
                continue
            spec = next((c for c in pod.spec.containers if c.name == svc.container), None)
            if spec is None or spec.image != image:
                continue
            status = next((s for s in pod.status.container_statuses or []
                           if s.name == svc.container), None)
            if status is None or not (status.state and status.state.running):
                continue
            contexts = [spec.security_context, pod.spec.security_context]
            uid = next((c.run_as_user for c in contexts if c is not None
                        and c.run_as_user is not None), None)
            out.append(LiveTarget(
                Target(ns, pod.metadata.name, svc.container, status.container_id or ""),
                pod.metadata.uid, tuple(m.mount_path for m in spec.volume_mounts or []),
                _live_note(pod.metadata.annotations, svc.container, status.container_id),
                uid))
        return out

    def recover(self, svc: ServiceConfig, digest: ServiceDigest, value: str,
                image: str) -> LiveState | None:
        """At start-up: the live state an earlier devloop run left on the pods, if any.

        A container still holding files synced earlier (same container ID as recorded) is
        known only when those files are today's sources; otherwise its content is unknown and
        only a full reload makes it true again."""
        synced: set[str] = set()
        for t in self.targets(svc):
            ann = t.annotation
            if not ann:
                continue  # no sync, or the container restarted: it runs the image as built
            if ann.get("image") != image[:12]:
                continue
            if ann.get("digest") != value[:12]:
                raise NeedRebuild(f"pod {t.target.pod} runs files synced by an earlier devloop"
                                  " run that differ from the sources now")
            synced.add(t.target.container_id)
        if not synced:
            return None
        snap = self.snapshots.load(image)
        current = digest.context_files()
        ahead = _ahead(snap.files, current) if snap else 0
        return LiveState(value, image, current, frozenset(synced), ahead)

    def replace_diverged(self, svc: ServiceConfig, value: str) -> list[str]:
        """Delete the pods whose container still runs files synced earlier that differ from
        sources of digest `value` (their Deployment starts pods of the image instead); the
        names of the pods deleted. Deleting a pod touches no volume: claims stay bound."""
        deleted = []
        for t in self.targets(svc):
            ann = t.annotation
            if not ann or ann.get("digest") == value[:12]:
                continue
            try:
                self.cluster.core.delete_namespaced_pod(t.target.pod, t.target.namespace,
                                                        _request_timeout=_TIMEOUT)
                deleted.append(t.target.pod)
            except ApiException as exc:
                if exc.status != 404:
                    raise NeedRebuild(f"cannot replace pod {t.target.pod}: "
                                      f"{api_message(exc)}") from None
        return deleted

    # --- one sync --------------------------------------------------------------------------------

    def sync(self, svc: ServiceConfig, digest: ServiceDigest, value: str, image: str,
             live: LiveState | None) -> LiveState:
        """Copy what differs into every running container; NeedRebuild when it cannot."""
        text = svc.dockerfile.read_text(encoding="utf-8", errors="replace")
        try:
            rel_df: str | None = svc.dockerfile.relative_to(svc.context).as_posix()
        except ValueError:
            rel_df = None
        rules = rules_for(text, rel_df, svc.target, svc.live_update, svc.build_args)
        if isinstance(rules, str):
            raise NeedRebuild(rules)
        snap = self.snapshots.load(image)
        if snap is None:
            raise NeedRebuild(f"no record of the files in {image_tag(svc.image, image)}")
        if snap.meta != digest.meta_digest():
            raise NeedRebuild("build args, target, a Dockerfile outside the context or a"
                              " watched path changed")
        current = digest.context_files()
        targets = self.targets(svc)
        if not targets:
            raise NeedRebuild(f"no running container of {svc.workload} to sync"
                              " into")
        plans: list[tuple[LiveTarget, LivePlan]] = []
        for t in targets:
            holds = (live.files if live is not None and t.target.container_id in live.containers
                     else snap.files)
            result = plan(rules, snap.files, current, holds, t.mounts)
            if isinstance(result, Rebuild):
                raise NeedRebuild(result.reason)
            plans.append((t, result))
        work = [(t, p) for t, p in plans if p.copies or p.deletes or p.run]
        files = max((len(p.copies) for _, p in work), default=0)
        deletes = max((len(p.deletes) for _, p in work), default=0)
        pods = [t.target.pod for t, _ in work]
        started = time.monotonic()
        total_bytes = 0
        method = self.updater.name
        if work:
            self.bus.publish(ev.LIVE_SYNC_STARTED, svc.name, files=files, deletes=deletes,
                             pods=pods)
        for t, p in work:
            copies = [(svc.context / c.rel, c.dest) for c in p.copies]
            try:
                done = self._update(t.target, copies, list(p.deletes), list(p.run))
            except UpdateFailed as exc:
                reason = str(exc)
                if exc.kind == "not_writable" and exc.path:
                    rule = next((dest_for(rules, c.rel) for c in p.copies
                                 if exc.path.startswith(c.dest) or c.dest.startswith(exc.path)),
                                None)
                    if rule is not None:
                        dockerfile = os.path.relpath(svc.dockerfile, self.root)
                        reason = f"{reason}; {not_writable_hint(rule, dockerfile, t.uid)}"
                self.bus.publish(ev.LIVE_SYNC_FAILED, svc.name, pod=t.target.pod,
                                 reason=reason, fallback="rebuild")
                raise NeedRebuild(reason) from None
            total_bytes += done.bytes
            method = done.method
        ahead = _ahead(snap.files, current)
        ids = frozenset(t.target.container_id for t, _ in plans)
        for t, _ in plans:
            self._annotate(t, svc, value, image, ahead)
        if work:
            self.bus.publish(ev.LIVE_SYNC_FINISHED, svc.name, files=files, deletes=deletes,
                             bytes=total_bytes, seconds=round(time.monotonic() - started, 3),
                             pods=pods, method=method, ahead=ahead)
        return LiveState(value, image, current, ids, ahead)

    def _update(self, target: Target, copies: list[tuple[Path, str]], deletes: list[str],
                run: list[str]) -> Any:
        """Through the shared Docker daemon when the container lives there, else (or when the
        daemon does not know the container after all) through the exec API."""
        if self.shared_daemon is not None and target.container_id.startswith("docker://"):
            try:
                return self.shared_daemon.update(target, copies, deletes, run)
            except UpdateFailed as exc:
                if exc.kind not in ("gone", "exec_refused"):
                    raise
        return self.updater.update(target, copies, deletes, run)

    def _annotate(self, t: LiveTarget, svc: ServiceConfig, value: str, image: str,
                  ahead: int) -> None:
        """Record on the pod what its container now runs (best effort: status reads it)."""
        note = json.dumps({"digest": value[:12], "image": image[:12], "files": ahead,
                           "containers": {svc.container: t.target.container_id}},
                          separators=(",", ":"), sort_keys=True)
        if t.annotation is not None and json.dumps(t.annotation, separators=(",", ":"),
                                                   sort_keys=True) == note:
            return
        try:
            self.cluster.core.patch_namespaced_pod(
                t.target.pod, t.target.namespace,
                {"metadata": {"annotations": {LIVE_ANNOTATION: note}}},
                _request_timeout=_TIMEOUT)
        except ApiException as exc:
            self.bus.publish(ev.WARNING, svc.name, message=(
                f"cannot record the live state on pod {t.target.pod}: {api_message(exc)}"))
        except Exception as exc:
            if not is_connection_error(exc):
                raise


def pod_live(pod: Any, container: str) -> dict[str, Any] | None:
    """What devloop synced into this pod's running `container` (from the pod annotation), or
    None when it runs its image as built (never synced, or restarted since)."""
    running = next((s.container_id for s in pod.status.container_statuses or []
                    if s.name == container and s.state and s.state.running), None)
    note = _live_note(pod.metadata.annotations, container, running)
    if note is None:
        return None
    return {"digest": note.get("digest"), "image": note.get("image"),
            "files_ahead": int(note.get("files") or 0)}


def _live_note(annotations: dict[str, str] | None, container: str, running: str | None
               ) -> dict[str, Any] | None:
    """The live note on a pod, only when it names `running`, the ID of the container running
    now: a container that restarted since runs its image as built."""
    raw = (annotations or {}).get(LIVE_ANNOTATION)
    try:
        note = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(note, dict) or not running or \
            (note.get("containers") or {}).get(container) != running:
        return None
    return note


def _ahead(image_files: dict[str, str], current: dict[str, str]) -> int:
    """How many context files differ between the image and the sources now."""
    return sum(1 for rel in image_files.keys() | current.keys()
               if image_files.get(rel) != current.get(rel))
