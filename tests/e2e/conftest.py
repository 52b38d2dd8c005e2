"""Fixtures of the end-to-end suite: the Lumina stack on the stand-in cluster, or, opt-in, on a
real cluster given by DEVLOOP_E2E_CONTEXT (skipped otherwise, with the reason printed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.e2e.lumina import REPO, LuminaCluster, copy_stack, stack_env
from tests.kube_standin.kubeconfig import CONTEXT as STANDIN_CONTEXT
from tests.kube_standin.standin import StandIn

REAL_CONTEXT = os.environ.get("DEVLOOP_E2E_CONTEXT")


def _prepare_images(docker_client: docker.DockerClient) -> None:
    """Base images (pulled, or produced locally when no registry answers) and dependencies
    downloaded on the host, which builds then use (DEVLOOP_OFFLINE=true) with or without a
    registry, so the suite runs the same everywhere."""
    subprocess.run([str(REPO / "scripts/install-helm")], check=True, stdout=subprocess.DEVNULL)
    offline = False
    for base in ("python:3.11-slim-bookworm", "node:20-bookworm-slim"):
        try:
            docker_client.images.get(base)
            continue
        except docker.errors.ImageNotFound:
            pass
        try:
            docker_client.images.pull(base)
        except docker.errors.DockerException:
            offline = True
    if offline:
        subprocess.run([str(REPO / "scripts/base-images")], check=True)
    # dependencies downloaded on the host work with or without a registry: always use them
    subprocess.run([str(REPO / "scripts/offline-deps")], check=True)


@pytest.fixture(scope="module", params=["standin", "real-cluster"])
def lumina_env(request: pytest.FixtureRequest) -> Iterator[LuminaCluster]:
    if request.param == "real-cluster" and not REAL_CONTEXT:
        pytest.skip("real-cluster suite is opt-in: set DEVLOOP_E2E_CONTEXT=<kube context> "
                    "(namespace lumina will be installed there)")
    docker_client = docker.from_env()
    _prepare_images(docker_client)
    work = Path(tempfile.mkdtemp(prefix="devloop-e2e-"))
    repo = copy_stack(work / "repo")
    standin = None
    if request.param == "standin":
        standin = StandIn(work / "standin", docker_client=docker_client,
                          volume_prefix=f"e2e-{work.name[-6:]}-pvc")
        kubeconfig, context = standin.start(), STANDIN_CONTEXT
    else:
        kubeconfig = Path(os.environ.get("KUBECONFIG", Path.home() / ".kube/config"))
        context = REAL_CONTEXT
    env = stack_env(kubeconfig, work / "cache", offline=True)
    cluster = LuminaCluster(repo, kubeconfig, context, env, docker_client,
                            standin=standin is not None)
    try:
        yield cluster
    finally:
        cluster.stop()
        if standin is not None:
            standin.stop(keep_pods=False, remove_volumes=True)
        shutil.rmtree(work, ignore_errors=True)
