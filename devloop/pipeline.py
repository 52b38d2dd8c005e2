"""One reload of one service, run by a worker thread: digest -> build -> deliver/patch/rollout.

The engine's loop decides *when* a service reloads; this module does the slow I/O of *how*, and
reports every phase as events. It never touches engine state: it returns a `PipelineResult` that
the loop folds into its state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from devloop import events as ev
from devloop.build import Builder, BuildFailed
from devloop.config import ServiceConfig
from devloop.digest import ServiceDigest, image_tag
from devloop.problems import build_problem

# Outcomes, from best to worst; the CLI maps them to exit codes.
UNCHANGED = "unchanged"
OK = "ok"
BUILD_FAILED = "build_failed"
DEPLOY_FAILED = "deploy_failed"
ROLLOUT_FAILED = "rollout_failed"
CLUSTER_UNREACHABLE = "cluster_unreachable"
CANCELLED = "cancelled"

_MAX_PATHS_SHOWN = 5


class DeployFailed(Exception):
    """A deploy step failed; `outcome` is DEPLOY_FAILED, ROLLOUT_FAILED or CLUSTER_UNREACHABLE."""

    def __init__(self, outcome: str, message: str) -> None:
        self.outcome = outcome
        super().__init__(message)


class Deployer(Protocol):
    """The cluster side of a reload (see devloop.deploy for the Kubernetes implementation)."""

    def deployed_digest(self, service: ServiceConfig) -> str | None:
        """The digest recorded on the running Deployment, None when absent or not installed."""

    def deploy(self, service: ServiceConfig, tag: str, digest: str,
               stop: threading.Event) -> None:
        """Deliver the image, install what is missing, patch, wait for the rollout; raise
        DeployFailed. Publishes its own progress events."""


@dataclass(frozen=True)
class PipelineResult:
    service: str
    outcome: str
    digest: str | None = None
    reason: str = ""
    seconds: float = 0.0


class Pipeline:
    """Runs reloads; shared by all services (each call touches only its own ServiceDigest)."""

    def __init__(self, bus: ev.EventBus, builder: Builder, deployer: Deployer | None,
                 root: Path) -> None:
        self.root = root
        self.bus = bus
        self.builder = builder
        self.deployer = deployer

    def run(self, digest: ServiceDigest, changed: Sequence[Path] | None, known: str | None,
            stop: threading.Event, ask_cluster: bool = False, known_failed: bool = False
            ) -> PipelineResult:
        """Bring one service up to date.

        `changed` lists the paths that triggered this run (None: full scan). `known` is the
        digest the loop believes is deployed; equal content means nothing to do. With
        `ask_cluster`, the deployed digest is read from the cluster first (start-up, sync), so
        a restart of devloop rebuilds nothing that is already running. `known_failed` says
        `known` is the digest of a failed reload (so the same inputs are not retried).
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
        if ask_cluster and self.deployer is not None:
            try:
                known = self.deployer.deployed_digest(svc)
            except DeployFailed as exc:
                self.bus.publish(ev.ERROR, svc.name, message=str(exc))
                return PipelineResult(svc.name, exc.outcome, None, str(exc))
        elif ask_cluster and self.builder.existing(image_tag(svc.image, value)):
            known = value  # without a cluster, "up to date" means the image exists
        tag = image_tag(svc.image, value)
        if value == known:
            if known_failed:
                reason = "inputs unchanged since the last failure; waiting for a fix"
            elif changed:
                reason = "inputs unchanged"
            else:
                reason = "deployed image is current" if self.deployer else "image is current"
            self.bus.publish(ev.BUILD_SKIPPED, svc.name, image=tag, reason=reason)
            return PipelineResult(svc.name, UNCHANGED, value)
        if changed:
            shown = [_display(self.root, p) for p in changed[:_MAX_PATHS_SHOWN]]
            self.bus.publish(ev.CHANGE_DETECTED, svc.name, paths=shown,
                             more=max(0, len(changed) - _MAX_PATHS_SHOWN))
        self.bus.publish(ev.RELOAD_STARTED, svc.name, digest=value, image=tag)

        def finish(outcome: str, reason: str = "") -> PipelineResult:
            seconds = time.monotonic() - started
            self.bus.publish(ev.RELOAD_FINISHED, svc.name, ok=outcome == OK, outcome=outcome,
                             reason=reason, seconds=round(seconds, 3), image=tag)
            return PipelineResult(svc.name, outcome, value, reason, seconds)

        if self.builder.existing(tag):
            self.bus.publish(ev.BUILD_SKIPPED, svc.name, image=tag, reason="image exists")
        else:
            self.bus.publish(ev.BUILD_STARTED, svc.name, image=tag)
            try:
                result = self.builder.build(
                    digest, tag, lambda line: self.bus.publish(ev.BUILD_OUTPUT, svc.name,
                                                               line=line))
            except BuildFailed as exc:
                self.bus.publish(ev.BUILD_FAILED, svc.name, image=tag, error=str(exc),
                                 step=exc.step, reason=exc.reason, last_lines=exc.last_lines)
                problem = build_problem(exc, root=self.root)
                if problem is not None:
                    self.bus.publish(ev.PROBLEM, svc.name, **problem)
                return finish(BUILD_FAILED, str(exc))
            self.bus.publish(ev.BUILD_FINISHED, svc.name, image=tag,
                             seconds=round(result.seconds, 3), image_id=result.image_id)
        if stop.is_set():
            return finish(CANCELLED, "stopped")
        if self.deployer is not None:
            try:
                self.deployer.deploy(svc, tag, value, stop)
            except DeployFailed as exc:
                return finish(exc.outcome, str(exc))
        keep = {tag} | ({image_tag(svc.image, known)} if known else set())
        removed = self.builder.prune(svc.name, keep=keep)
        if removed:
            self.bus.publish(ev.IMAGES_PRUNED, svc.name, removed=removed)
        return finish(OK)


def _display(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
