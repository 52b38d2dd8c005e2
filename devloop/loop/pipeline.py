"""One reload of one service, run by a worker thread: digest -> build -> deliver/patch/rollout.

The engine's loop decides *when* a service reloads; this module does the slow I/O of *how*, and
reports every phase as events. It never touches engine state: it returns a `PipelineResult` that
the loop folds into its state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from devloop import events as ev
from devloop.config.loader import Config, ServiceConfig
from devloop.image.build import Builder, BuildFailed, DiskFull, DockerUnreachable, InputsChanged
from devloop.image.buildslots import BuildSlots, default_limit, limit_for
from devloop.image.problems import build_problem
from devloop.inputs.digest import ServiceDigest, image_tag
from devloop.live.updaters import SourcesChanged
from devloop.vocab import (
    BUILD_FAILED,
    CANCELLED,
    DISK_FULL,
    DOCKER_UNREACHABLE,
    OK,
    SYNCED,
    UNCHANGED,
    DeployFailed,
    LiveState,
    NeedRebuild,
    PipelineResult,
)

if TYPE_CHECKING:
    from devloop.live.sync import LiveSyncer

_MAX_PATHS_SHOWN = 5
_MAX_INPUT_RETRIES = 3  # builds restarted because files changed while the context was sent


class Deployer(Protocol):
    """The cluster side of a reload (deploy.deployer is the Kubernetes implementation)."""

    def reconfigure(self, config: Config) -> None:
        """devloop.yaml was reloaded (the cluster connection stays as it was started)."""

    def deployed_digest(self, service: ServiceConfig) -> str | None:
        """The digest recorded on the running Deployment, None when absent or not installed."""

    def deploy(self, service: ServiceConfig, tag: str, digest: str,
               stop: threading.Event) -> None:
        """Deliver the image, install what is missing, patch, wait for the rollout; raise
        DeployFailed. Publishes its own progress events."""

    def check_health(self, service: ServiceConfig, stop: threading.Event) -> None:
        """Raise DeployFailed(ROLLOUT_FAILED) when the deployed workload's rollout does not
        complete or its pods crash (publishes the failure and the pod's last lines)."""

    def referenced_images(self) -> set[str] | None:
        """Images the namespace's Deployments and ReplicaSets name (never pruned); None when
        unknown (then nothing is pruned)."""

    def apply_manifests(self, stop: threading.Event) -> str:
        """Render the manifests and apply what changed, then wait for the rollouts that caused;
        returns an outcome (OK, DEPLOY_FAILED, ROLLOUT_FAILED, CLUSTER_UNREACHABLE) and
        publishes its own events."""


class Pipeline:
    """Runs reloads; shared by all services (each call touches only its own ServiceDigest)."""

    def __init__(self, bus: ev.EventBus, builder: Builder, deployer: Deployer | None,
                 root: Path, live: LiveSyncer | None = None, slots: BuildSlots | None = None
                 ) -> None:
        self.root = root
        self.bus = bus
        self.builder = builder
        self.deployer = deployer
        self.live = live
        self.slots = slots or BuildSlots(default_limit())

    def reconfigure(self, config: Config) -> None:
        """devloop.yaml was reloaded: the build-slot limit and the parts that read it per use
        (log filters) follow the new one."""
        self.slots.set_limit(limit_for(config.max_parallel))
        if self.deployer is not None:
            self.deployer.reconfigure(config)

    def apply_manifests(self, stop: threading.Event) -> str | None:
        """Apply the project's manifests (devloop.deploy.deployer); None without a cluster."""
        return None if self.deployer is None else self.deployer.apply_manifests(stop)

    def run(self, digest: ServiceDigest, changed: Sequence[Path] | None, known: str | None,
            stop: threading.Event, ask_cluster: bool = False, known_failed: bool = False,
            *, image: str | None = None, live: LiveState | None = None,
            allow_live: bool = False, resync: bool = False, force: bool = False
            ) -> PipelineResult:
        """Bring one service up to date.

        `changed` lists the paths that triggered this run (None: full scan). `known` is the
        digest the loop believes is deployed; equal content means nothing to do. With
        `ask_cluster`, the deployed digest is read from the cluster first (start-up, sync), so
        a restart of devloop rebuilds nothing that is already running. `known_failed` says
        `known` is the digest of a failed reload (so the same inputs are not retried).

        Live update (`allow_live`, `watch` only): `image` is the digest of the image the
        Deployment runs and `live` what was synced on top of it; when the change can be synced
        (devloop.live.plan decides), files are copied into the running containers instead of
        building, else the full reload runs in the same cycle. `resync` asks to bring every
        container up to the live state (one restarted and lost its synced files). `force`
        reloads even when nothing changed (a person asked for it), without live update.
        """
        svc = digest.service
        started = time.monotonic()
        if changed is None:
            digest.scan()
        else:
            digest.update(changed)
        try:
            value = digest.digest()
        except OSError as exc:
            self.bus.publish(ev.ERROR, svc.name, message=f"{svc.name}: cannot read inputs: {exc}")
            return PipelineResult(svc.name, BUILD_FAILED, reason=str(exc))
        learned: str | None = None  # the deployed image digest, when read from the cluster
        live_blocked = ""  # why live update must not be tried in this run
        if ask_cluster and self.deployer is not None:
            try:
                known = learned = image = self.deployer.deployed_digest(svc)
            except DeployFailed as exc:
                self.bus.publish(ev.ERROR, svc.name, message=str(exc))
                return PipelineResult(svc.name, exc.outcome, None, str(exc))
            if allow_live and self.live is not None and image is not None:
                try:
                    live = self.live.recover(svc, digest, value, image)
                except NeedRebuild as exc:
                    live, live_blocked = None, str(exc)
        elif ask_cluster:
            try:  # without a cluster, "up to date" means the image exists
                if self.builder.existing(image_tag(svc.image, value)):
                    known = learned = value
            except DockerUnreachable as exc:
                self.bus.publish(ev.ERROR, svc.name, message=str(exc))
                return PipelineResult(svc.name, DOCKER_UNREACHABLE, None, str(exc))
        tag = image_tag(svc.image, value)
        if live is not None and not known_failed:
            known = live.digest  # the containers run the synced sources, not the image
        if value == known and not force and not (resync and live is not None):
            if ask_cluster and self.live is not None and live is None:
                # the image is current, but pods may still run files synced by an earlier
                # watch that differ from it (edits since reverted): only a new pod is true
                try:
                    replaced = self.live.replace_diverged(svc, value)
                except NeedRebuild as exc:
                    self.bus.publish(ev.WARNING, svc.name, message=str(exc))
                    replaced = []
                if replaced:
                    self.bus.publish(ev.LIVE_RESET, svc.name, pods=replaced, reason=(
                        "ran live-synced files that differ from the sources; replaced by pods"
                        " of the image"))
            if ask_cluster and self.deployer is not None and not known_failed:
                try:  # unchanged is not "up to date" while the pods crash
                    self.deployer.check_health(svc, stop)
                except DeployFailed as exc:
                    return PipelineResult(svc.name, exc.outcome, value, str(exc), image=learned,
                                          live=live)
            if known_failed:
                reason = "inputs unchanged since the last failure; waiting for a fix"
            elif changed:
                reason = "inputs unchanged"
            else:
                reason = "deployed image is current" if self.deployer else "image is current"
            self.bus.publish(ev.BUILD_SKIPPED, svc.name, image=tag, reason=reason,
                             known_failed=known_failed)
            return PipelineResult(svc.name, UNCHANGED, value, image=learned, live=live)
        if changed:
            shown = [_display(self.root, p) for p in changed[:_MAX_PATHS_SHOWN]]
            self.bus.publish(ev.CHANGE_DETECTED, svc.name, paths=shown,
                             more=max(0, len(changed) - _MAX_PATHS_SHOWN))

        def finish(outcome: str, reason: str = "", synced: LiveState | None = None
                   ) -> PipelineResult:
            seconds = time.monotonic() - started
            self.bus.publish(ev.RELOAD_FINISHED, svc.name, ok=outcome in (OK, SYNCED),
                             outcome=outcome, reason=reason, seconds=round(seconds, 3),
                             image=tag)
            return PipelineResult(svc.name, outcome, value, reason, seconds, image=learned,
                                  live=synced)

        if force:
            live_blocked = live_blocked or "a full reload was asked for"
        live_tried = allow_live and self.live is not None and image is not None
        if live_tried and not live_blocked:
            self.bus.publish(ev.RELOAD_STARTED, svc.name, digest=value, image=tag, mode="live")
            try:
                assert self.live is not None and image is not None
                for _ in range(_MAX_INPUT_RETRIES):
                    try:
                        synced = self.live.sync(svc, digest, value, image, live)
                        return finish(SYNCED, synced=synced)
                    except SourcesChanged as changed:  # vanished or truncated: plan again
                        digest.rehash(changed.paths)
                        try:
                            value = digest.digest()
                        except OSError as err:
                            raise NeedRebuild(f"cannot read inputs: {err}") from None
                        tag = image_tag(svc.image, value)
                        self.bus.publish(ev.WARNING, svc.name,
                                         message=f"{svc.name}: {changed}; syncing again")
                raise NeedRebuild("files kept changing while they were synced")
            except NeedRebuild as exc:
                self.bus.publish(ev.LIVE_REBUILD, svc.name, reason=str(exc))
        else:
            self.bus.publish(ev.RELOAD_STARTED, svc.name, digest=value, image=tag, mode="build")
            if live_tried and live_blocked:
                self.bus.publish(ev.LIVE_REBUILD, svc.name, reason=live_blocked)

        try:
            built = self._build(digest, value, tag, stop)
        except BuildFailed as exc:
            self.bus.publish(ev.BUILD_FAILED, svc.name, image=tag, error=str(exc),
                             step=exc.step, reason=exc.reason, last_lines=exc.last_lines)
            problem = build_problem(exc, root=self.root)
            if problem is not None:
                self.bus.publish(ev.PROBLEM, svc.name, **problem)
            return finish(BUILD_FAILED, str(exc))
        except DockerUnreachable as exc:  # nothing deployed: the previous image keeps running
            self.bus.publish(ev.ERROR, svc.name, message=str(exc))
            return finish(DOCKER_UNREACHABLE, str(exc))
        except DiskFull as exc:
            self.bus.publish(ev.ERROR, svc.name, message=str(exc))
            return finish(DISK_FULL, str(exc))
        if built is None:
            return finish(CANCELLED, "stopped while queued for a build slot")
        value, tag = built
        if self.live is not None:
            self.live.record_image(digest, value)
        if stop.is_set():
            return finish(CANCELLED, "stopped")
        if self.deployer is not None:
            try:
                self.deployer.deploy(svc, tag, value, stop)
            except DeployFailed as exc:
                return finish(exc.outcome, str(exc))
        keep = {tag} | ({image_tag(svc.image, known)} if known else set())
        removed = self.builder.prune(
            svc.name, keep=keep, image=svc.image,
            referenced=self.deployer.referenced_images if self.deployer is not None else None)
        if removed:
            self.bus.publish(ev.IMAGES_PRUNED, svc.name, removed=removed)
        return finish(OK)


    def _build(self, digest: ServiceDigest, value: str, tag: str, stop: threading.Event
               ) -> tuple[str, str] | None:
        """Build `tag` unless it exists; return the (digest, tag) actually built, None when
        stopped while queued. A file saved between hashing and sending would put new content
        under the old tag: the builder refuses (InputsChanged), and the new content is hashed
        and built under its own tag. Builds wait for one of the `max_parallel` slots in arrival
        order (a burst over many services must not start every build at once)."""
        svc = digest.service
        for _ in range(_MAX_INPUT_RETRIES):
            if self.builder.existing(tag):
                self.bus.publish(ev.BUILD_SKIPPED, svc.name, image=tag, reason="image exists")
                return value, tag
            if not self.slots.acquire(svc.name, stop, on_queued=lambda n: self.bus.publish(
                    ev.RELOAD_QUEUED, svc.name, position=n, limit=self.slots.limit)):
                return None
            self.bus.publish(ev.BUILD_STARTED, svc.name, image=tag)
            try:
                result = self.builder.build(
                    digest, tag, lambda line: self.bus.publish(ev.BUILD_OUTPUT, svc.name,
                                                               line=line), stop)
            except InputsChanged as exc:
                digest.rehash(exc.paths)
                try:
                    value = digest.digest()
                except OSError as err:
                    raise BuildFailed(svc.name, f"cannot read inputs: {err}") from None
                tag = image_tag(svc.image, value)
                self.bus.publish(ev.WARNING, svc.name, message=f"{exc}; building {tag} instead")
                continue
            finally:
                self.slots.release(svc.name)
            self.bus.publish(ev.BUILD_FINISHED, svc.name, image=tag,
                             seconds=round(result.seconds, 3), image_id=result.image_id)
            return value, tag
        raise BuildFailed(svc.name, "inputs kept changing while the build context was sent;"
                                    " the next save builds again")


def _display(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
