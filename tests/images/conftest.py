"""Fixtures for the service-image tests: images built here with no registry, then run.

The images are built the documented way (scripts/build-images: local base images from
scripts/base-images, dependencies from scripts/offline-deps) once per session, tagged
`lumina-<svc>:imagetest` so a developer's `:latest` is never replaced. Containers run with
network none and are probed from inside with the image's own python or node.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import pytest
from docker.models.containers import Container
from docker.utils.build import exclude_paths

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
TEST_TAG = "imagetest"
APP_UID = 10001
LABEL = {"devloop.test": "images"}
BUILD_TIMEOUT_S = 900
START_TIMEOUT_S = 90


@dataclass(frozen=True)
class ServiceSpec:
    """How one service's image is built, started and probed (ports/paths from the seed)."""

    name: str
    port: int
    health_path: str
    runtime: str  # "python" or "node": the interpreter inside the image used to probe it
    env: dict[str, str]
    source_file: str  # a source file whose edit must not invalidate the dependency layer
    forbidden: tuple[str, ...] = ()  # paths a final image must not carry (build inputs, caches)

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.health_path}"


SERVICES: dict[str, ServiceSpec] = {
    "backend": ServiceSpec(
        name="backend",
        port=8000,
        health_path="/api/health",
        runtime="python",
        env={
            "DATABASE_URL": "sqlite:///app/data/lumina.db",
            "JWT_SECRET_KEY": "test",
            "ENVIRONMENT": "production",
            "CORS_ORIGINS": "http://localhost:3000",
            "CHATBOT_URL": "http://127.0.0.1:8001",
        },
        source_file="app/main.py",
        forbidden=("/wheels", "/tmp/requirements.txt", "/root/.cache/pip"),
    ),
    "chatbot": ServiceSpec(
        name="chatbot",
        port=8001,
        health_path="/health",
        runtime="python",
        env={
            "MCP_SERVER_PORT": "8001",
            "MCP_SERVER_HOST": "0.0.0.0",
            "ENVIRONMENT": "production",
            "BACKEND_URL": "http://127.0.0.1:8000",
        },
        source_file="chatbot/__init__.py",
        forbidden=("/wheels", "/tmp/requirements.txt", "/root/.cache/pip"),
    ),
    "frontend": ServiceSpec(
        name="frontend",
        port=3000,
        health_path="/",
        runtime="node",
        env={"NEXT_PUBLIC_API_URL": "http://127.0.0.1:8000", "NODE_ENV": "production"},
        source_file="app/page.tsx",
        forbidden=("/app/offline", "/tmp/offline", "/root/.npm", "/app/node_modules/typescript"),
    ),
}

# Probes run inside the container with its own interpreter; they print "<status> <body>" and
# exit 0 for any HTTP answer (503 included), 1 when nothing listens yet.
PY_PROBE = """
import sys, urllib.error, urllib.request
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=5)
    print(r.status, r.read(2000).decode(errors="replace"))
except urllib.error.HTTPError as e:
    print(e.code, e.read(2000).decode(errors="replace"))
except OSError as e:
    print("down", e); sys.exit(1)
"""
NODE_PROBE = """
fetch(process.argv[1], {signal: AbortSignal.timeout(5000)})
  .then(async r => { console.log(r.status, (await r.text()).slice(0, 2000)); })
  .catch(e => { console.log("down", String(e)); process.exit(1); });
"""


@dataclass
class BuiltImage:
    """An image built in this session and what its build printed."""

    service: str
    ref: str
    log: str
    seconds: float
    size_bytes: int


@dataclass
class Probe:
    """One HTTP answer seen from inside a container."""

    status: int
    body: str

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class RunningService:
    """A started service container; exec helpers run inside it."""

    spec: ServiceSpec
    container: Container
    volume: str | None = None
    seen: list[str] = field(default_factory=list)

    def exec(self, cmd: list[str], user: str = "") -> tuple[int, str]:
        """Run a command inside the container (as the image's user unless user is given)."""
        code, out = self.container.exec_run(cmd, user=user, demux=False)
        return code, (out or b"").decode(errors="replace")

    def shell(self, script: str, user: str = "") -> tuple[int, str]:
        return self.exec(["sh", "-c", script], user=user)

    def probe(self, url: str | None = None) -> Probe | None:
        """GET url (default: the health path) from inside; None when nothing answers."""
        runtime = (
            ["python", "-c", PY_PROBE]
            if self.spec.runtime == "python"
            else ["node", "-e", NODE_PROBE]
        )
        for _ in range(3):  # the engine can lose a short exec's output (moby/moby#27289)
            code, out = self.exec([*runtime, url or self.spec.health_url])
            if code != 0:
                self.seen.append(out.strip())
                return None
            status, _, body = out.strip().partition(" ")
            if status.isdigit():
                return Probe(int(status), body)
            self.seen.append(f"exit 0 with {out!r}: the engine lost the output; asking again")
        return None

    def logs(self, lines: int = 30) -> str:
        return self.container.logs(tail=lines).decode(errors="replace")


def record_size(config: pytest.Config, image: BuiltImage) -> None:
    """Keep image sizes for the end-of-session summary."""
    config.stash.setdefault(SIZES, {})[image.ref] = (image.size_bytes, image.seconds)


SIZES = pytest.StashKey[dict[str, tuple[int, float]]]()


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    """Print the size of every service image this session built."""
    sizes = config.stash.get(SIZES, {})
    if sizes:
        terminalreporter.section("service image sizes")
        for ref, (size, seconds) in sorted(sizes.items()):
            terminalreporter.write_line(f"{ref}: {size / 1e6:.0f} MB (build {seconds:.0f} s)")


def run_repo_script(
    args: list[str], timeout: float = BUILD_TIMEOUT_S
) -> subprocess.CompletedProcess:
    """Run one of the repository's scripts, capturing its output."""
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO
    )


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root."""
    return REPO


@pytest.fixture(scope="session")
def run_script() -> Callable[..., subprocess.CompletedProcess]:
    """Run a repository script (path relative to the repo root), capturing its output."""
    return run_repo_script


@pytest.fixture(scope="session")
def base_images(docker_client: docker.DockerClient) -> dict[str, str]:
    """The local base images (produced by scripts/base-images when missing); their ids.

    Skips the image tests only when they cannot be produced (no debootstrap, no mirror)."""
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        for ref in ("python:3.11-slim-bookworm", "node:20-bookworm-slim"):
            try:
                docker_client.images.get(ref)
            except docker.errors.ImageNotFound:
                pytest.skip(f"{ref} is missing and scripts/base-images needs root and debootstrap")
    result = run_repo_script([str(SCRIPTS / "base-images")])
    if result.returncode != 0:
        pytest.skip(
            f"scripts/base-images could not produce the base images:\n"
            f"{tail(result.stdout + result.stderr)}"
        )
    return {
        ref: docker_client.images.get(ref).id
        for ref in ("python:3.11-slim-bookworm", "node:20-bookworm-slim")
    }


@pytest.fixture(scope="session")
def build_service(
    base_images: dict[str, str],
    docker_client: docker.DockerClient,
    pytestconfig: pytest.Config,
) -> Callable[[str], BuiltImage]:
    """Build lumina-<svc>:imagetest with scripts/build-images, once per session per service."""
    built: dict[str, BuiltImage] = {}

    def build(service: str) -> BuiltImage:
        if service not in built:
            ref = f"lumina-{service}:{TEST_TAG}"
            started = time.monotonic()
            result = run_repo_script([str(SCRIPTS / "build-images"), "--tag", TEST_TAG, service])
            output = result.stdout + result.stderr
            assert result.returncode == 0, f"scripts/build-images {service} failed:\n{tail(output)}"
            size = docker_client.images.get(ref).attrs["Size"]
            built[service] = BuiltImage(service, ref, output, time.monotonic() - started, size)
            record_size(pytestconfig, built[service])
        return built[service]

    return build


def start_service(
    client: docker.DockerClient, spec: ServiceSpec, image: str, volume: str | None = None
) -> RunningService:
    """Start a container with network none and wait until its health path answers 200."""
    volumes = {volume: {"bind": "/app/data", "mode": "rw"}} if volume else None
    container = client.containers.run(
        image,
        detach=True,
        network_mode="none",
        environment=spec.env,
        volumes=volumes,
        labels=LABEL,
        name=f"imagetest-{spec.name}-{uuid.uuid4().hex[:6]}",
    )
    running = RunningService(spec, container, volume)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        container.reload()
        if container.status == "exited":
            break
        answer = running.probe()
        if answer is not None and answer.status == 200:
            return running
        time.sleep(1)
    logs = running.logs()
    stop_service(client, running)
    pytest.fail(
        f"{spec.name}: {spec.health_url} did not answer 200 within {START_TIMEOUT_S} s "
        f"(container {container.status}); last probe: {running.seen[-1:]}\nlogs:\n{logs}"
    )


def stop_service(client: docker.DockerClient, running: RunningService) -> None:
    """Remove the container and its volume."""
    with contextlib.suppress(docker.errors.NotFound):
        running.container.remove(force=True)
    if running.volume:
        with contextlib.suppress(docker.errors.NotFound):
            client.volumes.get(running.volume).remove(force=True)


@pytest.fixture(scope="session")
def service_specs() -> dict[str, ServiceSpec]:
    """How each service is built, started and probed."""
    return SERVICES


@pytest.fixture(scope="session")
def run_service(
    docker_client: docker.DockerClient,
) -> Callable[..., contextlib.AbstractContextManager[RunningService]]:
    """Context manager: a healthy service container (network none), removed on exit together
    with its named volume, if one was given."""

    @contextlib.contextmanager
    def run(spec: ServiceSpec, image: str, volume: str | None = None) -> Iterator[RunningService]:
        if volume:
            docker_client.volumes.create(volume, labels=LABEL)
        running = start_service(docker_client, spec, image, volume)
        try:
            yield running
        finally:
            stop_service(docker_client, running)

    return run


@pytest.fixture
def rebuild_with_source_edit(
    build_service: Callable[[str], BuiltImage],
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> Iterator[Callable[[str], str]]:
    """Build a service again from a copy of its context in which only one source file changed;
    returns the build output. The images that build created are removed afterwards."""
    created: list[str] = []

    def rebuild(service: str) -> str:
        spec = SERVICES[service]
        build_service(service)  # the session build fills the layer cache this build should hit
        context = copy_context(REPO / "services" / service, tmp_path / service)
        edited = context / spec.source_file
        text = edited.read_text()
        edited.unlink()  # a hard link to the original: replace it, never write through it
        marker = "#" if edited.suffix == ".py" else "//"
        edited.write_text(f"{text}\n{marker} layer-cache probe {uuid.uuid4().hex}\n")
        # IDs only: images.list() inspects each image, and one another worker removes between
        # the listing and its inspect is a 404
        before = {i.split(":")[1][:12] for i in docker_client.api.images(all=True, quiet=True)}
        log = docker_build(docker_client, context, f"lumina-{service}:{TEST_TAG}-edit")
        created.extend(i for i in re.findall(r"---> ([0-9a-f]{12})\b", log) if i not in before)
        return log

    yield rebuild
    for image_id in reversed(created):  # children first; shared cached layers were not created
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(image_id, force=True)


def copy_context(service_dir: Path, dest: Path) -> Path:
    """A copy of the build context (after .dockerignore) made of hard links where possible.

    Files are only ever replaced, never written through, so the originals stay untouched."""
    ignore = service_dir / ".dockerignore"
    patterns = [
        line.strip()
        for line in (ignore.read_text().splitlines() if ignore.exists() else [])
        if line.strip() and not line.startswith("#")
    ]
    for rel in exclude_paths(str(service_dir), patterns):
        src, dst = service_dir / rel, dest / rel
        if src.is_dir() and not src.is_symlink():
            dst.mkdir(parents=True, exist_ok=True)
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst, follow_symlinks=False)
        except OSError:
            shutil.copy2(src, dst, follow_symlinks=False)
    return dest


def docker_build(
    client: docker.DockerClient, context: Path, tag: str, target: str | None = None
) -> str:
    """Build with the legacy builder, no build arguments and no network (the folders of
    scripts/offline-deps are all a build may read), and return its full output (the
    `Step`/`Using cache` lines); a failed build fails the test with the last lines."""
    lines: list[str] = []
    for chunk in client.api.build(
        path=str(context), tag=tag, target=target, network_mode="none", decode=True, rm=True,
        forcerm=True,
    ):
        if "stream" in chunk:
            lines.append(chunk["stream"])
        if "error" in chunk:
            pytest.fail(
                f"docker build of {context} failed: {chunk['error']}\n{tail(''.join(lines))}"
            )
    return "".join(lines)
