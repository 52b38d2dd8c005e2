"""The API server unreachable for 30 s in the middle of a rollout.

The stand-in's fault switch resets every connection for 30 s and cuts the open ones (watches,
log streams, the port forward's stream), as a network drop between devloop and the API server
would; its controllers and kubelet carry on, so the rollout itself completes meanwhile. devloop
must say so once (not once per poll), keep the reload alive, and converge when the API answers
again: the reload finishes ok, logs and the forward follow the new pod, status is true.
"""

from __future__ import annotations

import time

from tests.faults.conftest import Box, assert_converged, wait_event, wait_for

OUTAGE_S = 30


def _said(events: list[dict]) -> list[str]:
    """Every line devloop showed about the outage (any event that carries text)."""
    texts = [str(e.get("message") or e.get("reason") or "") for e in events
             if e.get("type") not in ("log", "build.output")]
    return [t for t in texts if "unreachable" in t or "retrying" in t or "lost" in t]


def test_an_api_outage_mid_rollout_is_said_once_and_the_reload_converges(box: Box):
    uid = box.pvc_uid()
    watch = box.watch()
    try:
        mark = watch.mark()
        box.save("v2")
        wait_event(watch, "deploy.patched", after=mark, timeout=240, service="box")
        box.standin.standin.faults.drop(OUTAGE_S)
        cut_at = time.monotonic()
        finished = wait_event(watch, "reload.finished", after=mark, timeout=OUTAGE_S + 120)
        assert finished["outcome"] == "ok", finished
        assert time.monotonic() - cut_at >= OUTAGE_S - 1, finished  # it waited the outage out
        wait_for(lambda: any(e.get("line", "").startswith("v2 ")
                             for e in watch.since(mark, "log")), 60,
                 what="log lines of the new pod after the outage")
        assert wait_for(lambda: box.get(), 30, what="the page through the forward") == "v2\n"
        said = _said(watch.events[mark:])
        progress = [e for e in watch.since(mark, "rollout.progress")
                    if "unreachable" in e["message"] or "retrying" in e["message"]]
        assert len(progress) == 1, progress  # the rollout said it once in 30 s of polling
        # one line per part of devloop that lost the API (rollout, log follower, pod watches),
        # not one per attempt
        assert 1 <= len(said) <= 5, said
        assert box.standin.standin.faults.failed(None) > 10  # devloop did keep trying
    finally:
        assert watch.stop() in (0, 130)
    assert_converged(box, uid, ["v1", "v2"])
