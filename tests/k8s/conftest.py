"""Fixtures for the Kubernetes-side tests: busybox test images and the API stand-in.

Images are built FROM scratch with the host's static busybox (nothing can be pulled here); one
base image carries busybox, and small variants differ only in what they run:
  ticker  prints `tick N` every 50 ms and `bye N` when asked to stop (SIGTERM)
  crash   prints two lines and exits 3
  sleeper sleeps; used where only the image reference matters
"""

from __future__ import annotations

import secrets
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
from tests.kube_standin.fixtures import (
    busybox_base,
    content_image,
    namespace_cluster,
    session_standin,
)

IMAGE_REPO = "devloop-k8s-test"

# The trap only asks the loop to end, so `bye N` always counts the ticks printed (a trap that
# printed itself could run between a tick's echo and the count's increment: `bye 47` after
# `tick 47`, a failure under load)
TICKER = """#!/bin/sh
i=0
trap 'stop=1' TERM INT
while [ -z "$stop" ]; do
  echo "tick $i"
  i=$((i+1))
  usleep 50000
done
echo "bye $i"
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


@pytest.fixture(scope="session")
def test_images(docker_client: docker.DockerClient) -> dict[str, str]:
    """{'ticker': ref, 'ticker2': ref (same program, another image), 'crash': ref,
    'sleeper': ref, 'missing': ref that does not exist}, built on the busybox base by content
    (kept: see content_image). `docker_client` (tests/conftest.py) fails the run loudly when
    Docker is absent."""
    base = busybox_base(docker_client)
    variants = {"ticker": TICKER, "ticker2": TICKER + "\n# variant 2\n", "crash": CRASH,
                "sleeper": SLEEPER}
    refs = {name: content_image(docker_client, f"{IMAGE_REPO}/{name}", {
        "run.sh": script.encode(),
        "Dockerfile": (f"FROM {base}\nCOPY run.sh /run.sh\nRUN chmod 755 /run.sh\n"
                       'CMD ["/bin/sh", "/run.sh"]\n').encode()})
        for name, script in variants.items()}
    refs["missing"] = f"{IMAGE_REPO}/never-built:{uuid.uuid4().hex[:8]}"
    return refs


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
