"""Fixtures for the log-stream tests: a busybox image, the API stand-in, a namespace each.

Pods run shell or awk programs given in the pod spec (`command`), so one image serves every
test; the stand-in runs them as Docker containers on network none (nothing here can be pulled).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import docker
import pytest

from devloop.k8s.cluster import Cluster
from tests.kube_standin import StandIn
from tests.kube_standin.fixtures import namespace_cluster, session_standin


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
def busybox(busybox_image: str) -> str:
    """The session's busybox image (tests/kube_standin/fixtures.py): sh, awk, a writable /tmp."""
    return busybox_image


@pytest.fixture(scope="session")
def standin(tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
            ) -> Iterator[StandIn]:
    yield from session_standin(tmp_path_factory.mktemp("standin"), "logs")


@pytest.fixture
def cluster(standin: StandIn, busybox: str) -> Iterator[Cluster]:
    yield from namespace_cluster(standin, "logs")
