"""Docker image builds for one service, streamed line by line.

The build context is a tar of exactly the files the digest covered (same ignore rules), so what is
hashed is what is built and ignored trees are never read or sent. We use docker-py's low-level
streaming API: `images.build` only returns at the end, and a failed build arrives as an
`errorDetail` message rather than an exception (see field notes).
"""

from __future__ import annotations

import io
import re
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from devloop import dockerfile as dockerfile_mod
from devloop.config import ServiceConfig
from devloop.digest import TAG_PREFIX, ServiceDigest

LABEL_SERVICE = "devloop.service"
LABEL_DIGEST = "devloop.digest"
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_OUTSIDE_DOCKERFILE = ".devloop.Dockerfile"


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


@dataclass
class BuildResult:
    tag: str
    image_id: str
    seconds: float
    skipped: bool = False
    removed: list[str] = field(default_factory=list)


class Builder:
    """Builds images of services with a Docker Engine (explicit client, no globals)."""

    def __init__(self, client: docker.DockerClient, keep_images: int = 3) -> None:
        self.client = client
        self.keep_images = keep_images

    def existing(self, tag: str) -> str | None:
        """The image id of `tag` when the engine already has it."""
        try:
            return self.client.images.get(tag).id
        except docker.errors.ImageNotFound:
            return None

    def build(self, digest: ServiceDigest, tag: str, on_line: Callable[[str], None]) -> BuildResult:
        """Build `tag` from the files `digest` covers; raise BuildFailed with the failing step."""
        svc = digest.service
        start = time.monotonic()
        steps = dockerfile_mod.parse(svc.dockerfile.read_text(encoding="utf-8", errors="replace"))
        last_lines: deque[str] = deque(maxlen=20)
        step_no: int | None = None
        step_text: str | None = None
        image_id: str | None = None
        with tempfile.SpooledTemporaryFile(max_size=64 << 20) as context:
            dockerfile_name = _write_context(context, digest)
            context.seek(0)
            try:
                stream = self.client.api.build(
                    fileobj=context, custom_context=True, tag=tag, dockerfile=dockerfile_name,
                    buildargs=dict(svc.build_args) or None, target=svc.target, rm=True,
                    forcerm=True, decode=True,
                    labels={LABEL_SERVICE: svc.name, LABEL_DIGEST: tag.rsplit(":", 1)[1]},
                )
                for message in stream:
                    if "errorDetail" in message or "error" in message:
                        detail = message.get("errorDetail") or {}
                        reason = (detail.get("message") or message.get("error") or "").strip()
                        raise self._failed(svc, reason, step_no, step_text, steps, last_lines)
                    text = message.get("stream")
                    if text:
                        for line in text.splitlines():
                            line = line.rstrip()
                            if not line:
                                continue
                            if m := _STEP.match(line):
                                step_no, step_text = int(m.group(1)), m.group(3)
                            last_lines.append(line)
                            on_line(line)
                    aux = message.get("aux")
                    if isinstance(aux, dict) and aux.get("ID"):
                        image_id = aux["ID"]
            except docker.errors.APIError as exc:
                reason = exc.explanation or str(exc)
                if isinstance(reason, bytes):
                    reason = reason.decode(errors="replace")
                raise self._failed(svc, str(reason).strip(), step_no, step_text, steps,
                                   last_lines) from None
            except docker.errors.DockerException as exc:
                raise BuildFailed(svc.name, f"Docker Engine unavailable: {exc}") from None
        if image_id is None:
            image_id = self.existing(tag) or ""
        return BuildResult(tag=tag, image_id=image_id, seconds=time.monotonic() - start)

    @staticmethod
    def _failed(svc: ServiceConfig, reason: str, step_no: int | None, step_text: str | None,
                steps: list[dockerfile_mod.Instruction], last_lines: deque[str]) -> BuildFailed:
        line = None
        if step_no is not None and 0 < step_no <= len(steps):
            line = steps[step_no - 1].line
        step = f"step {step_no} ({step_text})" if step_no is not None else None
        return BuildFailed(svc.name, reason, step, svc.dockerfile, line, list(last_lines))

    def prune(self, service: str, keep: set[str]) -> list[str]:
        """Remove this service's `dl-` images beyond the newest `keep_images` (never the tags in
        `keep`, e.g. the deployed one); images still used by a container are left alone."""
        try:
            images = self.client.images.list(filters={"label": f"{LABEL_SERVICE}={service}"})
        except docker.errors.DockerException:
            return []
        tagged = [(img.attrs.get("Created", ""), t) for img in images for t in img.tags
                  if t.rsplit(":", 1)[-1].startswith(TAG_PREFIX)]
        tagged.sort(reverse=True)
        removed = []
        for _, tag in tagged[self.keep_images:]:
            if tag in keep:
                continue
            try:
                self.client.images.remove(tag, noprune=False)
                removed.append(tag)
            except docker.errors.DockerException:
                continue
        return removed


def _write_context(fileobj, digest: ServiceDigest) -> str:  # type: ignore[no-untyped-def]
    """Tar the digest's files into `fileobj`; return the Dockerfile's name inside the tar."""
    svc = digest.service
    root = svc.context
    with tarfile.open(fileobj=fileobj, mode="w") as tar:
        for rel in sorted(digest.context.files):
            try:
                info = tar.gettarinfo(str(root / rel), arcname=rel)
            except FileNotFoundError:
                continue
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isfile():
                with open(root / rel, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
        try:
            return svc.dockerfile.relative_to(root).as_posix()
        except ValueError:
            data = svc.dockerfile.read_bytes()
            info = tarfile.TarInfo(_OUTSIDE_DOCKERFILE)
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
            return _OUTSIDE_DOCKERFILE
