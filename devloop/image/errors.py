"""How a build fails, and how to tell a lost Docker Engine from one that answered with a refusal.

Shared by both builders (docker-py's legacy API in build.py, the BuildKit CLI in buildkit.py)
and by the container updaters, which talk to the same engine.
"""

from __future__ import annotations

import os
from pathlib import Path

import docker
import docker.errors
import requests.exceptions
import urllib3.exceptions

from devloop.text import one_line

SPOOL_BYTES = 64 << 20  # a build context up to this size stays in memory; a larger one spills


class BuildFailed(Exception):
    """A build that did not produce an image; `str()` is one line naming step and reason."""

    def __init__(self, service: str, reason: str, step: str | None = None,
                 dockerfile: Path | None = None, line: int | None = None,
                 last_lines: list[str] | None = None) -> None:
        self.service = service
        self.reason = reason
        self.step = step
        self.dockerfile = dockerfile
        self.line = line
        self.last_lines = last_lines or []
        where = f" at {step}" if step else ""
        super().__init__(f"build of {service} failed{where}: {reason}")


class InputsChanged(Exception):
    """Files changed between hashing and sending the context: the tag would not name what is
    sent. `paths` are the absolute paths whose content or mode differs (hash them again)."""

    def __init__(self, service: str, paths: list[Path]) -> None:
        self.service = service
        self.paths = paths
        shown = ", ".join(p.name for p in paths[:3]) + (" ..." if len(paths) > 3 else "")
        super().__init__(f"{service}: {shown} changed while the build context was sent")


class DiskFull(Exception):
    """The build context could not be written to TMPDIR (no space, quota): not the inputs'
    fault, so it is retried rather than reported as a failed build; one line saying where."""

    def __init__(self, service: str, where: str, detail: str) -> None:
        super().__init__(one_line(
            f"{service}: cannot write the build context to {where}: {detail} (contexts over"
            f" {SPOOL_BYTES >> 20} MB are written there); free space there or point TMPDIR at"
            " a larger disk"))


class DockerUnreachable(Exception):
    """The Docker Engine does not answer (down, restarting, socket gone); one line naming it."""


# What a lost engine looks like through docker-py: refused/reset sockets, a response cut
# mid-stream (urllib3 ProtocolError, requests ChunkedEncodingError), the version probe failing.
DOCKER_CONNECTION_ERRORS = (
    requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
    requests.exceptions.Timeout, urllib3.exceptions.HTTPError, OSError)


def docker_address(environment: dict[str, str] | None = None) -> str:
    """The engine docker-py talks to: DOCKER_HOST of `environment` (else of this process), else
    the default socket."""
    env = os.environ if environment is None else environment
    return env.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def is_docker_lost(exc: BaseException) -> bool:
    """The engine did not answer (as opposed to answering with a refusal or a failed step)."""
    if isinstance(exc, docker.errors.APIError):
        return False  # the engine answered (a refusal, a failed step)
    return isinstance(exc, (*DOCKER_CONNECTION_ERRORS, docker.errors.DockerException))


_CAUSES = (  # what docker-py/urllib3 wrap, as the user would say it
    ("FileNotFoundError", "no socket there"), ("ConnectionRefusedError", "connection refused"),
    ("IncompleteRead", "connection cut mid-stream"), ("Connection broken", "connection cut"),
    ("RemoteDisconnected", "connection closed"), ("ConnectionResetError", "connection reset"),
    ("PermissionError", "permission denied on the socket"), ("timed out", "timed out"),
)


def docker_lost_detail(exc: BaseException) -> str:
    """Why the engine did not answer, in the words a user would use."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    for needle, said in _CAUSES:
        if needle in text:
            return said
    return one_line(text, 200)
