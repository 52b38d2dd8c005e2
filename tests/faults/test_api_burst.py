"""An API server that sheds load (503, 429 with Retry-After) while devloop patches.

The stand-in's fault switch fails real requests of the real kubernetes client; nothing is
mocked. A short burst is absorbed by the retry policy inside the call; a burst longer than the
policy fails that reload as "cluster unreachable", and the engine retries it by itself: the
service converges with no second save.
"""

from __future__ import annotations

import time

from devloop.deploy import patch
from devloop.k8s.cluster import ClusterUnreachable, connect
from tests.faults.conftest import NS, Box, assert_converged, wait_event, wait_for

DEPLOYMENT_PATH = rf"/namespaces/{NS}/deployments/box$"


def test_a_short_burst_of_503s_and_a_429_are_absorbed_by_the_patch_itself(box: Box):
    cluster = connect(box.standin.context, NS, str(box.standin.kubeconfig))
    faults = box.standin.standin.faults
    burst = faults.fail("PATCH", DEPLOYMENT_PATH, status=503, count=3)
    throttle = faults.fail("GET", DEPLOYMENT_PATH, status=429, count=1, retry_after=1)
    started = time.monotonic()
    generation = patch.patch_image(cluster.apps, NS, "box", "box", "box:two", "d" * 64)
    assert generation >= 2
    assert box.template_image() == "box:two"
    assert burst.served == 3 and throttle.served == 1
    assert time.monotonic() - started >= 1.0  # the 429's Retry-After was waited for


def test_a_burst_longer_than_the_retries_is_cluster_unreachable_not_a_patch_error(box: Box):
    cluster = connect(box.standin.context, NS, str(box.standin.kubeconfig))
    box.standin.standin.faults.fail("PATCH", DEPLOYMENT_PATH, status=503, count=50)
    try:
        patch.patch_image(cluster.apps, NS, "box", "box", "box:two", "d" * 64)
    except ClusterUnreachable as exc:
        text = str(exc)
    else:
        raise AssertionError("a patch through a 503 storm cannot succeed")
    assert "\n" not in text and "HTTP 503" in text and "retries by itself" in text
    box.standin.standin.faults.clear()
    assert box.template_image() == "box:none"  # nothing half-applied


def test_a_503_burst_mid_patch_converges_without_a_save(box: Box):
    uid = box.pvc_uid()
    watch = box.watch(forward=False)
    try:
        # more 503s than one reload's retries can absorb: that reload fails, the next passes
        rule = box.standin.standin.faults.fail("PATCH", DEPLOYMENT_PATH, status=503, count=9)
        mark = watch.mark()
        box.save("v2")
        failed = wait_event(watch, "reload.finished", after=mark, timeout=120,
                            outcome="cluster_unreachable")
        assert "\n" not in failed["reason"] and "HTTP 503" in failed["reason"]
        retry_mark = watch.mark()
        wait_event(watch, "rollout.ready", after=retry_mark, timeout=180, service="box")
        wait_for(lambda: any(e.get("line", "").startswith("v2 ")
                             for e in watch.since(retry_mark, "log")), 60,
                 what="the v2 pod's log lines")
        assert rule.served == 9
        assert [e for e in watch.since(mark, "change.detected")] != []  # the one save
    finally:
        assert watch.stop() in (0, 130)
    assert_converged(box, uid, ["v1", "v2"])



def test_forward_connections_and_log_streams_ride_out_a_burst_on_their_streams(box: Box):
    watch = box.watch()
    faults = box.standin.standin.faults
    try:
        assert wait_for(box.get, 30, what="the page through the forward") == "v1\n"
        # the next 3 port-forward handshakes fail: one connection through the forward must
        # still get its answer (retried inside the connection), not a reset
        handshakes = faults.fail("GET", r"/pods/[^/]+/portforward$", status=503, count=3)
        assert box.get(timeout=30) == "v1\n"
        assert handshakes.served == 3
        # log streams: cut them (a short drop) and fail the re-opens for a while
        mark = watch.mark()
        reopen = faults.fail("GET", r"/pods/[^/]+/log$", status=503, count=4)
        faults.drop(0.5)
        wait_for(lambda: reopen.served == 4, 60, what="the log follower to retry its stream")
        resumed = watch.mark()
        wait_for(lambda: watch.since(resumed, "log"), 60, what="log lines after the burst")
        said = [e for e in watch.events[mark:] if e.get("type") in ("warning", "error")
                and "log" in str(e.get("message"))]
        # said once per part while it lasted (the pod watch the drop cut, the log stream's
        # 503s), not once per attempt
        assert len(said) <= 2, said
    finally:
        assert watch.stop() in (0, 130)
    assert [e for e in watch.events if e.get("type") == "forward.failed"] == []
