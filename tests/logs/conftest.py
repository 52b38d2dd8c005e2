"""Fixtures for the log-stream tests: a busybox image, the API stand-in, a namespace each.

Pods run shell or awk programs given in the pod spec (`command`), so one image serves every
test; the stand-in runs them as Docker containers on network none (nothing here can be pulled).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from devloop.cluster import Cluster, connect
from tests.kube_standin import StandIn

IMAGE_REPO = "devloop-logs-test"


def build_busybox(directory: Path, tag: str) -> None:
    """FROM scratch with the host's static busybox (also used by bench/bench_logs.py)."""
    shutil.copy(shutil.which("busybox") or "/bin/busybox", directory / "busybox")
    (directory / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        "RUN mkdir -p /tmp && chmod 1777 /tmp\n")
    subprocess.run(["docker", "build", "-q", "-t", tag, str(directory)], check=True,
                   capture_output=True, timeout=300)


def deployment(name: str, image: str, script: str, **container: Any) -> dict[str, Any]:
    """One pod running `sh -c script`; extra container fields (probes) as given."""
    labels = {"app": name}
    spec = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
            "command": ["/bin/sh", "-c", script], **container}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"terminationGracePeriodSeconds": 1,
                                           "containers": [spec]}}}}


@pytest.fixture(scope="session")
def busybox(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
            ) -> Iterator[str]:
    tag = f"{IMAGE_REPO}/busybox:{uuid.uuid4().hex[:8]}"
    build_busybox(tmp_path_factory.mktemp("busybox"), tag)
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def standin(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
            ) -> Iterator[StandIn]:
    server = StandIn(tmp_path_factory.mktemp("standin"),
                     volume_prefix=f"logs-{secrets.token_hex(3)}-pvc")
    server.start()
    yield server
    server.stop(remove_volumes=True)


@pytest.fixture
def cluster(standin: StandIn, busybox: str) -> Iterator[Cluster]:
    namespace = f"logs-{uuid.uuid4().hex[:8]}"
    conn = connect(StandIn.context, namespace, str(standin.kubeconfig))
    conn.core.create_namespace({"metadata": {"name": namespace}})
    yield conn
    with contextlib.suppress(Exception):
        conn.core.delete_namespace(namespace)
    conn.api_client.close()
