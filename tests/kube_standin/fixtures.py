"""pytest fixtures for the stand-in, loaded once for the whole suite by tests/conftest.py
(`pytest_plugins`), so their session fixtures are set up once per session, not once per directory.

`standin` is a running stand-in (pods as Docker containers, network none) for one test; it is
stopped and every container and volume it made is removed afterwards. `shared_standin` is one
stand-in for the whole session for tests that only work in namespaces of their own
(`create_namespace()`): the namespaces a test made are deleted, with their pods, after it.
A test that stops the API server, injects faults or makes cluster-wide objects uses `standin`.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from kubernetes import client, config

from devloop.image.build import build_again_when_vanished
from devloop.k8s.cluster import Cluster, connect

from .kubeconfig import CONTEXT
from .standin import StandIn

BUSYBOX = Path("/bin/busybox")


class StandInHandle:
    """What a test gets: connection facts plus helpers around one StandIn."""

    context = CONTEXT

    def __init__(self, standin: StandIn, docker_client: docker.DockerClient) -> None:
        self.standin = standin
        self.docker = docker_client
        self._clients: list[client.ApiClient] = []
        self.namespaces: list[str] = []  # made by create_namespace(), deleted by release()

    @property
    def kubeconfig(self) -> Path:
        return self.standin.kubeconfig

    @property
    def url(self) -> str:
        return self.standin.url

    @property
    def http_url(self) -> str:
        """Plain-HTTP address of the same API (for raw `requests` calls)."""
        return self.standin.http_url

    @property
    def token(self) -> str:
        return self.standin.token

    def api_client(self) -> client.ApiClient:
        """A fresh ApiClient for this stand-in (no global kube config is touched)."""
        api = config.new_client_from_config(
            str(self.kubeconfig), context=CONTEXT, persist_config=False)
        self._clients.append(api)
        return api

    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client())

    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api_client())

    def create_namespace(self, name: str | None = None) -> str:
        name = name or f"t-{secrets.token_hex(3)}"
        self.core().create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        self.namespaces.append(name)
        return name

    def release(self) -> None:
        """After a test on a shared stand-in: its namespaces (and their pods) are deleted."""
        core = self.core()
        for name in self.namespaces:
            with contextlib.suppress(Exception):
                core.delete_namespace(name)
        self.namespaces.clear()
        self.close()

    def stop(self, keep_pods: bool = True) -> None:
        """Simulates the API server going away (containers keep running by default)."""
        self.standin.stop(keep_pods=keep_pods)

    def start(self) -> Path:
        """Brings it back on the same port with the same objects; containers are re-adopted."""
        return self.standin.start()

    def compact(self) -> None:
        self.standin.compact()

    def claim_volume_name(self, namespace: str, claim: str) -> str:
        return self.standin.claim_volume_name(namespace, claim)

    def containers(self, namespace: str | None = None) -> list[Any]:
        """The Docker containers of this stand-in's pods (all states)."""
        labels = [f"io.devloop.standin.instance={self.standin.instance_id}"]
        if namespace:
            labels.append(f"io.devloop.standin.namespace={namespace}")
        # listed, then inspected one by one: a container the stand-in removes in between (a
        # pod replaced mid-rollout) is gone, not an error (docker-py's list() fails whole on
        # it, and four lists in a row could each meet one on a loaded machine)
        found = []
        for item in self.docker.api.containers(all=True, filters={"label": labels}):
            with contextlib.suppress(docker.errors.NotFound):
                found.append(self.docker.containers.get(item["Id"]))
        return found

    def close(self) -> None:
        for api in self._clients:
            api.close()
        self._clients.clear()


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2,
             what: str = "condition") -> Any:
    """Polls until `predicate()` is truthy and returns it; fails the test on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def _docker_or_fail() -> docker.DockerClient:
    try:
        docker_client = docker.from_env(max_pool_size=64)
        docker_client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"the stand-in needs a Docker Engine ({exc}); start one with "
                    "scripts/start-dockerd")
    return docker_client


def reap_orphans(docker_client: docker.DockerClient) -> None:
    """Removes containers and test volumes of stand-ins whose state dir is gone (a test run that
    was killed). Stand-ins that are still running keep their state dir, so they are safe."""
    label = "io.devloop.standin.state-dir"
    for item in docker_client.api.containers(all=True, filters={"label": label}):
        if not Path(item["Labels"][label]).exists():
            with contextlib.suppress(docker.errors.APIError):
                docker_client.api.remove_container(item["Id"], v=True, force=True)
    for volume in docker_client.volumes.list(filters={"label": label}):
        labels = volume.attrs.get("Labels") or {}
        ephemeral = labels.get("io.devloop.standin.ephemeral") == "1" or \
            labels.get("io.devloop.standin.volume-kind") == "emptydir"
        if ephemeral and not Path(labels[label]).exists():
            with contextlib.suppress(docker.errors.APIError):
                volume.remove(force=True)


def session_standin(state_dir: Path, prefix: str) -> Iterator[StandIn]:
    """Body of a session-wide stand-in fixture (suites that share one and give each test its own
    namespace, see `namespace_cluster`): started here, stopped with its volumes afterwards."""
    server = StandIn(state_dir, volume_prefix=f"{prefix}-{secrets.token_hex(3)}-pvc")
    server.start()
    try:
        yield server
    finally:
        server.stop(remove_volumes=True)


def namespace_cluster(server: StandIn, prefix: str) -> Iterator[Cluster]:
    """Body of a per-test fixture: devloop's Cluster on a fresh namespace of `server`, deleted
    (with its pods) afterwards."""
    namespace = f"{prefix}-{uuid.uuid4().hex[:8]}"
    conn = connect(CONTEXT, namespace, str(server.kubeconfig))
    conn.core.create_namespace({"metadata": {"name": namespace}})
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            conn.core.delete_namespace(namespace)
        conn.api_client.close()


@pytest.fixture(scope="session")
def standin_docker() -> Iterator[docker.DockerClient]:
    docker_client = _docker_or_fail()
    reap_orphans(docker_client)
    yield docker_client
    docker_client.close()


@pytest.fixture
def standin_factory(standin_docker: docker.DockerClient) -> Iterator[Callable[..., StandInHandle]]:
    """Starts stand-ins with custom options (e.g. pod_network="host"); cleans all of them up."""
    made: list[tuple[StandInHandle, Path]] = []

    def make(**options: Any) -> StandInHandle:
        state_dir = Path(tempfile.mkdtemp(prefix="kube-standin-"))
        options.setdefault("volume_prefix", f"standin-t{secrets.token_hex(3)}-pvc")
        options.setdefault("ephemeral_volumes", True)
        standin = StandIn(state_dir, docker_client=standin_docker, **options)
        standin.start()
        handle = StandInHandle(standin, standin_docker)
        made.append((handle, state_dir))
        return handle

    yield make
    for handle, state_dir in made:
        handle.close()
        handle.standin.stop(keep_pods=False, remove_volumes=True)
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def standin(standin_factory: Callable[..., StandInHandle]) -> StandInHandle:
    return standin_factory()


@pytest.fixture(scope="session")
def _session_standin_handle(standin_docker: docker.DockerClient) -> Iterator[StandInHandle]:
    state_dir = Path(tempfile.mkdtemp(prefix="kube-standin-shared-"))
    server = StandIn(state_dir, docker_client=standin_docker, ephemeral_volumes=True,
                     volume_prefix=f"standin-s{secrets.token_hex(3)}-pvc")
    server.start()
    handle = StandInHandle(server, standin_docker)
    yield handle
    handle.close()
    server.stop(keep_pods=False, remove_volumes=True)
    shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def shared_standin(_session_standin_handle: StandInHandle) -> Iterator[StandInHandle]:
    """The session's stand-in for a test that works only in namespaces of its own."""
    yield _session_standin_handle
    _session_standin_handle.release()


BUSYBOX_DOCKERFILE = (
    "FROM scratch\n"
    "COPY busybox /bin/busybox\n"
    'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
    'RUN ["/bin/mkdir", "-p", "/tmp", "/data", "/www"]\n'
    'RUN ["/bin/sh", "-c", "echo ok > /www/index.html && chmod 1777 /tmp /data"]\n'
    'CMD ["sh"]\n'
)


def build_image(client: docker.DockerClient, **kwargs: Any) -> Any:
    """`client.images.build(**kwargs)`, built again as devloop's builder does when a cached
    layer it had found was removed before it used it: another worker's cleanup of an image with
    the same first steps (every busybox image starts with the same COPY) deletes its untagged
    intermediate images."""
    return build_again_when_vanished(
        lambda: client.images.build(**kwargs),
        lambda exc: str(exc) if isinstance(exc, docker.errors.BuildError) else None)


def content_image(client: docker.DockerClient, repo: str, files: dict[str, bytes]) -> str:
    """`repo:<hash of files>`, built from `files` (a Dockerfile among them) unless it exists.

    Named by content and never removed: every test worker and every later run shares it, and
    no worker's cleanup can delete the layers another worker's build is using as its cache (a
    build then fails with 'unable to find image "sha256:..."')."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    tag = f"{repo}:{digest.hexdigest()[:12]}"
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.get(tag)
        return tag
    with tempfile.TemporaryDirectory() as context:
        for name, data in files.items():
            (Path(context) / name).write_bytes(data)
            (Path(context) / name).chmod(0o755)  # binaries among them run
        build_image(client, path=context, tag=tag, rm=True, forcerm=True, network_mode="none")
    return tag


def busybox_base(client: docker.DockerClient) -> str:
    """A tiny image (FROM scratch + the host's static busybox): sh, awk, httpd, sleep, ...; a
    writable /tmp and /data, /www/index.html. Skips the test where busybox is missing."""
    if not BUSYBOX.exists():
        pytest.skip("/bin/busybox (busybox-static) is needed to build the test image")
    return content_image(client, "standin-busybox", {
        "busybox": BUSYBOX.read_bytes(), "Dockerfile": BUSYBOX_DOCKERFILE.encode()})


@pytest.fixture(scope="session")
def busybox_image(standin_docker: docker.DockerClient) -> str:
    """The busybox image (busybox_base), once per session."""
    return busybox_base(standin_docker)
