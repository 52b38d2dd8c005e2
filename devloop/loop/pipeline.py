"""One reload of one service, run by a worker thread: hash, plan, then sync or build and deploy.

The engine's loop decides *when* a service reloads; devloop.loop.plan decides *what* a run does
(skip, live or build, with its reason); this module carries the plan out through the three
seams of devloop.loop.seams and reports every phase as events. It never touches engine state:
it returns a `PipelineResult` that the loop folds into its state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devloop import events as ev
from devloop.config.loader import Config, ServiceConfig
from devloop.image.buildslots import BuildSlots, default_limit, limit_for
from devloop.image.errors import BuildFailed, DiskFull, DockerUnreachable, InputsChanged
from devloop.image.problems import build_problem
from devloop.inputs.digest import ServiceDigest, image_tag
from devloop.live.updaters import SourcesChanged
from devloop.loop.plan import LIVE, SKIP, ReloadFacts, ReloadPlan, plan_reload
from devloop.loop.seams import Deployer, ImageBuilder, LiveUpdate
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

_MAX_PATHS_SHOWN = 5
_MAX_INPUT_RETRIES = 3  # builds (or syncs) restarted because files changed meanwhile


class Pipeline:
    """Runs reloads; shared by all services (each call touches only its own ServiceDigest)."""

    def __init__(self, bus: ev.EventBus, builder: ImageBuilder, deployer: Deployer | None,
                 root: Path, live: LiveUpdate | None = None, slots: BuildSlots | None = None
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
        """Bring one service up to date: hash, learn what runs, plan (devloop.loop.plan), carry
        the plan out.

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
        running = _Running(known, image, live)
        if ask_cluster:
            failed = self._ask_cluster(digest, value, running, allow_live)
            if failed is not None:
                return failed
        plan = plan_reload(ReloadFacts(
            value, running.known, known_failed=known_failed, live=running.live,
            image=running.image, changed=bool(changed), ask_cluster=ask_cluster, force=force,
            resync=resync, cluster=self.deployer is not None, syncer=self.live is not None,
            allow_live=allow_live, live_blocked=running.live_blocked))
        reload = _Reload(self.bus, svc, started, value, running.learned)
        if plan.action == SKIP:
            return self._skip(reload, plan, running.live, known_failed, stop)
        if changed:
            shown = [_display(self.root, p) for p in changed[:_MAX_PATHS_SHOWN]]
            self.bus.publish(ev.CHANGE_DETECTED, svc.name, paths=shown,
                             more=max(0, len(changed) - _MAX_PATHS_SHOWN))
        if plan.action == LIVE:
            assert running.image is not None
            synced = self._sync(reload, digest, running.image, running.live)
            if synced is not None:
                return reload.finish(SYNCED, synced=synced)
        else:
            self.bus.publish(ev.RELOAD_STARTED, svc.name, digest=value, image=reload.tag,
                             mode="build")
            if plan.live_refused:
                self.bus.publish(ev.LIVE_REBUILD, svc.name, reason=plan.live_refused)
        return self._build_and_deploy(reload, digest, plan.known, stop)

    def _ask_cluster(self, digest: ServiceDigest, value: str, running: _Running,
                     allow_live: bool) -> PipelineResult | None:
        """Start-up or retry: learn what runs (the deployed digest, and what an earlier devloop
        synced into the pods); without a cluster, "up to date" means the image exists. A result
        when the cluster or the engine does not answer."""
        svc = digest.service
        if self.deployer is None:
            try:
                if self.builder.existing(image_tag(svc.image, value)):
                    running.known = running.learned = value
            except DockerUnreachable as exc:
                self.bus.publish(ev.ERROR, svc.name, message=str(exc))
                return PipelineResult(svc.name, DOCKER_UNREACHABLE, None, str(exc))
            return None
        try:
            deployed = self.deployer.deployed_digest(svc)
        except DeployFailed as exc:
            self.bus.publish(ev.ERROR, svc.name, message=str(exc))
            return PipelineResult(svc.name, exc.outcome, None, str(exc))
        running.known = running.learned = running.image = deployed
        if allow_live and self.live is not None and deployed is not None:
            try:
                running.live = self.live.recover(svc, digest, value, deployed)
            except NeedRebuild as exc:
                running.live, running.live_blocked = None, str(exc)
        return None

    def _skip(self, reload: _Reload, plan: ReloadPlan, live: LiveState | None,
              known_failed: bool, stop: threading.Event) -> PipelineResult:
        """Nothing to build: make the pods true to the image where they diverged, report a
        crashing workload, else say why nothing happens."""
        svc = reload.svc
        if plan.replace_diverged:
            assert self.live is not None
            # the image is current, but pods may still run files synced by an earlier watch
            # that differ from it (edits since reverted): only a new pod is true
            try:
                replaced = self.live.replace_diverged(svc, reload.value)
            except NeedRebuild as exc:
                self.bus.publish(ev.WARNING, svc.name, message=str(exc))
                replaced = []
            if replaced:
                self.bus.publish(ev.LIVE_RESET, svc.name, pods=replaced, reason=(
                    "ran live-synced files that differ from the sources; replaced by pods"
                    " of the image"))
        if plan.check_health:
            assert self.deployer is not None
            try:  # unchanged is not "up to date" while the pods crash
                self.deployer.check_health(svc, stop)
            except DeployFailed as exc:
                return PipelineResult(svc.name, exc.outcome, reload.value, str(exc),
                                      image=reload.learned, live=live)
        self.bus.publish(ev.BUILD_SKIPPED, svc.name, image=reload.tag, reason=plan.reason,
                         known_failed=known_failed)
        return PipelineResult(svc.name, UNCHANGED, reload.value, image=reload.learned, live=live)

    def _sync(self, reload: _Reload, digest: ServiceDigest, image: str,
              live: LiveState | None) -> LiveState | None:
        """Live update; None when only a rebuild will do (said as `live.rebuild`). Files that
        vanish or change size mid-copy are hashed and planned again, a few times."""
        assert self.live is not None
        svc = reload.svc
        self.bus.publish(ev.RELOAD_STARTED, svc.name, digest=reload.value, image=reload.tag,
                         mode="live")
        try:
            for _ in range(_MAX_INPUT_RETRIES):
                try:
                    return self.live.sync(svc, digest, reload.value, image, live)
                except SourcesChanged as changed:  # vanished or truncated: plan again
                    digest.rehash(changed.paths)
                    try:
                        reload.retag(digest.digest())
                    except OSError as err:
                        raise NeedRebuild(f"cannot read inputs: {err}") from None
                    self.bus.publish(ev.WARNING, svc.name,
                                     message=f"{svc.name}: {changed}; syncing again")
            raise NeedRebuild("files kept changing while they were synced")
        except NeedRebuild as exc:
            self.bus.publish(ev.LIVE_REBUILD, svc.name, reason=str(exc))
            return None

    def _build_and_deploy(self, reload: _Reload, digest: ServiceDigest, known: str | None,
                          stop: threading.Event) -> PipelineResult:
        """Build (unless the image exists), deploy, prune old images; each failure is an
        outcome with its one-line reason."""
        svc = reload.svc
        try:
            built = self._build(digest, reload.value, reload.tag, stop)
        except BuildFailed as exc:
            self.bus.publish(ev.BUILD_FAILED, svc.name, image=reload.tag, error=str(exc),
                             step=exc.step, reason=exc.reason, last_lines=exc.last_lines)
            problem = build_problem(exc, root=self.root)
            if problem is not None:
                self.bus.publish(ev.PROBLEM, svc.name, **problem)
            return reload.finish(BUILD_FAILED, str(exc))
        except DockerUnreachable as exc:  # nothing deployed: the previous image keeps running
            self.bus.publish(ev.ERROR, svc.name, message=str(exc))
            return reload.finish(DOCKER_UNREACHABLE, str(exc))
        except DiskFull as exc:
            self.bus.publish(ev.ERROR, svc.name, message=str(exc))
            return reload.finish(DISK_FULL, str(exc))
        if built is None:
            return reload.finish(CANCELLED, "stopped while queued for a build slot")
        reload.retag(built)
        if self.live is not None:
            self.live.record_image(digest, reload.value)
        if stop.is_set():
            return reload.finish(CANCELLED, "stopped")
        if self.deployer is not None:
            try:
                self.deployer.deploy(svc, reload.tag, reload.value, stop)
            except DeployFailed as exc:
                return reload.finish(exc.outcome, str(exc))
        keep = {reload.tag} | ({image_tag(svc.image, known)} if known else set())
        removed = self.builder.prune(
            svc.name, keep=keep, image=svc.image,
            referenced=self.deployer.referenced_images if self.deployer is not None else None)
        if removed:
            self.bus.publish(ev.IMAGES_PRUNED, svc.name, removed=removed)
        return reload.finish(OK)

    def _build(self, digest: ServiceDigest, value: str, tag: str, stop: threading.Event
               ) -> str | None:
        """Build `tag` unless it exists; return the digest actually built, None when stopped
        while queued. A file saved between hashing and sending would put new content under the
        old tag: the builder refuses (InputsChanged), and the new content is hashed and built
        under its own tag. Builds wait for one of the `max_parallel` slots in arrival order (a
        burst over many services must not start every build at once)."""
        svc = digest.service
        for _ in range(_MAX_INPUT_RETRIES):
            if self.builder.existing(tag):
                self.bus.publish(ev.BUILD_SKIPPED, svc.name, image=tag, reason="image exists")
                return value
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
            return value
        raise BuildFailed(svc.name, "inputs kept changing while the build context was sent;"
                                    " the next save builds again")


@dataclass
class _Running:
    """What runs, as far as this run knows: passed in by the loop, corrected by the cluster."""

    known: str | None  # the digest deployed (or last failed)
    image: str | None  # digest of the image the Deployment runs
    live: LiveState | None  # sources synced on top of it
    learned: str | None = None  # the deployed digest, when read from the cluster in this run
    live_blocked: str = ""  # why live update must not be tried in this run


@dataclass
class _Reload:
    """One run past hashing: the digest and tag it works on (they move when files change
    mid-build or mid-sync), and how it ends (`reload.finished` and the result)."""

    bus: ev.EventBus
    svc: ServiceConfig
    started: float
    value: str
    learned: str | None
    tag: str = field(init=False)

    def __post_init__(self) -> None:
        self.retag(self.value)

    def retag(self, value: str) -> None:
        self.value = value
        self.tag = image_tag(self.svc.image, value)

    def finish(self, outcome: str, reason: str = "", synced: LiveState | None = None
               ) -> PipelineResult:
        seconds = time.monotonic() - self.started
        self.bus.publish(ev.RELOAD_FINISHED, self.svc.name, ok=outcome in (OK, SYNCED),
                         outcome=outcome, reason=reason, seconds=round(seconds, 3),
                         image=self.tag)
        return PipelineResult(self.svc.name, outcome, self.value, reason, seconds,
                              image=self.learned, live=synced)


def _display(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
