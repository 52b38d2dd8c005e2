"""devloop SIGKILLed in the middle of a rollout, then started again.

SIGKILL gives devloop no chance to clean up or record anything: whatever it knows after the
restart comes from the cluster (the Deployment's digest annotation and image tag). The rollout
it had started carries on in the cluster; the restarted devloop must see that the Deployment
already runs the current sources (no rebuild, no second patch), wait for that rollout to be
healthy, and `devloop status` must say so.
"""

from __future__ import annotations

import signal

from tests.faults.conftest import Box, assert_converged, first_reload, wait_event, wait_for
from tests.watchproc import Watch


def test_sigkill_mid_rollout_then_restart_converges_without_rebuilding(box: Box):
    uid = box.pvc_uid()
    first = box.watch(forward=False)
    try:
        mark = first.mark()
        box.save("v2")
        patched = wait_event(first, "deploy.patched", after=mark, timeout=240, service="box")
        first.proc.send_signal(signal.SIGKILL)
        assert first.proc.wait(10) == -signal.SIGKILL
        assert first.since(mark, "rollout.ready") == []  # it died mid-rollout
    finally:
        first.stop()
    second = Watch(box.root, box.standin.kubeconfig)
    try:
        done = first_reload(second, timeout=180)
        assert done["type"] == "build.skipped", done  # the cluster already runs v2
        assert second.since(0, "build.started") == [], "the image it had deployed was rebuilt"
        assert second.since(0, "deploy.patched") == [], "the Deployment was patched again"
        wait_for(lambda: any(e.get("line", "").startswith("v2 ")
                             for e in second.since(0, "log")), 60,
                 what="the restarted devloop to follow the new pod's log")
        # a later edit still reloads: the restarted loop is alive
        later = second.mark()
        box.save("v3")
        wait_event(second, "rollout.ready", after=later, timeout=180, service="box")
    finally:
        assert second.stop() in (0, 130)
    assert patched["image"].split(":dl-")[0] == box.template_image().split(":dl-")[0]
    assert_converged(box, uid, ["v1", "v2", "v3"])
