"""Live update through the in-process Pipeline, where a fault must land at an exact moment:
a file deleted between the plan and the copy, a sync too big to copy, a run step that fails
and a rebuild that cannot happen.

Pipeline + ClusterDeployer + LiveSyncer with real Docker builds against the stand-in (pods are
Docker containers, the copy goes through the exec API). Nothing is mocked: the editor's race
is an updater that deletes the file just before handing the sync to the real ExecUpdater, and
the lost Docker Engine is a Builder pointed at a socket where none listens.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest

from devloop import events as ev
from devloop import vocab
from devloop.commands.status import collect_status
from devloop.config.loader import Config, load_config
from devloop.deploy.deployer import ClusterDeployer
from devloop.image.build import Builder
from devloop.inputs.digest import ServiceDigest
from devloop.k8s.cluster import Cluster, new_api_client
from devloop.live.image_files import SnapshotStore
from devloop.live.sync import LiveSyncer
from devloop.live.updaters import ContainerUpdater, ExecUpdater, Target, UpdateResult
from devloop.loop import pipeline as pl
from devloop.redact import Redactor
from tests.conftest import busybox_context
from tests.k8s.support import deployment
from tests.kube_standin.fixtures import StandInHandle, namespace_cluster, wait_for
from tests.kube_standin.kubeconfig import CONTEXT

CMD = '["/bin/sh","-c","while true; do sleep 1; done"]'


@dataclass
class DeletesFirst:
    """Deletes `victim` as the first sync begins (an editor racing devloop), then syncs."""

    real: ContainerUpdater
    victim: Path | None = None
    calls: list[list[str]] = field(default_factory=list)
    name: str = "exec"

    def update(self, target: Target, copies: Sequence[tuple[Path, str]],
               deletes: Sequence[str], run: Sequence[str]) -> UpdateResult:
        self.calls.append([dest for _, dest in copies])
        if self.victim is not None and len(self.calls) == 1:
            self.victim.unlink()
        return self.real.update(target, copies, deletes, run)


@dataclass
class Project:
    root: Path
    config: Config
    cluster: Cluster
    bus: ev.EventBus
    events: ev.Recorder
    updater: DeletesFirst
    live: LiveSyncer
    pipeline: pl.Pipeline
    digest: ServiceDigest

    @property
    def src(self) -> Path:
        return self.root / "services/box/src"

    def since(self, mark: int, type: str | None = None) -> list[ev.Event]:
        return [e for e in self.events.events[mark:] if type is None or e.type == type]

    def pod(self):
        pods = [p for p in self.cluster.core.list_namespaced_pod(self.cluster.namespace).items
                if p.metadata.deletion_timestamp is None]
        assert len(pods) == 1, [p.metadata.name for p in pods]
        return pods[0]

    def holds(self, pod, path: str) -> str | None:
        """`path` as the pod's running container has it, None when it does not exist."""
        cid = pod.status.container_statuses[0].container_id.split("://", 1)[1]
        done = docker.from_env().containers.get(cid).exec_run(["cat", path])
        return done.output.decode() if done.exit_code == 0 else None

    def status(self) -> dict:
        rows, code = collect_status(self.config, services=["box"], cluster=self.cluster,
                                    probes=False)
        assert code == 0, rows
        return rows[0]


@pytest.fixture
def cluster(standin: StandInHandle) -> Iterator[Cluster]:
    yield from namespace_cluster(standin.standin, "livepl")


@pytest.fixture
def project(standin: StandInHandle, cluster: Cluster, tmp_path: Path,
            image_prefix: str) -> Iterator[Project]:
    """The box service (message.txt at /app; its run step fails unless message.txt says v1),
    deployed at v1 by the pipeline; a 1 MB limit for one live update."""
    root = tmp_path / "repo"
    busybox_context(root / "services/box", {"src/message.txt": "v1\n"}, cmd=CMD)
    (root / "devloop.yaml").write_text(
        f"version: 1\nnamespace: {cluster.namespace}\ncontext: {CONTEXT}\n"
        f"kubeconfig: {standin.kubeconfig}\nrollout_timeout_s: 60\n"
        f"services:\n  box:\n    context: services/box\n    image: {image_prefix}-box\n"
        "    live_update:\n      run: [{cmd: grep -q v1 /app/message.txt}]\n")
    cluster.apps.create_namespaced_deployment(
        cluster.namespace, deployment("box", "box:none", strategy="Recreate"))
    config = load_config(root / "devloop.yaml")
    bus = ev.EventBus()
    events = ev.Recorder(limit=10_000)
    bus.subscribe(events)
    deployer = ClusterDeployer.create(config, bus, Redactor())
    updater = DeletesFirst(ExecUpdater(lambda: new_api_client(cluster)))
    live = LiveSyncer(bus, cluster, updater, SnapshotStore(tmp_path / "images"), root,
                      max_live_mb=1)
    pipeline = pl.Pipeline(bus, Builder(docker.from_env(), keep_images=3), deployer, root=root,
                           live=live)
    digest = ServiceDigest(config.services["box"])
    try:
        first = pipeline.run(digest, None, None, threading.Event(), ask_cluster=True,
                             allow_live=True)
        assert first.outcome == vocab.OK, first
        yield Project(root, config, cluster, bus, events, updater, live, pipeline, digest)
    finally:
        deployer.close()


def test_a_file_deleted_while_it_is_synced_is_planned_again_in_the_same_cycle(
        project: Project) -> None:
    src, image = project.src, project.digest.digest()
    (src / "message.txt").write_text("v1 again\n")
    (src / "draft.txt").write_text("scratch\n")
    project.updater.victim = src / "draft.txt"
    mark = len(project.events.events)
    result = project.pipeline.run(project.digest, [src / "message.txt", src / "draft.txt"],
                                  image, threading.Event(), image=image, allow_live=True)
    seen = project.since(mark)
    assert result.outcome == vocab.SYNCED, (result, [(e.type, e.data) for e in seen])
    assert project.updater.calls == [["/app/draft.txt", "/app/message.txt"],
                                     ["/app/message.txt"]]
    warned = [e.data["message"] for e in seen if e.type == ev.WARNING]
    assert any("draft.txt vanished" in m and "syncing again" in m for m in warned), warned
    assert not [e for e in seen if e.type in (ev.BUILD_STARTED, ev.ERROR, ev.LIVE_REBUILD)]
    assert result.live is not None and "src/draft.txt" not in result.live.files
    pod = project.pod()
    assert project.holds(pod, "/app/message.txt") == "v1 again\n"
    assert project.holds(pod, "/app/draft.txt") is None


def test_a_sync_above_the_size_limit_says_so_in_one_line_and_rebuilds(
        project: Project) -> None:
    src, image = project.src, project.digest.digest()
    (src / "blob.bin").write_bytes(b"v1" * (600 * 1024))  # 1.2 MB
    mark = len(project.events.events)
    result = project.pipeline.run(project.digest, [src / "blob.bin"], image, threading.Event(),
                                  image=image, allow_live=True)
    assert result.outcome == vocab.OK, result
    reasons = [e.data["reason"] for e in project.since(mark, ev.LIVE_REBUILD)]
    assert len(reasons) == 1 and "\n" not in reasons[0], reasons
    assert reasons[0].startswith("the live update would copy 1.2 MB into pod box-"), reasons
    assert reasons[0].endswith("above the 1 MB limit for a live update: rebuilding instead")
    assert project.updater.calls == []  # nothing was copied
    assert project.holds(project.pod(), "/app/blob.bin") == "v1" * (600 * 1024)
    # positive control: a small change is synced again
    (src / "message.txt").write_text("v1 small\n")
    image = result.digest
    small = project.pipeline.run(project.digest, [src / "message.txt"], image,
                                 threading.Event(), image=image, allow_live=True)
    assert small.outcome == vocab.SYNCED, small


def test_a_failed_run_step_then_a_lost_engine_then_a_revert_leaves_no_synced_file(
        project: Project, tmp_path: Path) -> None:
    """The run step fails on v2 (after the copy), the rebuild cannot happen (no Docker Engine):
    the container holds v2 while the image is v1. Status must say so; after the revert, the
    engine's retry (which asks the cluster) must not call v1 "up to date" while v2 runs."""
    src, image = project.src, project.digest.digest()
    dead = pl.Pipeline(project.bus, Builder(lambda: docker.DockerClient(
        base_url=f"unix://{tmp_path}/no-docker.sock")), None, root=project.root,
        live=project.live)
    (src / "message.txt").write_text("v2\n")
    mark = len(project.events.events)
    failed = dead.run(project.digest, [src / "message.txt"], image, threading.Event(),
                      image=image, allow_live=True)
    assert failed.outcome == vocab.DOCKER_UNREACHABLE, failed
    assert [e.data["pod"] for e in project.since(mark, ev.LIVE_SYNC_FAILED)]
    pod = project.pod()
    assert project.holds(pod, "/app/message.txt") == "v2\n"  # copied before the run step
    note = json.loads(pod.metadata.annotations["devloop.dev/live"])
    assert "syncing" in note, note
    row = project.status()
    assert row["stale"] is True and "did not finish" in row["state"], row
    (src / "message.txt").write_text("v1\n")  # reverted: the sources equal the image again
    mark = len(project.events.events)
    again = project.pipeline.run(project.digest, None, image, threading.Event(),
                                 ask_cluster=True, allow_live=True)
    assert again.outcome == vocab.UNCHANGED, again
    assert [e.data["pods"] for e in project.since(mark, ev.LIVE_RESET)] == [
        [pod.metadata.name]]
    new = wait_for(lambda: (p := [q for q in project.cluster.core.list_namespaced_pod(
        project.cluster.namespace).items if q.metadata.deletion_timestamp is None
        and q.metadata.uid != pod.metadata.uid and q.status.container_statuses
        and q.status.container_statuses[0].state.running]) and p[0], 60,
        what="a pod of the image")
    assert project.holds(new, "/app/message.txt") == "v1\n"
    row = project.status()
    assert row["stale"] is False and row["live"] is None and row["state"] == "up to date", row


def test_a_503_burst_while_the_intent_is_recorded_is_retried_and_the_sync_lands(
        standin: StandInHandle, project: Project) -> None:
    src, image = project.src, project.digest.digest()
    pod = project.pod()
    rule = standin.standin.faults.fail("PATCH", rf"/pods/{pod.metadata.name}$", status=503,
                                       count=2)
    (src / "message.txt").write_text("v1 patched\n")
    mark = len(project.events.events)
    result = project.pipeline.run(project.digest, [src / "message.txt"], image,
                                  threading.Event(), image=image, allow_live=True)
    assert result.outcome == vocab.SYNCED, result
    assert rule.served == 2
    retried = [e.data["message"] for e in project.since(mark, ev.WARNING)]
    assert len(retried) == 2 and all("record the live sync on pod" in m for m in retried)
    assert project.holds(pod, "/app/message.txt") == "v1 patched\n"
    note = json.loads(project.pod().metadata.annotations["devloop.dev/live"])
    assert "syncing" not in note and note["digest"] == result.digest[:12], note
