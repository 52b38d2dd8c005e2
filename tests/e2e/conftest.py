"""Fixtures of the end-to-end suite: the Lumina stack on the stand-in cluster, or, opt-in, on a
real cluster given by DEVLOOP_E2E_CONTEXT (skipped otherwise, with the reason printed)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.e2e.lumina import LuminaCluster, copy_stack, prepare_images, stack_env
from tests.kube_standin.kubeconfig import CONTEXT as STANDIN_CONTEXT
from tests.kube_standin.standin import StandIn

REAL_CONTEXT = os.environ.get("DEVLOOP_E2E_CONTEXT")


@pytest.fixture(scope="module", params=["standin", "real-cluster"])
def lumina_env(request: pytest.FixtureRequest) -> Iterator[LuminaCluster]:
    if request.param == "real-cluster" and not REAL_CONTEXT:
        pytest.skip("real-cluster suite is opt-in: set DEVLOOP_E2E_CONTEXT=<kube context> "
                    "(namespace lumina is deleted, then installed there; "
                    "DEVLOOP_E2E_NO_TRAFFIC=1 when its pods run no containers)")
    docker_client = docker.from_env()
    prepare_images(docker_client)
    work = Path(tempfile.mkdtemp(prefix="devloop-e2e-"))
    repo = copy_stack(work / "repo")
    server = None
    if request.param == "standin":
        # The chart's real probe timings: `next dev` (the frontend's dev stage) compiles its
        # first page for 10-40 s, which probes scaled 10x faster would take for a hung server.
        server = StandIn(work / "standin", docker_client=docker_client, probe_time_scale=1.0,
                         volume_prefix=f"e2e-{work.name[-6:]}-pvc")
        kubeconfig, context = server.start(), STANDIN_CONTEXT
    else:
        kubeconfig = Path(os.environ.get("KUBECONFIG", Path.home() / ".kube/config"))
        context = REAL_CONTEXT
    env = stack_env(kubeconfig, work / "cache", offline=True)
    cluster = LuminaCluster(repo, kubeconfig, context, env, docker_client,
                            standin=server is not None)
    if server is None:
        cluster.reset_namespace()
    try:
        yield cluster
    finally:
        cluster.stop()
        if server is not None:
            server.stop(keep_pods=False, remove_volumes=True)
        shutil.rmtree(work, ignore_errors=True)
