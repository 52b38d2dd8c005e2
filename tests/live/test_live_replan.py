"""A file that vanishes between the live-update plan and the copy: the change set is planned
again in the same cycle, never an "internal error" and never a rebuild.

In-process Pipeline + ClusterDeployer + LiveSyncer with real Docker builds against the stand-in
(pods are Docker containers, the copy goes through the exec API). The race (an editor deleting
a file while devloop syncs it) is made deterministic by an updater that deletes the file just
before handing the sync to the real ExecUpdater; nothing is mocked.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import docker
import pytest

from devloop import events as ev
from devloop import pipeline as pl
from devloop.build import Builder
from devloop.cluster import Cluster, new_api_client
from devloop.config import load_config
from devloop.containerupdate import ExecUpdater, Target, UpdateResult
from devloop.deploy import ClusterDeployer
from devloop.digest import ServiceDigest
from devloop.livesync import LiveSyncer
from devloop.redact import Redactor
from devloop.snapshots import SnapshotStore
from tests.conftest import busybox_context
from tests.kube_standin.fixtures import StandInHandle, namespace_cluster
from tests.kube_standin.kubeconfig import CONTEXT

CMD = '["/bin/sh","-c","while true; do sleep 1; done"]'


class DeletesFirst:
    """Deletes `victim` as the first sync begins (an editor racing devloop), then syncs."""

    name = "exec"

    def __init__(self, real: ExecUpdater, victim: Path) -> None:
        self.real = real
        self.victim = victim
        self.calls: list[list[str]] = []

    def update(self, target: Target, copies: Sequence[tuple[Path, str]],
               deletes: Sequence[str], run: Sequence[str]) -> UpdateResult:
        self.calls.append([dest for _, dest in copies])
        if len(self.calls) == 1:
            self.victim.unlink()
        return self.real.update(target, copies, deletes, run)


@pytest.fixture
def cluster(standin: StandInHandle) -> Iterator[Cluster]:
    yield from namespace_cluster(standin.standin, "replan")


def test_a_file_deleted_while_it_is_synced_is_planned_again_in_the_same_cycle(
        standin: StandInHandle, cluster: Cluster, tmp_path: Path, image_prefix: str) -> None:
    root = tmp_path / "repo"
    src = busybox_context(root / "services/box", {"src/message.txt": "v1\n"}, cmd=CMD) / "src"
    (root / "devloop.yaml").write_text(
        f"version: 1\nnamespace: {cluster.namespace}\ncontext: {CONTEXT}\n"
        f"kubeconfig: {standin.kubeconfig}\nrollout_timeout_s: 60\n"
        f"services:\n  box:\n    context: services/box\n    image: {image_prefix}-box\n")
    cluster.apps.create_namespaced_deployment(cluster.namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "box"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "box"}},
                 "template": {"metadata": {"labels": {"app": "box"}}, "spec": {
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "box", "image": "box:none"}]}}}})
    config = load_config(root / "devloop.yaml")
    bus = ev.EventBus()
    events = ev.Recorder(limit=10_000)
    bus.subscribe(events)
    deployer = ClusterDeployer.create(config, bus, Redactor())
    updater = DeletesFirst(ExecUpdater(lambda: new_api_client(cluster)), src / "draft.txt")
    live = LiveSyncer(bus, cluster, updater, SnapshotStore(tmp_path / "images"), root)
    pipeline = pl.Pipeline(bus, Builder(docker.from_env(), keep_images=2), deployer, root=root,
                           live=live)
    digest = ServiceDigest(config.services["box"])
    try:
        first = pipeline.run(digest, None, None, threading.Event(), ask_cluster=True,
                             allow_live=True)
        assert first.outcome == pl.OK, first
        (src / "message.txt").write_text("v2\n")
        (src / "draft.txt").write_text("scratch\n")
        mark = len(events.events)
        result = pipeline.run(digest, [src / "message.txt", src / "draft.txt"], first.digest,
                              threading.Event(), image=first.digest, allow_live=True)
    finally:
        deployer.close()
    seen = events.events[mark:]
    assert result.outcome == pl.SYNCED, (result, [(e.type, e.data) for e in seen])
    assert updater.calls == [["/app/draft.txt", "/app/message.txt"], ["/app/message.txt"]]
    warned = [e.data["message"] for e in seen if e.type == ev.WARNING]
    assert any("draft.txt vanished" in m and "syncing again" in m for m in warned), warned
    assert not [e for e in seen if e.type in (ev.BUILD_STARTED, ev.ERROR, ev.LIVE_REBUILD)]
    assert result.live is not None and "src/draft.txt" not in result.live.files
    # what the container holds: the new message, no draft
    pod = next(p for p in cluster.core.list_namespaced_pod(cluster.namespace).items
               if p.metadata.deletion_timestamp is None)
    container = docker.from_env().containers.get(
        pod.status.container_statuses[0].container_id.split("://", 1)[1])
    assert container.exec_run(["cat", "/app/message.txt"]).output == b"v2\n"
    assert container.exec_run(["test", "-e", "/app/draft.txt"]).exit_code != 0
