"""A pod deleted behind devloop's back while it watches (`kubectl delete pod`, an eviction, a
node drain): the ReplicaSet replaces it with a pod of the same image, and devloop must follow
the replacement: its logs, the port forward, and the next edit's reload.
"""

from __future__ import annotations

from tests.faults.conftest import NS, Box, assert_converged, wait_event, wait_for


def test_a_pod_deleted_during_watch_is_followed_and_a_later_edit_reloads(box: Box):
    uid = box.pvc_uid()
    watch = box.watch()
    try:
        assert wait_for(box.get, 30, what="the page through the forward") == "v1\n"
        [old] = box.pods()
        image = box.template_image()
        mark = watch.mark()
        box.standin.core().delete_namespaced_pod(old.metadata.name, NS)

        def replacement() -> str | None:
            names = [p.metadata.name for p in box.pods() if p.metadata.name != old.metadata.name
                     and p.status.phase == "Running"]
            return names[0] if names else None
        new = wait_for(replacement, 60, what="the ReplicaSet's replacement pod")
        # its log is followed: the replacement starts counting from 0 again
        wait_for(lambda: any(e.get("pod") == new for e in watch.since(mark, "log")), 60,
                 what=f"log lines of {new}")
        moved = wait_event(watch, "forward.moved", after=mark, timeout=60, service="box")
        assert moved["pod"] == new
        assert wait_for(box.get, 30, what="the page through the moved forward") == "v1\n"
        assert watch.since(mark, "reload.started") == []  # same image: nothing to rebuild
        assert box.pod_images() == {image}
        # a later edit reloads the service as usual
        later = watch.mark()
        box.save("v2")
        wait_event(watch, "rollout.ready", after=later, timeout=180, service="box")
        assert wait_for(lambda: box.get() == "v2\n", 60, what="v2 through the forward")
    finally:
        assert watch.stop() in (0, 130)
    # v1 twice: the replacement started with v1 too (same image, same volume)
    assert_converged(box, uid, ["v1", "v1", "v2"])
