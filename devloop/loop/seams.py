"""The three side effects of a reload, as Protocols: build an image, sync files into running
containers, deploy to the cluster.

The pipeline knows only these shapes, so devloop.loop.fakes can stand in for each one and every
branch of a reload is unit tested without Docker or a cluster. The implementations wired in
app.py: devloop.image.build.Builder, devloop.live.sync.LiveSyncer,
devloop.deploy.deployer.ClusterDeployer.

The failures they raise are part of the contract: ImageBuilder raises BuildFailed, DiskFull,
DockerUnreachable, InputsChanged (devloop.image.errors); LiveUpdate raises NeedRebuild
(devloop.vocab) and SourcesChanged (devloop.live.updaters); Deployer raises DeployFailed
(devloop.vocab).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from devloop.vocab import LiveState

if TYPE_CHECKING:
    from devloop.config.loader import Config, ServiceConfig
    from devloop.inputs.digest import ServiceDigest


class BuiltImage(Protocol):
    """What a finished build reports (devloop.image.build.BuildResult)."""

    @property
    def image_id(self) -> str: ...

    @property
    def seconds(self) -> float: ...


class ImageBuilder(Protocol):
    """Builds the images of services in one Docker Engine."""

    def existing(self, tag: str) -> str | None:
        """The image id of `tag` when the engine already has it."""

    def build(self, digest: ServiceDigest, tag: str, on_line: Callable[[str], None],
              stop: threading.Event | None = None) -> BuiltImage:
        """Build `tag` from exactly the files `digest` covers, streaming output to `on_line`."""

    def prune(self, service: str, keep: set[str], image: str | None = None,
              referenced: Callable[[], set[str] | None] | None = None) -> list[str]:
        """Remove old `dl-` images of the service, never those in `keep` or `referenced()`;
        returns the tags removed (best effort)."""


class LiveUpdate(Protocol):
    """Copies changed sources into a service's running containers (live update)."""

    def record_image(self, digest: ServiceDigest, value: str) -> None:
        """Remember the files of image `value`, just built from these inputs."""

    def recover(self, svc: ServiceConfig, digest: ServiceDigest, value: str,
                image: str) -> LiveState | None:
        """At start-up: the live state an earlier devloop run left on the pods, if any."""

    def replace_diverged(self, svc: ServiceConfig, value: str) -> list[str]:
        """Replace pods that run synced files differing from sources of digest `value`;
        the names of the pods deleted."""

    def sync(self, svc: ServiceConfig, digest: ServiceDigest, value: str, image: str,
             live: LiveState | None) -> LiveState:
        """Copy what differs into every running container."""


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
