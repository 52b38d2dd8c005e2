"""Every branch of one reload, carried out by the real Pipeline on real files, with the three
seams faked (devloop.loop.fakes): no Docker Engine and no cluster (they cannot run here in a
unit test). What is asserted is what a user sees: the outcome, the events (the console and
dashboard lines), and what reached the engine and the cluster.

The end-to-end versions of these scenarios run with real Docker and the stand-in in
tests/core/test_reload.py, tests/core/test_build_truth.py and tests/live.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devloop import events as ev
from devloop.config.loader import ServiceConfig, load_config
from devloop.image.buildslots import BuildSlots
from devloop.image.errors import BuildFailed, DiskFull, DockerUnreachable, InputsChanged
from devloop.inputs.digest import ServiceDigest, image_tag
from devloop.live.updaters import SourcesChanged
from devloop.loop import rules
from devloop.loop.fakes import FakeBuilder, FakeDeployer, FakeLiveUpdate
from devloop.loop.pipeline import Pipeline
from devloop.vocab import (
    BUILD_FAILED,
    CANCELLED,
    CLUSTER_UNREACHABLE,
    DEPLOY_FAILED,
    DISK_FULL,
    DOCKER_UNREACHABLE,
    OK,
    ROLLOUT_FAILED,
    SYNCED,
    UNCHANGED,
    DeployFailed,
    LiveState,
    NeedRebuild,
    PipelineResult,
)

TIMING = rules.Timing(0.1, 2.0)


@dataclass
class Project:
    """One service `app` (src/main.txt) and the pipeline over the fakes."""

    root: Path
    svc: ServiceConfig
    digest: ServiceDigest
    builder: FakeBuilder
    deployer: FakeDeployer | None
    live: FakeLiveUpdate | None
    pipeline: Pipeline
    events: ev.Recorder
    stop: threading.Event = field(default_factory=threading.Event)
    image: str = ""  # with live update: the digest of the image deployed by the first run

    @property
    def main(self) -> Path:
        return self.svc.context / "src/main.txt"

    def edit(self, text: str) -> list[Path]:
        self.main.write_text(text)
        return [self.main]

    def current(self) -> str:
        fresh = ServiceDigest(self.svc)
        fresh.scan()
        return fresh.digest()

    def tag(self, digest: str) -> str:
        return image_tag(self.svc.image, digest)

    def types(self) -> list[str]:
        return [e.type for e in self.events.events if e.type != ev.BUILD_OUTPUT]

    def one(self, type: str) -> dict:
        found = self.events.of(type, "app")
        assert len(found) == 1, (type, self.types())
        return found[0].data

    def first(self, **kw) -> PipelineResult:
        """The first reload (start-up): builds and deploys, or syncs nothing."""
        return self.pipeline.run(self.digest, None, None, self.stop, ask_cluster=True, **kw)


def _project(tmp_path: Path, cluster: bool = True, live: bool = False) -> Project:
    ctx = tmp_path / "app"
    (ctx / "src").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY src/ /app/\n")
    (ctx / "src/main.txt").write_text("v1\n")
    (tmp_path / "devloop.yaml").write_text(
        "version: 1\nnamespace: lumina\nservices:\n  app:\n    context: app\n    image: app\n")
    svc = load_config(tmp_path / "devloop.yaml").services["app"]
    bus = ev.EventBus()
    recorder = ev.Recorder()
    bus.subscribe(recorder)
    builder = FakeBuilder()
    deployer = FakeDeployer() if cluster else None
    syncer = FakeLiveUpdate() if live else None
    pipeline = Pipeline(bus, builder, deployer, root=tmp_path, live=syncer, slots=BuildSlots(2))
    return Project(tmp_path, svc, ServiceDigest(svc), builder, deployer, syncer, pipeline,
                   recorder)


@pytest.fixture
def p(tmp_path: Path) -> Project:
    return _project(tmp_path)


@pytest.fixture
def lp(tmp_path: Path) -> Project:
    """With live update, deployed at v1 (image `image`)."""
    p = _project(tmp_path, live=True)
    first = p.first(allow_live=True)
    assert first.outcome == OK and first.digest is not None
    p.image = first.digest
    p.events.events.clear()
    return p


# --- skip, build, deploy -------------------------------------------------------------------------

def test_first_run_builds_deploys_and_prunes_keeping_the_new_tag(p: Project) -> None:
    result = p.first()
    assert result.outcome == OK and result.digest == p.current()
    tag = p.tag(result.digest)
    assert p.types() == [ev.RELOAD_STARTED, ev.BUILD_STARTED, ev.BUILD_FINISHED,
                         ev.RELOAD_FINISHED]
    assert p.one(ev.RELOAD_STARTED)["mode"] == "build"
    assert p.one(ev.RELOAD_FINISHED) | {"seconds": 0} == {
        "ok": True, "outcome": OK, "reason": "", "seconds": 0, "image": tag}
    assert p.builder.called("build") == [(tag,)]
    assert p.deployer is not None and p.deployer.called("deploy") == [("app", tag)]
    assert p.builder.called("prune") == [("app", frozenset({tag}))]
    assert [e.data["line"] for e in p.events.of(ev.BUILD_OUTPUT)] == [f"building {tag}"]


def test_unchanged_inputs_skip_with_the_reason_and_an_edit_builds(p: Project) -> None:
    deployed = p.first().digest
    p.events.events.clear()
    same = p.pipeline.run(p.digest, p.edit("v1\n"), deployed, p.stop)
    assert same.outcome == UNCHANGED and same.digest == deployed
    assert p.types() == [ev.BUILD_SKIPPED]
    assert p.one(ev.BUILD_SKIPPED) == {"image": p.tag(deployed), "reason": "inputs unchanged",
                                       "known_failed": False}
    assert len(p.builder.called("build")) == 1
    # positive control: a real edit on the same pipeline builds and deploys
    edited = p.pipeline.run(p.digest, p.edit("v2\n"), deployed, p.stop)
    assert edited.outcome == OK and edited.digest != deployed
    assert p.one(ev.CHANGE_DETECTED) == {"paths": ["app/src/main.txt"], "more": 0}
    assert len(p.builder.called("build")) == 2
    # the tag deployed before is kept from pruning: a rollback needs it
    assert p.builder.called("prune")[-1] == (
        "app", frozenset({p.tag(edited.digest), p.tag(deployed)}))


def test_a_restart_asks_the_cluster_and_rebuilds_nothing_that_runs(p: Project) -> None:
    assert p.deployer is not None
    p.deployer.deployed["app"] = p.current()
    result = p.first()
    assert result.outcome == UNCHANGED and result.image == p.current()
    assert p.one(ev.BUILD_SKIPPED)["reason"] == "deployed image is current"
    assert p.deployer.called("check_health") == [("app",)]  # unchanged is not "up": ask
    assert p.builder.called("build") == []


def test_without_a_cluster_an_existing_image_is_current_and_an_engine_down_is_said(
        tmp_path: Path) -> None:
    p = _project(tmp_path, cluster=False)
    p.builder.images.add(p.tag(p.current()))
    result = p.first()
    assert result.outcome == UNCHANGED
    assert p.one(ev.BUILD_SKIPPED)["reason"] == "image is current"
    p.builder.fail("existing", DockerUnreachable("cannot reach the Docker Engine at x"))
    down = p.first()
    assert (down.outcome, down.digest) == (DOCKER_UNREACHABLE, None)
    assert p.one(ev.ERROR)["message"] == "cannot reach the Docker Engine at x"


def test_an_image_that_exists_is_deployed_without_a_build(p: Project) -> None:
    p.builder.images.add(p.tag(p.current()))
    assert p.first().outcome == OK
    assert p.builder.called("build") == []
    assert p.one(ev.BUILD_SKIPPED)["reason"] == "image exists"
    assert p.deployer is not None and len(p.deployer.called("deploy")) == 1


# --- failures ------------------------------------------------------------------------------------

def _cycle(p: Project, state: rules.ServiceState) -> PipelineResult:
    """One reload as the engine runs it: plan from state, run, fold the result back."""
    plan = rules.start_plan(state)
    result = p.pipeline.run(state.digest, plan.changed, plan.known, p.stop,
                            ask_cluster=plan.ask_cluster, known_failed=plan.known_failed,
                            image=plan.image, resync=plan.resync, force=plan.force)
    rules.fold(state, result, 100.0, TIMING)
    return result


def test_a_failed_build_is_not_retried_until_the_inputs_change(p: Project) -> None:
    state = rules.ServiceState(p.digest)
    p.builder.fail("build", BuildFailed("app", "exit code 1", step="step 2 (RUN false)"))
    failed = _cycle(p, state)
    assert failed.outcome == BUILD_FAILED
    assert p.one(ev.BUILD_FAILED)["error"] == "build of app failed at step 2 (RUN false):" \
                                               " exit code 1"
    assert p.one(ev.RELOAD_FINISHED)["outcome"] == BUILD_FAILED
    assert p.deployer is not None and p.deployer.called("deploy") == []
    # the same inputs again (a touch): skipped, saying why
    rules.note_change(state, p.edit("v1\n"), 100.0)
    assert _cycle(p, state).outcome == UNCHANGED
    assert p.one(ev.BUILD_SKIPPED) | {"image": ""} == {
        "image": "", "reason": "inputs unchanged since the last failure; waiting for a fix",
        "known_failed": True}
    assert len(p.builder.called("build")) == 1
    # positive control: a fix builds and deploys
    rules.note_change(state, p.edit("fixed\n"), 100.0)
    assert _cycle(p, state).outcome == OK
    assert state.failed is None and state.known == p.current()


def test_a_save_during_the_build_is_built_under_its_own_tag(p: Project) -> None:
    hashed = p.current()

    def saved_meanwhile() -> InputsChanged:
        return InputsChanged("app", p.edit("saved while the context was sent\n"))

    p.builder.fail("build", saved_meanwhile)
    result = p.first()
    assert result.outcome == OK and result.digest == p.current() != hashed
    assert p.builder.called("build") == [(p.tag(hashed),), (p.tag(result.digest),)]
    assert p.deployer is not None
    assert p.deployer.called("deploy") == [("app", p.tag(result.digest))]
    assert p.one(ev.WARNING)["message"].endswith(f"; building {p.tag(result.digest)} instead")
    assert p.one(ev.RELOAD_FINISHED)["image"] == p.tag(result.digest)


def test_inputs_that_keep_changing_fail_the_build_after_three_tries(p: Project) -> None:
    texts = iter(["a\n", "b\n", "c\n"])
    p.builder.fail("build", *[lambda: InputsChanged("app", p.edit(next(texts)))] * 3)
    result = p.first()
    assert result.outcome == BUILD_FAILED
    assert len(p.builder.called("build")) == 3
    assert "inputs kept changing while the build context was sent" in result.reason
    assert p.deployer is not None and p.deployer.called("deploy") == []


@pytest.mark.parametrize(("failure", "outcome"), [
    (DiskFull("app", "/tmp", "No space left on device"), DISK_FULL),
    (DockerUnreachable("lost the Docker Engine at x during the build of app"),
     DOCKER_UNREACHABLE),
])
def test_a_full_disk_or_a_lost_engine_deploys_nothing_and_is_retried(
        p: Project, failure: Exception, outcome: str) -> None:
    state = rules.ServiceState(p.digest)
    p.builder.fail("build", failure)
    result = _cycle(p, state)
    assert result.outcome == outcome and result.reason == str(failure)
    assert p.one(ev.ERROR)["message"] == str(failure)
    assert p.deployer is not None and p.deployer.called("deploy") == []
    # not the inputs' fault: due again after the back-off, and the retry deploys
    assert state.failed is None and rules.due({"app": state}, 100.0 + 2.0, TIMING) == ["app"]
    assert _cycle(p, state).outcome == OK
    assert len(p.deployer.called("deploy")) == 1


@pytest.mark.parametrize("outcome", [DEPLOY_FAILED, ROLLOUT_FAILED, CLUSTER_UNREACHABLE])
def test_a_failed_deploy_is_the_reload_outcome_and_prunes_nothing(
        p: Project, outcome: str) -> None:
    assert p.deployer is not None
    p.deployer.fail("deploy", DeployFailed(outcome, f"app: {outcome} (the cluster's words)"))
    result = p.first()
    assert (result.outcome, result.reason) == (outcome, f"app: {outcome} (the cluster's words)")
    assert p.one(ev.RELOAD_FINISHED)["ok"] is False
    assert p.builder.called("prune") == []
    assert p.first().outcome == OK  # positive control: the same pipeline deploys next time


def test_an_unreachable_cluster_at_start_up_builds_nothing(p: Project) -> None:
    assert p.deployer is not None
    p.deployer.fail("deployed_digest", DeployFailed(CLUSTER_UNREACHABLE, "cannot reach x"))
    result = p.first()
    assert (result.outcome, result.digest) == (CLUSTER_UNREACHABLE, None)
    assert p.types() == [ev.ERROR]
    assert p.builder.calls == []


def test_unchanged_but_crashing_pods_are_a_failed_rollout(p: Project) -> None:
    assert p.deployer is not None
    p.deployer.deployed["app"] = p.current()
    p.deployer.fail("check_health", DeployFailed(ROLLOUT_FAILED, "app: CrashLoopBackOff"))
    result = p.first()
    assert (result.outcome, result.digest) == (ROLLOUT_FAILED, p.current())
    assert p.events.of(ev.BUILD_SKIPPED) == []
    assert p.builder.called("build") == []


def test_stopped_while_queued_or_after_the_build_deploys_nothing(p: Project) -> None:
    p.stop.set()
    queued = p.first()
    assert (queued.outcome, queued.reason) == (CANCELLED, "stopped while queued for a build slot")
    assert p.builder.called("build") == []
    p.stop.clear()
    p.builder.fail("build", p.stop.set)  # Ctrl-C while the image is built
    built = p.first()
    assert (built.outcome, built.reason) == (CANCELLED, "stopped")
    assert p.deployer is not None and p.deployer.called("deploy") == []
    p.stop.clear()
    assert p.first().outcome == OK  # positive control: not stopped, it deploys


# --- live update ---------------------------------------------------------------------------------

def _live_run(lp: Project, changed: list[Path] | None, **kw) -> PipelineResult:
    return lp.pipeline.run(lp.digest, changed, lp.image, lp.stop,
                           image=lp.image, allow_live=True, **kw)


def test_a_change_that_can_be_synced_is_synced_without_a_build(lp: Project) -> None:
    assert lp.live is not None and lp.live.images == [lp.image]
    result = _live_run(lp, lp.edit("v2\n"))
    assert result.outcome == SYNCED and result.digest == lp.current()
    assert result.live is not None and result.live.image == lp.image
    assert lp.types() == [ev.CHANGE_DETECTED, ev.RELOAD_STARTED, ev.RELOAD_FINISHED]
    assert lp.one(ev.RELOAD_STARTED)["mode"] == "live"
    assert lp.one(ev.RELOAD_FINISHED)["outcome"] == SYNCED
    assert len(lp.builder.called("build")) == 1  # the first deploy only


def test_a_change_live_update_refuses_is_rebuilt_in_the_same_cycle(lp: Project) -> None:
    assert lp.live is not None
    lp.live.fail("sync", NeedRebuild("requirements.txt changed: the RUN pip install needs it"))
    result = _live_run(lp, lp.edit("v2\n"))
    assert result.outcome == OK
    assert lp.one(ev.LIVE_REBUILD)["reason"] == \
        "requirements.txt changed: the RUN pip install needs it"
    assert lp.types() == [ev.CHANGE_DETECTED, ev.RELOAD_STARTED, ev.LIVE_REBUILD,
                          ev.BUILD_STARTED, ev.BUILD_FINISHED, ev.RELOAD_FINISHED]
    assert lp.live.images[-1] == result.digest  # the new image's files are recorded


def test_files_that_vanish_mid_sync_are_synced_again_then_rebuilt_if_they_keep_going(
        lp: Project) -> None:
    assert lp.live is not None
    lp.live.fail("sync", lambda: SourcesChanged(lp.edit("v3\n")))
    again = _live_run(lp, lp.edit("v2\n"))
    assert again.outcome == SYNCED and again.digest == lp.current()  # v3, planned again
    assert [c[1] for c in lp.live.called("sync")][-1] == lp.current()
    assert lp.one(ev.WARNING)["message"].endswith("; syncing again")
    lp.events.events.clear()
    texts = iter(["a\n", "b\n", "c\n"])
    lp.live.fail("sync", *[lambda: SourcesChanged(lp.edit(next(texts)))] * 3)
    rebuilt = _live_run(lp, lp.edit("v4\n"))
    assert rebuilt.outcome == OK and rebuilt.digest == lp.current()
    assert lp.one(ev.LIVE_REBUILD)["reason"] == "files kept changing while they were synced"


def test_a_full_reload_asked_for_rebuilds_unchanged_inputs_without_syncing(lp: Project) -> None:
    assert lp.live is not None
    result = _live_run(lp, None, force=True)
    assert result.outcome == OK
    assert lp.one(ev.LIVE_REBUILD)["reason"] == "a full reload was asked for"
    assert lp.live.called("sync") == []
    # the same inputs: the image exists and is deployed again
    assert lp.one(ev.BUILD_SKIPPED)["reason"] == "image exists"
    assert len(lp.builder.called("build")) == 1
    assert lp.deployer is not None and len(lp.deployer.called("deploy")) == 2


def test_a_restarted_container_gets_the_synced_files_again(lp: Project) -> None:
    assert lp.live is not None
    synced = _live_run(lp, lp.edit("v2\n"))
    lp.events.events.clear()
    again = lp.pipeline.run(lp.digest, None, lp.image, lp.stop,
                            image=lp.image, live=synced.live,
                            allow_live=True, resync=True)
    assert again.outcome == SYNCED
    assert len(lp.live.called("sync")) == 2
    assert lp.events.of(ev.BUILD_SKIPPED) == []


def test_start_up_recovers_the_live_state_an_earlier_run_left(tmp_path: Path) -> None:
    p = _project(tmp_path, live=True)
    assert p.deployer is not None and p.live is not None
    image = p.current()
    p.deployer.deployed["app"] = image
    p.edit("synced by an earlier run\n")
    p.live.recovered = LiveState(p.current(), image, {}, frozenset({"c1"}), 1)
    result = p.first(allow_live=True)
    assert result.outcome == UNCHANGED and result.live == p.live.recovered
    assert p.one(ev.BUILD_SKIPPED)["reason"] == "deployed image is current"
    assert p.live.called("replace_diverged") == []  # known live state: nothing to replace


def test_start_up_rebuilds_when_the_pods_hold_unknown_synced_files(tmp_path: Path) -> None:
    p = _project(tmp_path, live=True)
    assert p.deployer is not None and p.live is not None
    p.deployer.deployed["app"] = "0" * 64  # an older image, synced on top by an earlier run
    p.live.fail("recover", NeedRebuild("pod app-1 runs files synced by an earlier devloop run"
                                       " that differ from the sources now"))
    result = p.first(allow_live=True)
    assert result.outcome == OK
    assert p.one(ev.RELOAD_STARTED)["mode"] == "build"
    assert p.one(ev.LIVE_REBUILD)["reason"].startswith("pod app-1 runs files synced")
    assert p.live.called("sync") == []


def test_start_up_replaces_pods_whose_synced_files_were_reverted(tmp_path: Path) -> None:
    p = _project(tmp_path, live=True)
    assert p.deployer is not None and p.live is not None
    p.deployer.deployed["app"] = p.current()
    p.live.diverged = ["app-1"]
    result = p.first(allow_live=True)
    assert result.outcome == UNCHANGED
    assert p.one(ev.LIVE_RESET)["pods"] == ["app-1"]
    assert p.types() == [ev.LIVE_RESET, ev.BUILD_SKIPPED]
    # positive control: pods that hold nothing diverged are left alone
    p.live.diverged = []
    p.events.events.clear()
    assert p.first(allow_live=True).outcome == UNCHANGED
    assert p.types() == [ev.BUILD_SKIPPED]
