"""Fixtures for the fault suite: the stand-in (one per test, so a fault injected into it or an
outage disturbs no other test) and a Docker Engine."""

from tests.kube_standin.fixtures import (  # noqa: F401
    busybox_image,
    standin,
    standin_docker,
    standin_factory,
)
