"""Live update under faults, with real `devloop watch` processes on the stand-in: devloop
SIGKILLed half-way through a sync, then restarted, with and without the edit reverted
meanwhile. (A live-updated container killed: tests/live, re-synced at once; exec refused by
the API server: tests/k8s/test_containerupdate.py.)

The service is a busybox image whose process prints /app/message.txt every 0.2 s. Its
live_update has a run step `sleep 4` after the copy, so the exec stays open long enough to
kill devloop between "files copied" and "sync confirmed". What a container holds is read with
`docker exec` (pods are Docker containers), never from devloop's own account of it.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import pytest
from kubernetes import client as k8s

from tests.conftest import busybox_context
from tests.faults.conftest import NS, Box
from tests.k8s.support import deployment
from tests.kube_standin.fixtures import StandInHandle, wait_for
from tests.watchproc import Watch

LOOP = ('["/bin/sh","-c","i=0; while true; do echo \\"$(cat /app/message.txt) $i\\"; '
        'i=$((i+1)); sleep 0.2; done"]')


class LiveBox(Box):
    """The box service with live update on (message.txt synced to /app, then `sleep 4`)."""

    @property
    def source(self) -> Path:
        return self.root / "services/box/src/message.txt"

    def pod(self) -> k8s.V1Pod:
        pods = self.pods()
        assert len(pods) == 1, [p.metadata.name for p in pods]
        return pods[0]

    def holds(self, pod: k8s.V1Pod) -> str:
        """/app/message.txt as the pod's running container has it."""
        running = pod.status.container_statuses[0].container_id.split("://", 1)[1]
        code, out = docker.from_env().containers.get(running).exec_run(
            ["cat", "/app/message.txt"])
        return out.decode() if code == 0 else f"<exit {code}>"

    def note(self) -> dict | None:
        raw = (self.pod().metadata.annotations or {}).get("devloop.dev/live")
        return json.loads(raw) if raw else None


@pytest.fixture
def live_box(standin: StandInHandle, tmp_path: Path, image_prefix: str) -> LiveBox:
    root = tmp_path / "repo"
    busybox_context(root / "services/box", {"src/message.txt": "v1\n"}, cmd=LOOP)
    (root / "devloop.yaml").write_text(
        f"version: 1\nnamespace: {NS}\nrollout_timeout_s: 120\nquiet_period_ms: 50\n"
        f"services:\n  box:\n    context: services/box\n    image: {image_prefix}-box\n"
        "    live_update:\n      run: [{cmd: sleep 4}]\n")
    standin.create_namespace(NS)
    standin.apps().create_namespaced_deployment(
        NS, deployment("box", "box:none", strategy="Recreate"))
    return LiveBox(root, standin, 0)


@contextmanager
def watching(box: LiveBox, first: str = "rollout.ready") -> Iterator[Watch]:
    """A `devloop watch` of the box project, once its start-up reached event `first`."""
    watch = Watch(box.root, box.standin.kubeconfig)
    try:
        watch.wait(first, timeout=180)
        yield watch
    finally:
        watch.stop()


def kill_mid_sync(box: LiveBox) -> k8s.V1Pod:
    """Start a watch, save v2, and SIGKILL devloop once v2 is in the container but the sync
    (its run step) has not finished; the pod it was syncing into."""
    with watching(box) as watch:
        wait_for(lambda: box.holds(box.pod()) == "v1\n", 60, what="v1 running")
        mark = watch.mark()
        box.save("v2")
        watch.wait("live.sync.started", after=mark, timeout=60)
        pod = box.pod()
        wait_for(lambda: box.holds(pod) == "v2\n", 30, what="v2 copied into the container")
        assert "syncing" in (box.note() or {}), box.note()  # the intent came first
        assert watch.since(mark, "live.sync.finished") == []
        os.kill(watch.proc.pid, signal.SIGKILL)
        watch.proc.wait(10)
    return pod


def test_devloop_killed_mid_sync_then_the_edit_reverted_leaves_no_synced_file_running(
        live_box: LiveBox) -> None:
    pod = kill_mid_sync(live_box)
    # while devloop is down, status does not claim the image runs as built
    row = live_box.status()
    assert row["stale"] is True and row["live"]["unconfirmed"] == 1, row
    assert "did not finish" in row["state"] and "\n" not in row["state"], row
    live_box.save("v1")  # the edit is reverted: the sources equal the image again
    with watching(live_box, first="live.reset") as watch:
        reset = watch.since(0, "live.reset")[0]
        assert reset["pods"] == [pod.metadata.name]
        now = wait_for(lambda: (p := live_box.pods()) and p[0].metadata.uid != pod.metadata.uid
                       and p[0].status.container_statuses
                       and p[0].status.container_statuses[0].state.running and p[0], 90,
                       what="a pod of the image replacing the one of unknown content")
        assert live_box.holds(now) == "v1\n"
        assert watch.since(0, "build.started") == []  # the image was right all along
        row = live_box.status()
        assert row["stale"] is False and row["live"] is None, row
        assert row["state"] == "up to date", row
        # positive control: the restarted watch syncs the next save
        mark = watch.mark()
        live_box.save("v3")
        watch.wait("live.sync.finished", after=mark, timeout=60)
        assert live_box.holds(live_box.pod()) == "v3\n"


def test_devloop_killed_mid_sync_copies_the_files_again_when_restarted(
        live_box: LiveBox) -> None:
    pod = kill_mid_sync(live_box)
    with watching(live_box, first="live.sync.finished") as watch:
        warned = [e["message"] for e in watch.since(0, "warning")]
        assert any(pod.metadata.name in m and "did not finish" in m for m in warned), warned
        again = watch.since(0, "live.sync.finished")[0]
        assert again["files"] == 1 and again["pods"] == [pod.metadata.name]
        assert live_box.pod().metadata.uid == pod.metadata.uid  # synced, not replaced
        assert live_box.holds(live_box.pod()) == "v2\n"
        note = live_box.note()
        assert note is not None and "syncing" not in note and note["files"] == 1, note
        row = live_box.status()
        assert row["stale"] is False and row["live"]["unconfirmed"] == 0, row
        assert "up to date" in row["state"] and "1 file ahead" in row["state"], row
        # positive control
        mark = watch.mark()
        live_box.save("v3")
        watch.wait("live.sync.finished", after=mark, timeout=60)
        assert live_box.holds(live_box.pod()) == "v3\n"

