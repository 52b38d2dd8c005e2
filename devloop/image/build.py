"""Docker image builds for one service, streamed line by line.

The build context is a tar of exactly the files the digest covered (same ignore rules), and each
file is hashed as it goes into the tar: a file saved between hashing and sending would otherwise
put new content under the old `dl-` tag (and a later revert would deploy that wrong image because
"the image exists"), so a mismatch stops the build before Docker sees it (InputsChanged) and the
pipeline hashes again. We use docker-py's low-level streaming API: `images.build` only returns at
the end, and a failed build arrives as an `errorDetail` message rather than an exception (see
field notes). A lost engine (connection refused or cut mid-stream) is DockerUnreachable, not a
build failure: the inputs are fine and the build is retried once the engine answers.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import re
import stat
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

import docker
import docker.errors

from devloop.config.loader import ServiceConfig
from devloop.image import dockerfile as dockerfile_mod
from devloop.image.errors import (
    DOCKER_CONNECTION_ERRORS,
    SPOOL_BYTES,
    BuildFailed,
    DiskFull,
    DockerUnreachable,
    InputsChanged,
    docker_address,
    docker_lost_detail,
    is_docker_lost,
)
from devloop.inputs.digest import TAG_PREFIX, ServiceDigest, dl_tag_hex, open_regular, path_bytes

if TYPE_CHECKING:
    import threading

    from devloop.image.buildkit import KitBuilder

LABEL_SERVICE = "devloop.service"
LABEL_DIGEST = "devloop.digest"
LABEL_CHECKOUT = "devloop.checkout"  # which clone built it: see checkout_id
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_OUTSIDE_DOCKERFILE = ".devloop.Dockerfile"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def _scratch_file() -> Iterator[IO[bytes]]:
    """Where the build context is written: memory up to SPOOL_BYTES, then TMPDIR. Closing
    never raises: on a full disk the writes already failed (DiskFull, said once), and dropping
    the unwritten buffer must not fail a second time."""
    scratch = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - see above
    try:
        yield scratch  # type: ignore[misc]
    finally:
        with contextlib.suppress(OSError):
            scratch.close()


@dataclass
class BuildResult:
    tag: str
    image_id: str
    seconds: float


T = TypeVar("T")

VANISHED_ATTEMPTS = 3  # builds sent when a cached layer keeps vanishing (cache_image_vanished)
_VANISHED = re.compile(
    r'(unable to find image|no such image:?|unknown parent image ID) "?sha256:[0-9a-f]{64}'
    r'|failed to get digest sha256:[0-9a-f]{64}: open \S+: no such file or directory', re.I)


def cache_image_vanished(reason: str) -> bool:
    """Whether a legacy build failed because an image it had found in its cache (named by ID,
    never by a tag the Dockerfile wrote) was removed before it used it: building again works."""
    return bool(_VANISHED.search(reason))


def build_again_when_vanished(build: Callable[[], T], reason: Callable[[Exception], str | None],
                              on_retry: Callable[[str], None] = lambda _why: None) -> T:
    """`build()`, sent again (VANISHED_ATTEMPTS in all) while it fails because a cached layer
    vanished: the legacy builder's cache is images, and one removed between its lookup and its
    use (a prune, another build's cleanup) fails the step, not the Dockerfile; each lookup may
    find another doomed copy while something keeps removing images. `reason` is the failure's
    text for the exceptions a build raises (None: not a build failure)."""
    for attempt in range(1, VANISHED_ATTEMPTS + 1):
        try:
            return build()
        except Exception as exc:
            why = reason(exc)
            if why is None or not cache_image_vanished(why) or attempt == VANISHED_ATTEMPTS:
                raise
            on_retry(why)
    raise AssertionError("unreachable")


def checkout_id(config_path: Path) -> str:
    """The identity of one checkout of a project: two clones sharing a Docker Engine have the
    same service and image names, and must never prune each other's images."""
    return hashlib.sha256(str(Path(config_path).resolve()).encode()).hexdigest()[:16]


class Builder:
    """Builds images of services with a Docker Engine (explicit client, no globals).

    `client` may be a factory, called on first use: docker-py asks the engine its API version
    when a client is made, so `watch` can start (and retry) while the engine is still down.
    `checkout` (checkout_id) labels every image built and scopes pruning to those images."""

    def __init__(self, client: docker.DockerClient | Callable[[], docker.DockerClient],
                 keep_images: int = 3, docker_host: str | None = None,
                 checkout: str | None = None, kit: KitBuilder | None = None) -> None:
        self._client = client if isinstance(client, docker.DockerClient) else None
        self._factory = None if isinstance(client, docker.DockerClient) else client
        self.keep_images = keep_images
        self.docker_host = docker_host or docker_address()  # DOCKER_HOST of the engine used
        self.checkout = checkout
        self.kit = kit  # builds through a BuildKit CLI; None: docker-py's legacy builder

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            assert self._factory is not None
            with self._reaching():
                self._client = self._factory()
        return self._client

    @contextlib.contextmanager
    def _reaching(self) -> Iterator[None]:
        """Say docker-py's many ways of "the engine is gone" as one DockerUnreachable."""
        try:
            yield
        except Exception as exc:
            if not is_docker_lost(exc):
                raise
            raise self._lost(exc, "cannot reach") from None

    def _lost(self, exc: BaseException, what: str, service: str | None = None) -> DockerUnreachable:
        during = (f" during the build of {service}; nothing was deployed" if service else "")
        return DockerUnreachable(
            f"{what} the Docker Engine at {self.docker_host} ({docker_lost_detail(exc)}){during}:"
            " check that dockerd is running (`docker info`) and DOCKER_HOST")

    def ping(self) -> None:
        """Raise DockerUnreachable when the engine does not answer."""
        with self._reaching():
            self.client.ping()

    def existing(self, tag: str) -> str | None:
        """The image id of `tag` when the engine already has it."""
        with self._reaching():
            try:
                return self.client.images.get(tag).id
            except docker.errors.ImageNotFound:
                return None

    def build(self, digest: ServiceDigest, tag: str, on_line: Callable[[str], None],
              stop: threading.Event | None = None) -> BuildResult:
        """Build `tag` from the files `digest` covers; raise BuildFailed with the failing step,
        InputsChanged when a file no longer holds what was hashed, DockerUnreachable when the
        engine does not answer or goes away mid-build."""
        svc = digest.service
        start = time.monotonic()
        with _scratch_file() as context:
            try:
                dockerfile_name = _write_context(context, digest)
                context.seek(0)
            except OSError as exc:
                if exc.errno not in _DISK_FULL:
                    raise
                raise DiskFull(svc.name, tempfile.gettempdir(), exc.strerror or str(exc)
                               ) from None
            if self.kit is not None:  # same tar, tag and labels through BuildKit
                image_id = self.kit.build(context, dockerfile_name, svc, tag,
                                          self._labels(svc.name, tag), on_line, stop)
                return BuildResult(tag=tag, image_id=image_id or self.existing(tag) or "",
                                   seconds=time.monotonic() - start)
            if svc.build_secrets:
                raise BuildFailed(svc.name, "build_secrets: need BuildKit, and no Docker CLI"
                                  " with BuildKit was found (see builder.selected); install"
                                  " docker-buildx or a docker CLI >= 18.09")
            def retry(why: str) -> None:
                on_line(f"devloop: {why}: a cached layer was removed during the build;"
                        " building again")
                context.seek(0)

            image_id = build_again_when_vanished(
                lambda: self._legacy_build(context, dockerfile_name, svc, tag, on_line),
                lambda exc: exc.reason if isinstance(exc, BuildFailed) else None, retry)
        if image_id is None:
            image_id = self.existing(tag) or ""
        return BuildResult(tag=tag, image_id=image_id, seconds=time.monotonic() - start)

    def _legacy_build(self, context: IO[bytes], dockerfile_name: str, svc: ServiceConfig,
                      tag: str, on_line: Callable[[str], None]) -> str | None:
        """One build through the engine's API (no BuildKit); the image ID when it said it."""
        steps = dockerfile_mod.parse(svc.dockerfile.read_text(encoding="utf-8", errors="replace"))
        last_lines: deque[str] = deque(maxlen=20)
        step_no: int | None = None
        step_text: str | None = None
        image_id: str | None = None
        try:
            stream = self.client.api.build(
                fileobj=context, custom_context=True, tag=tag, dockerfile=dockerfile_name,
                buildargs=dict(svc.build_args) or None, target=svc.target, rm=True,
                platform=svc.platform,
                forcerm=True, decode=True,
                labels=self._labels(svc.name, tag),
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
        except Exception as exc:
            if not is_docker_lost(exc):
                raise
            what = "lost" if step_no is not None or last_lines else "cannot reach"
            raise self._lost(exc, what, svc.name) from None
        return image_id

    def _labels(self, service: str, tag: str) -> dict[str, str]:
        labels = {LABEL_SERVICE: service, LABEL_DIGEST: tag.rsplit(":", 1)[1]}
        if self.checkout:
            labels[LABEL_CHECKOUT] = self.checkout
        return labels

    @staticmethod
    def _failed(svc: ServiceConfig, reason: str, step_no: int | None, step_text: str | None,
                steps: list[dockerfile_mod.Instruction], last_lines: deque[str]) -> BuildFailed:
        line = None
        if step_no is not None and 0 < step_no <= len(steps):
            line = steps[step_no - 1].line
        step = f"step {step_no} ({step_text})" if step_no is not None else None
        return BuildFailed(svc.name, reason, step, svc.dockerfile, line, list(last_lines))

    def prune(self, service: str, keep: set[str], image: str | None = None,
              referenced: Callable[[], set[str] | None] | None = None) -> list[str]:
        """Remove this service's `dl-` images (of repository `image`: another project may have
        a service of the same name) built by this checkout (another clone of the project on
        the same engine has the same names, and its own images), beyond the newest
        `keep_images`; never one whose `dl-` tag is in `keep` (e.g. the deployed one) or in
        `referenced()` (every image a Deployment or ReplicaSet still names: `rollout undo`
        needs it; asked only when there is something to remove, since it costs API calls;
        None: unknown, remove nothing), nor one any container of the engine uses, running or
        stopped (a pod in the shared daemon, another clone's pod). Refs may carry a registry
        prefix, so `dl-` tags are compared. `keep_images` counts images, not tags: the local
        `<default_repo>/...:dl-` tag registry delivery pushes from goes with its image (the
        registry's copy is never deleted). Best effort."""
        kept = {hex12 for ref in keep if (hex12 := dl_tag_hex(ref))}
        labels = [f"{LABEL_SERVICE}={service}"]
        if self.checkout:
            labels.append(f"{LABEL_CHECKOUT}={self.checkout}")
        try:
            tagged = self._dl_tags(labels, image)
        except (DockerUnreachable, docker.errors.DockerException, *DOCKER_CONNECTION_ERRORS):
            return []
        newest = list(dict.fromkeys(dl_tag_hex(t) for _, t, _ in tagged))[:self.keep_images]
        candidates = [(t, image_id) for _, t, image_id in tagged
                      if dl_tag_hex(t) not in newest and t not in keep
                      and dl_tag_hex(t) not in kept]
        if candidates:
            in_use = self._images_in_use()
            if in_use is None:
                return []
            candidates = [(t, i) for t, i in candidates if i not in in_use]
        if candidates and referenced is not None:
            refs = referenced()
            if refs is None:
                return []
            named = {hex12 for ref in refs if (hex12 := dl_tag_hex(ref))}
            candidates = [(t, i) for t, i in candidates
                          if t not in refs and dl_tag_hex(t) not in named]
        removed = []
        for tag, _image_id in candidates:
            try:
                self.client.images.remove(tag, noprune=False)
                removed.append(tag)
            except (docker.errors.DockerException, *DOCKER_CONNECTION_ERRORS):
                continue
        return removed

    def _dl_tags(self, labels: list[str], image: str | None) -> list[tuple[str, str, str]]:
        """(created, tag, image ID) of the `dl-` tags of repository `image` (or the pushed
        `<registry>/.../image`) under `labels`, newest first; [] when there are no more images
        than keep_images (nothing to remove). Listed in one request: docker-py's images.list()
        inspects every image the labels match (all of the service's images on the engine,
        hundreds on a busy one) on every reload. Only the few left are inspected, for their
        creation time to the nanosecond (the list says seconds: two builds in one second)."""
        tags = [(t, img["Id"]) for img in self.client.api.images(filters={"label": labels})
                for t in img.get("RepoTags") or []
                if t.rsplit(":", 1)[-1].startswith(TAG_PREFIX)
                and (image is None or t.rsplit(":", 1)[0] == image
                     or t.rsplit(":", 1)[0].endswith(f"/{image}"))]  # the pushed tag
        if len({dl_tag_hex(t) for t, _ in tags}) <= self.keep_images:
            return []
        created = {i: self.client.api.inspect_image(i).get("Created", "")
                   for i in {i for _, i in tags}}  # once per image, not per tag
        return sorted(((created[i], t, i) for t, i in tags), reverse=True)

    def _images_in_use(self) -> set[str] | None:
        """Image IDs of every container of the engine, running or not (None: unknown). Docker
        refuses to remove an image a container uses, but only its last tag: removing one of
        two tags of that image would leave a pod that restarts with a name that is gone."""
        try:
            return {c.get("ImageID") for c in self.client.api.containers(all=True)}
        except (docker.errors.DockerException, *DOCKER_CONNECTION_ERRORS):
            return None


class _HashingReader:
    """Hands a file to tarfile while hashing exactly the bytes that go into the tar."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self.sha.update(data)
        return data


def _tarinfo(path: Path, rel: str) -> tarfile.TarInfo | None:
    """The entry for a regular file or symlink, from lstat. Never a hard-link entry (which
    tarfile's gettarinfo writes for a second name of an inode, with no content: the check
    below would fail it forever), never owner names of this machine. None: not a file now."""
    try:
        st = os.lstat(path)
        link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
    except OSError:
        return None
    info = tarfile.TarInfo(rel)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    if link is not None:
        info.type = tarfile.SYMTYPE
        info.linkname = link
    elif stat.S_ISREG(st.st_mode):
        info.size = st.st_size
    else:
        return None  # became a directory, a FIFO or a socket
    return info


def _add_checked(tar: tarfile.TarFile, path: Path, rel: str, sha: str, mode: int) -> bool:
    """Add one file or symlink; True when what went into the tar is what the digest hashed
    (same content hash and executable bits)."""
    info = _tarinfo(path, rel)
    if info is None or (info.mode & 0o111) != (mode & 0o111):
        return False
    if info.issym():
        tar.addfile(info)
        return hashlib.sha256(path_bytes(info.linkname)).hexdigest() == sha
    try:
        with os.fdopen(open_regular(path), "rb") as f:
            reader = _HashingReader(f)
            tar.addfile(info, reader)  # reads exactly info.size bytes; fewer raise OSError
            grew = f.read(1) != b""
    except OSError as exc:  # shrank or vanished while being read
        if exc.errno in _DISK_FULL:  # the write side failed: not the file's doing
            raise
        return False
    return not grew and reader.sha.hexdigest() == sha


def _write_context(fileobj: IO[bytes], digest: ServiceDigest) -> str:
    """Tar the digest's files into `fileobj`, checking each against its hash; return the
    Dockerfile's name inside the tar. Raise InputsChanged listing the files that differ."""
    svc = digest.service
    root = svc.context
    changed: list[Path] = []
    with tarfile.open(fileobj=fileobj, mode="w") as tar:
        for rel, entry in sorted(digest.context.files.items()):
            if not _add_checked(tar, root / rel, rel, entry.sha, entry.mode):
                changed.append(root / rel)
        try:
            name = svc.dockerfile.relative_to(root).as_posix()
        except ValueError:
            data = svc.dockerfile.read_bytes()
            if hashlib.sha256(data).hexdigest() != digest.dockerfile_sha:
                changed.append(svc.dockerfile)
            info = tarfile.TarInfo(_OUTSIDE_DOCKERFILE)
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
            name = _OUTSIDE_DOCKERFILE
    if changed:
        raise InputsChanged(svc.name, changed)
    return name
