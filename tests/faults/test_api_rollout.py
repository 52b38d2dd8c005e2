"""A rollout wait through an API server that keeps answering 503 (mocking nothing: the stand-in's
fault switch fails the real requests). Before issue 17 such a wait ended as "Timeout", which the
engine treats as the new image's fault (rollout_failed, not retried until the next save); an
overloaded API server says nothing about the image, so it must end as ClusterUnreachable, which
the engine retries by itself, and say so once rather than on every poll."""

from __future__ import annotations

import threading

from devloop.deploy.rollout import wait_rollout
from devloop.k8s.cluster import connect
from tests.faults.conftest import NS, Box


def test_a_503_storm_through_a_rollout_wait_is_unreachable_said_once(box: Box):
    cluster = connect(box.standin.context, NS, str(box.standin.kubeconfig))
    box.standin.standin.faults.fail("GET", rf"/namespaces/{NS}/deployments/box$", status=503,
                                    count=10_000)
    said: list[str] = []
    result = wait_rollout(cluster.apps, cluster.core, NS, "box", 1, 4, threading.Event(),
                          said.append, poll=0.2, watch=False)
    assert result.reason == "ClusterUnreachable", result
    assert "\n" not in result.message
    assert len(said) == 1 and "HTTP 503" in said[0], said
    assert box.standin.standin.faults.failed(503) >= 5  # it kept asking meanwhile
