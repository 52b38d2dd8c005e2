"""The words every layer shares: reload outcomes, and what one reload reports.

This module sits at the bottom of devloop: the pure rules (loop.rules), the reload pipeline
(loop.pipeline), live update and the deployer all speak it without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass

# Outcomes, from best to worst; the CLI maps them to exit codes.
UNCHANGED = "unchanged"
OK = "ok"
BUILD_FAILED = "build_failed"
DEPLOY_FAILED = "deploy_failed"
ROLLOUT_FAILED = "rollout_failed"
CLUSTER_UNREACHABLE = "cluster_unreachable"
DOCKER_UNREACHABLE = "docker_unreachable"
REGISTRY_UNREACHABLE = "registry_unreachable"  # the push found no registry: retried
CANCELLED = "cancelled"
DISK_FULL = "disk_full"  # the build context could not be written (TMPDIR full): retried
SYNCED = "synced"  # changed files were copied into the running containers (live update)



class DeployFailed(Exception):
    """A deploy step failed; `outcome` is DEPLOY_FAILED, ROLLOUT_FAILED, CLUSTER_UNREACHABLE or
    REGISTRY_UNREACHABLE."""

    def __init__(self, outcome: str, message: str) -> None:
        self.outcome = outcome
        super().__init__(message)


class NeedRebuild(Exception):
    """Live update cannot bring a service up to date; str() says why, in one line (the
    pipeline then does a full reload in the same cycle)."""


@dataclass(frozen=True)
class LiveState:
    """Sources synced into running containers on top of their image (live update).

    `digest` is the input digest the synced sources would have as an image, so "is the cluster
    up to date" stays one comparison; `containers` are the container IDs that hold `files`
    (a restarted container has a new ID and runs the image as built)."""

    digest: str
    image: str  # digest of the image the containers were started from
    files: dict[str, str]  # {context path: sha256} the synced containers hold
    containers: frozenset[str]
    ahead: int  # files that differ from the image


@dataclass(frozen=True)
class PipelineResult:
    service: str
    outcome: str
    digest: str | None = None  # input digest of what now runs (or failed)
    reason: str = ""
    seconds: float = 0.0
    image: str | None = None  # digest of the image the Deployment runs, when learned
    live: LiveState | None = None  # live-synced state after this run, when it has one
