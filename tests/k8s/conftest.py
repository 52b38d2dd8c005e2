"""Fixtures for the Kubernetes-side tests: busybox test images and the API stand-in.

Images are built FROM scratch with the host's static busybox (nothing can be pulled here); one
base image carries busybox, and small variants differ only in what they run:
  ticker  prints `tick N` every 50 ms and `bye N` when asked to stop (SIGTERM)
  crash   prints two lines and exits 3
  sleeper sleeps; used where only the image reference matters
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from devloop.deploy.rollout import wait_rollout
from devloop.k8s.cluster import Cluster
from tests.k8s import support
from tests.kube_standin import StandIn
from tests.kube_standin.fixtures import namespace_cluster, session_standin

IMAGE_REPO = "devloop-k8s-test"

TICKER = """#!/bin/sh
i=0
trap 'echo "bye $i"; exit 0' TERM INT
while true; do
  echo "tick $i"
  i=$((i+1))
  usleep 50000
done
"""
CRASH = """#!/bin/sh
echo "starting up"
echo "fatal: cannot load settings (exit 3)"
exit 3
"""
SLEEPER = """#!/bin/sh
trap 'exit 0' TERM INT
while true; do usleep 200000; done
"""


def _build(context: Path, tag: str) -> None:
    done = subprocess.run(["docker", "build", "-q", "-t", tag, str(context)],
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"docker build {tag} failed: {done.stderr.strip()[-500:]}")


@pytest.fixture(scope="session")
def test_images(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
                ) -> Iterator[dict[str, str]]:
    """{'ticker': ref, 'ticker2': ref (same program, another image), 'crash': ref,
    'sleeper': ref, 'missing': ref that does not exist}; removed at the end.
    `docker_client` (tests/conftest.py) fails the run loudly when Docker is absent."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    root = tmp_path_factory.mktemp("images")
    run_id = uuid.uuid4().hex[:8]
    base = f"{IMAGE_REPO}/base:{run_id}"
    (root / "base").mkdir()
    shutil.copy(busybox, root / "base" / "busybox")
    (root / "base" / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        "RUN mkdir -p /tmp /data && chmod 1777 /tmp /data\n")
    _build(root / "base", base)
    refs: dict[str, str] = {}
    variants = {"ticker": TICKER, "ticker2": TICKER + "\n# variant 2\n", "crash": CRASH,
                "sleeper": SLEEPER}
    for name, script in variants.items():
        ctx = root / name
        ctx.mkdir()
        (ctx / "run.sh").write_text(script)
        (ctx / "Dockerfile").write_text(
            f"FROM {base}\nCOPY run.sh /run.sh\nRUN chmod 755 /run.sh\n"
            'CMD ["/bin/sh", "/run.sh"]\n')
        refs[name] = f"{IMAGE_REPO}/{name}:{run_id}"
        _build(ctx, refs[name])
    refs["missing"] = f"{IMAGE_REPO}/never-built:{run_id}"
    yield refs
    subprocess.run(["docker", "rmi", "-f", *[r for k, r in refs.items() if k != "missing"],
                    base], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def busybox_image(test_images: dict[str, str]) -> str:
    return test_images["sleeper"]


@pytest.fixture(scope="session")
def standin(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
            ) -> Iterator[StandIn]:
    """One API stand-in for the session; each test works in its own namespace."""
    yield from session_standin(tmp_path_factory.mktemp("standin"), "k8s")


@pytest.fixture
def cluster(standin: StandIn, test_images: dict[str, str]) -> Iterator[Cluster]:
    """A Cluster on the stand-in with a fresh namespace, deleted (with its pods) afterwards."""
    yield from namespace_cluster(standin, "t")


@pytest.fixture
def deploy(cluster: Cluster) -> Callable[..., int]:
    """Create a test Deployment (see support.deployment) and wait until it has rolled out;
    returns its generation."""

    def make(name: str, image: str, **kwargs: Any) -> int:
        created = cluster.apps.create_namespaced_deployment(
            cluster.namespace, support.deployment(name, image, **kwargs))
        result = wait_rollout(cluster.apps, cluster.core, cluster.namespace, name,
                              created.metadata.generation, 60, threading.Event(),
                              lambda _: None)
        assert result.ok, f"test setup: {name} did not roll out: {result}"
        return int(created.metadata.generation)

    return make


@pytest.fixture
def own_standin(tmp_path: Path, test_images: dict[str, str]) -> Iterator[StandIn]:
    """A stand-in of this test's own, so stopping and restarting it disturbs nobody else."""
    server = StandIn(tmp_path / "standin", volume_prefix=f"k8s-{secrets.token_hex(3)}-pvc")
    server.start()
    yield server
    server.stop(remove_volumes=True)
