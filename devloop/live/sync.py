"""Live update, the cluster half: copy changed sources into a service's running containers.

The pure decision (which files go where, or why only a rebuild will do) is
`devloop.live.plan.plan`; the copy itself is a `ContainerUpdater`. This module finds the
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from devloop import events as ev
from devloop.config.loader import ServiceConfig
from devloop.inputs.digest import ServiceDigest, image_tag
from devloop.k8s import retry, timeouts
from devloop.k8s.cluster import Cluster
from devloop.k8s.errors import api_message, is_connection_error
from devloop.k8s.pods import Pod
from devloop.k8s.workloads import current_pods, read_workload
from devloop.live.image_files import SnapshotStore
from devloop.live.plan import (
    LivePlan,
    LiveRules,
    Rebuild,
    dest_for,
    not_writable_hint,
    plan,
    rules_for,
    unconfirmed_holds,
)
from devloop.live.updaters import (
    Archive,
    ContainerUpdater,
    DockerUpdater,
    Target,
    UpdateFailed,
)
from devloop.manifests.render import RenderError
from devloop.vocab import LiveState, NeedRebuild

LIVE_ANNOTATION = "devloop.dev/live"
_TIMEOUT = timeouts.REQUEST
MAX_LIVE_MB = 50  # a sync that would copy more into one container rebuilds instead
_MAX_PENDING = 500  # paths an intent lists; beyond, "*": every file a sync rule covers


@dataclass(frozen=True)
class LiveTarget:
    target: Target
    pod_uid: str
    mounts: tuple[str, ...]
    annotation: dict[str, Any] | None  # what an earlier sync recorded in this container
    uid: int | None  # the user the container runs as, when the spec says

    @property
    def unconfirmed(self) -> bool:
        """A sync into this container began and never confirmed: its content is unknown."""
        return self.annotation is not None and "syncing" in self.annotation


class LiveSyncer:
    """Syncs services of one cluster namespace; called from pipeline worker threads."""

    def __init__(self, bus: ev.EventBus, cluster: Cluster, updater: ContainerUpdater,
                 snapshots: SnapshotStore, root: Path,
                 shared_daemon: DockerUpdater | None = None,
                 max_live_mb: float = MAX_LIVE_MB) -> None:
        """`updater` works on every cluster (the exec API); `shared_daemon`, when the pods run
        in the Docker Engine devloop builds with, copies through the Docker API instead:
        measured 1.5x to 3x faster (bench/bench_transfer.py)."""
        self.bus = bus
        self.cluster = cluster
        self.updater = updater
        self.shared_daemon = shared_daemon
        self.snapshots = snapshots
        self.root = root  # the project root, for repository paths in messages
        # the workloads a service's image feeds (the deployer's answer when there is one)
        self.workloads: Callable[[ServiceConfig], list[ServiceConfig]] = lambda svc: [svc]
        self.max_live_mb = max_live_mb  # a bigger copy into one container rebuilds instead

    # --- image records ---------------------------------------------------------------------------

    def record_image(self, digest: ServiceDigest, value: str) -> None:
        """Remember the files of image `value`, just built or deployed from these inputs."""
        self.snapshots.save(value, digest.context_files(), digest.meta_digest())

    # --- the containers --------------------------------------------------------------------------

    def targets(self, svc: ServiceConfig) -> list[LiveTarget]:
        """Running containers of every workload the service's image feeds. When it feeds
        several and one has none (a finished Job, a CronJob between runs, an init container),
        only a rebuild gets the change to all of them: NeedRebuild."""
        try:
            workloads = self.workloads(svc)
        except RenderError as exc:
            raise NeedRebuild(str(exc)) from None
        out: list[LiveTarget] = []
        for workload in workloads:
            found = self._workload_targets(workload)
            if not found and len(workloads) > 1:
                raise NeedRebuild(f"{workload.workload} container {workload.container} is not"
                                  f" running: rebuilding so every workload of {svc.image} gets"
                                  " the change")
            out += found
        return out

    def _workload_targets(self, svc: ServiceConfig) -> list[LiveTarget]:
        """Running containers of the workload's current pod template (old pods of a rollout
        in progress are skipped: they are about to go), for a workload of any kind."""
        ns = self.cluster.namespace
        try:
            workload = read_workload(self.cluster.api_client, ns, svc.workload)
            image = workload.template_image(svc.container)
            pods = current_pods(self.cluster.core, workload)
        except ApiException as exc:
            raise NeedRebuild(f"cannot list the pods of {svc.workload} in namespace {ns}: "
                              f"{api_message(exc)}") from None
        except Exception as exc:
            if is_connection_error(exc):
                raise NeedRebuild(f"cannot reach the cluster to sync {svc.name}") from None
            raise
        out = []
        for pod in pods:
            spec, status = pod.spec(svc.container), pod.status(svc.container)
            if spec is None or spec.image != image or status is None or not status.running:
                continue
            out.append(LiveTarget(
                Target(ns, pod.name, svc.container, status.running_id),
                pod.uid, spec.mounts,
                _live_note(pod.annotations, svc.container, status.running_id),
                spec.run_as_user))
        return out

    def recover(self, svc: ServiceConfig, digest: ServiceDigest, value: str,
                image: str) -> LiveState | None:
        """At start-up: the live state an earlier devloop run left on the pods, if any.

        A container still holding files synced earlier (same container ID as recorded) is
        known only when those files are today's sources; otherwise its content is unknown and
        only a full reload makes it true again. A sync that was interrupted (an intent never
        confirmed) makes the whole state unknown (None): every container is planned again from
        its note, so the next sync copies the unknown files again, or the pods are replaced."""
        synced: set[str] = set()
        interrupted = False
        for t in self.targets(svc):
            ann = t.annotation
            if not ann:
                continue  # no sync, or the container restarted: it runs the image as built
            if t.unconfirmed:
                interrupted = True
                continue
            if ann.get("image") != image[:12]:
                continue
            if ann.get("digest") != value[:12]:
                raise NeedRebuild(f"pod {t.target.pod} runs files synced by an earlier devloop"
                                  " run that differ from the sources now")
            synced.add(t.target.container_id)
        if not synced or interrupted:
            return None
        snap = self.snapshots.load(image)
        current = digest.context_files()
        ahead = _ahead(snap.files, current) if snap else 0
        return LiveState(value, image, current, frozenset(synced), ahead)

    def replace_diverged(self, svc: ServiceConfig, value: str) -> list[str]:
        """Delete the pods whose container still runs files synced earlier that differ from
        sources of digest `value` (their Deployment starts pods of the image instead); the
        names of the pods deleted, also those a sync into was interrupted (content unknown).
        Deleting a pod touches no volume: claims stay bound."""
        deleted = []
        for t in self.targets(svc):
            ann = t.annotation
            if not ann or (ann.get("digest") == value[:12] and not t.unconfirmed):
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
            holds = _holds(t, rules, snap.files, current, image, live)
            result = plan(rules, snap.files, current, holds, t.mounts)
            if isinstance(result, Rebuild):
                raise NeedRebuild(result.reason)
            plans.append((t, result))
        work = [(t, p) for t, p in plans if p.copies or p.deletes or p.run]
        for t, p in work:
            size = Archive([(svc.context / c.rel, c.dest) for c in p.copies]).size
            if size > self.max_live_mb * 1048576:
                raise NeedRebuild(f"the live update would copy {size / 1048576:.1f} MB into"
                                  f" pod {t.target.pod}, above the {self.max_live_mb:g} MB limit"
                                  " for a live update: rebuilding instead")
        for t in (t for t, _ in work if t.unconfirmed):
            self.bus.publish(ev.WARNING, svc.name, message=(
                f"pod {t.target.pod}: an earlier live sync into it did not finish (devloop"
                " stopped or the copy failed); copying its files again"))
        files = max((len(p.copies) for _, p in work), default=0)
        deletes = max((len(p.deletes) for _, p in work), default=0)
        pods = [t.target.pod for t, _ in work]
        started = time.monotonic()
        total_bytes = 0
        method = self.updater.name
        if work:
            self.bus.publish(ev.LIVE_SYNC_STARTED, svc.name, files=files, deletes=deletes,
                             pods=pods)
        ahead = _ahead(snap.files, current)
        for t, p in work:  # recorded before a byte is copied: a sync cut off is known
            self._record(t, svc, _intent(t, p, value, image, ahead), must=True)
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
        ids = frozenset(t.target.container_id for t, _ in plans)
        worked = {t.target.container_id for t, _ in work}  # their note is the intent now
        for t, _ in plans:
            self._record(t, svc, _note(t, value, image, ahead),
                         written=t.target.container_id in worked)
        if work:
            self.bus.publish(ev.LIVE_SYNC_FINISHED, svc.name, files=files, deletes=deletes,
                             bytes=total_bytes, seconds=round(time.monotonic() - started, 3),
                             pods=pods, method=method, ahead=ahead)
        return LiveState(value, image, current, ids, ahead)

    def _update(self, target: Target, copies: list[tuple[Path, str]], deletes: list[str],
                run: list[str]) -> Any:
        """Through devloop's Docker Engine when the container provably lives there (the same
        container ID on that engine), else (or when the engine loses it after all) through the
        exec API, which works on every cluster."""
        if self.shared_daemon is not None and self.shared_daemon.holds(target):
            try:
                return self.shared_daemon.update(target, copies, deletes, run)
            except UpdateFailed as exc:
                if exc.kind not in ("gone", "exec_refused"):
                    raise
        return self.updater.update(target, copies, deletes, run)

    def _record(self, t: LiveTarget, svc: ServiceConfig, note: dict[str, Any],
                must: bool = False, written: bool = False) -> None:
        """Write the live note on the pod (status and the next devloop read it). The intent
        (`must`) is required: a sync whose start cannot be recorded is not begun. The
        confirmation is best effort: unconfirmed only means "copied again next time".
        `written`: an intent replaced the note `t` was read with."""
        text = _dumps(note)
        if not (must or written) and t.annotation is not None and _dumps(t.annotation) == text:
            return
        try:
            resp = retry.call(lambda: self.cluster.core.patch_namespaced_pod(
                t.target.pod, t.target.namespace,
                {"metadata": {"annotations": {LIVE_ANNOTATION: text}}},
                _preload_content=False, _request_timeout=timeouts.REQUEST),
                what=f"record the live sync on pod {t.target.pod}",
                on_retry=lambda r: self.bus.publish(ev.WARNING, svc.name, message=str(r)))
            # the pod that comes back is not needed: reading it into the client's models took
            # longer than the request (twice per sync, on the path from save to running code)
            resp.drain_conn()
            resp.release_conn()
            return
        except ApiException as exc:
            why = api_message(exc)
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            why = "the cluster is unreachable"
        if must:
            raise NeedRebuild(f"cannot record the live sync on pod {t.target.pod} before"
                              f" copying ({why}): rebuilding instead")
        self.bus.publish(ev.WARNING, svc.name, message=(
            f"cannot record the live state on pod {t.target.pod}: {why}"))


def pod_live(pod: Pod, container: str) -> dict[str, Any] | None:
    """What devloop synced into this pod's running `container` (from the pod annotation), or
    None when it runs its image as built (never synced, or restarted since). `unconfirmed`:
    a sync began and never finished (devloop killed, or the copy failed): content unknown."""
    note = _live_note(pod.annotations, container, pod.running_id(container))
    if note is None:
        return None
    return {"digest": note.get("digest"), "image": note.get("image"),
            "files_ahead": int(note.get("files") or 0), "unconfirmed": "syncing" in note}


def _live_note(annotations: Mapping[str, str], container: str, running: str
               ) -> dict[str, Any] | None:
    """The live note on a pod, only when it names `running`, the ID of the container running
    now: a container that restarted since runs its image as built."""
    raw = annotations.get(LIVE_ANNOTATION)
    try:
        note = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(note, dict) or not running or \
            (note.get("containers") or {}).get(container) != running:
        return None
    return note


def _note(t: LiveTarget, value: str, image: str, ahead: int) -> dict[str, Any]:
    """The confirmed note: the container runs sources of digest `value`, `ahead` files
    beyond image `image`."""
    return {"digest": value[:12], "image": image[:12], "files": ahead,
            "containers": {t.target.container: t.target.container_id}}


def _intent(t: LiveTarget, p: LivePlan, value: str, image: str, ahead: int) -> dict[str, Any]:
    """The note written before copying: `syncing` the context paths about to change (or "*"),
    `from` the digest of what the container held before (its image's, or an earlier sync's).
    A second interrupted sync keeps the first one's `from` and adds to its paths."""
    paths = set(p.changed)
    before = t.annotation
    start = image[:12]
    if before is not None:
        start = before.get("from", "?") if t.unconfirmed else before.get("digest", "?")
        old = before.get("syncing") if t.unconfirmed else []
        paths = paths | set(old) if isinstance(old, list) else {"*"}
    utf8 = all(_encodable(rel) for rel in paths)
    syncing: Any = sorted(paths) if "*" not in paths and utf8 and \
        len(paths) <= _MAX_PENDING else "*"
    return {**_note(t, value, image, ahead), "syncing": syncing, "from": start}


def _holds(t: LiveTarget, rules: LiveRules, image_files: dict[str, str],
           current: dict[str, str], image: str, live: LiveState | None) -> dict[str, str]:
    """What container `t` holds, to plan from: the image's files, plus what this devloop
    synced into it; after an interrupted sync, those with the paths it was copying unknown."""
    cid = t.target.container_id
    known = live is not None and cid in live.containers
    if not t.unconfirmed:
        return live.files if live is not None and known else image_files
    note = t.annotation or {}
    prior: dict[str, str] | None = None
    if note.get("from") == image[:12]:
        prior = image_files
    elif live is not None and known and note.get("from") == live.digest[:12]:
        prior = live.files
    pending = note.get("syncing")
    return unconfirmed_holds(rules, image_files, current, prior,
                             pending if isinstance(pending, list) else None, t.mounts)


def _dumps(note: dict[str, Any]) -> str:
    return json.dumps(note, separators=(",", ":"), sort_keys=True)


def _encodable(rel: str) -> bool:
    """A path the API server stores as written (JSON of UTF-8 text)."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _ahead(image_files: dict[str, str], current: dict[str, str]) -> int:
    """How many context files differ between the image and the sources now."""
    return sum(1 for rel in image_files.keys() | current.keys()
               if image_files.get(rel) != current.get(rel))
