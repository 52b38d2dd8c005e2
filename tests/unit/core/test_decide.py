"""The engine's decisions as plain functions of state, with a fake clock (no threads, no I/O)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from devloop.config.loader import ServiceConfig
from devloop.inputs.digest import ServiceDigest
from devloop.loop import rules as decide
from devloop.loop.rules import ServiceState, Timing
from devloop.vocab import (
    BUILD_FAILED,
    CLUSTER_UNREACHABLE,
    DEPLOY_FAILED,
    DISK_FULL,
    DOCKER_UNREACHABLE,
    OK,
    ROLLOUT_FAILED,
    SYNCED,
    UNCHANGED,
    LiveState,
    PipelineResult,
)

T = Timing(quiet_s=0.1, cap_s=2.0)


def state(tmp_path: Path, name: str = "api") -> ServiceState:
    svc = ServiceConfig(name=name, context=tmp_path, dockerfile=tmp_path / "Dockerfile",
                        image=name, deployment=name, container=name)
    return ServiceState(ServiceDigest(svc))


def test_a_burst_is_due_a_quiet_period_after_its_last_change_but_never_after_the_cap(tmp_path):
    s = state(tmp_path)
    states = {"api": s}
    decide.note_change(s, [tmp_path / "a"], at=10.0)
    assert decide.due(states, 10.05, T) == []
    assert decide.next_timeout(states, 10.05, T) == pytest.approx(0.05)
    assert decide.due(states, 10.1, T) == ["api"]
    # saves every 50 ms for 5 s: the cap starts the reload 2 s after the first one
    s2 = state(tmp_path)
    for i in range(100):
        decide.note_change(s2, [tmp_path / "a"], at=20.0 + i * 0.05)
        if decide.due({"api": s2}, 20.0 + i * 0.05, T):
            break
    assert 20.0 + i * 0.05 == pytest.approx(22.0)


def test_a_busy_service_is_not_started_again_and_its_changes_make_one_follow_up(tmp_path):
    s = state(tmp_path)
    decide.note_change(s, [tmp_path / "a"], at=1.0)
    plan = decide.start_plan(s)
    assert s.busy and plan.changed is None  # the first run walks the tree
    for i in range(5):
        decide.note_change(s, [tmp_path / f"f{i}"], at=1.2 + i / 100)
    assert decide.due({"api": s}, 5.0, T) == []  # busy: waits
    decide.fold(s, PipelineResult("api", OK, "d1"), now=5.0, timing=T)
    assert decide.due({"api": s}, 5.0, T) == ["api"]
    follow_up = decide.start_plan(s)
    assert sorted(p.name for p in follow_up.changed or []) == [f"f{i}" for i in range(5)]
    assert decide.due({"api": s}, 9.0, T) == []


def test_due_services_start_oldest_change_first(tmp_path):
    states = {n: state(tmp_path, n) for n in ("a", "b", "c")}
    decide.note_change(states["c"], [tmp_path / "x"], at=1.0)
    decide.note_change(states["a"], [tmp_path / "x"], at=2.0)
    decide.note_change(states["b"], [tmp_path / "x"], at=1.5)
    assert decide.due(states, 10.0, T) == ["c", "b", "a"]


def test_a_failed_digest_is_not_retried_until_the_inputs_change(tmp_path):
    s = state(tmp_path)
    s.known = "old"
    decide.start_plan(s)
    decide.fold(s, PipelineResult("api", BUILD_FAILED, "bad"), now=1.0, timing=T)
    assert s.known == "old" and s.failed == "bad"
    decide.note_change(s, [tmp_path / "a"], at=2.0)
    plan = decide.start_plan(s)
    assert plan.known == "bad" and plan.known_failed  # same inputs -> "waiting for a fix"
    assert plan.image == "old"  # but live update still knows what the Deployment runs
    decide.fold(s, PipelineResult("api", OK, "good"), now=3.0, timing=T)
    assert (s.known, s.failed) == ("good", None)


def test_a_crashing_rollout_is_what_the_deployment_runs(tmp_path):
    s = state(tmp_path)
    s.live = LiveState("l", "old", {}, frozenset({"c1"}), 1)
    decide.start_plan(s)
    decide.fold(s, PipelineResult("api", ROLLOUT_FAILED, "crash"), now=1.0, timing=T)
    assert s.known == "crash" and s.failed == "crash" and s.live is None


@pytest.mark.parametrize("outcome", [CLUSTER_UNREACHABLE, DOCKER_UNREACHABLE, DISK_FULL])
def test_unreachable_cluster_or_engine_is_retried_with_back_off(tmp_path, outcome):
    s = state(tmp_path)
    starts = []
    now = 0.0
    for _ in range(6):
        decide.start_plan(s)
        decide.fold(s, PipelineResult("api", outcome), now=now, timing=T)
        assert s.failed is None and s.full_scan
        while not decide.due({"api": s}, now, T):
            now += 0.5
        starts.append(now)
    gaps = [round(b - a) for a, b in itertools.pairwise(starts)]
    assert gaps == [4, 8, 16, 30, 30]
    plan = decide.start_plan(s)
    assert plan.ask_cluster  # after an outage, ask the cluster again what runs
    decide.fold(s, PipelineResult("api", OK, "d"), now=now, timing=T)
    assert s.retries == 0


def test_no_retry_is_scheduled_while_stopping(tmp_path):
    s = state(tmp_path)
    decide.start_plan(s)
    decide.fold(s, PipelineResult("api", CLUSTER_UNREACHABLE), now=0.0, timing=T, stopping=True)
    assert decide.deadline(s, T) is None


def test_a_sync_keeps_the_image_and_records_the_live_state(tmp_path):
    s = state(tmp_path)
    s.known = "img"
    decide.start_plan(s)
    live = LiveState("src2", "img", {"a.py": "2"}, frozenset({"docker://c1"}), 1)
    decide.fold(s, PipelineResult("api", SYNCED, "src2", live=live), now=1.0, timing=T)
    assert s.known == "img" and s.live == live
    # a full reload replaces the pods: nothing is live any more
    decide.start_plan(s)
    decide.fold(s, PipelineResult("api", OK, "src3"), now=2.0, timing=T)
    assert s.known == "src3" and s.live is None


def test_start_up_learns_the_deployed_image_and_live_state_from_the_cluster(tmp_path):
    s = state(tmp_path)
    plan = decide.start_plan(s)
    assert plan.ask_cluster
    live = LiveState("src", "img", {}, frozenset({"docker://c1"}), 2)
    decide.fold(s, PipelineResult("api", UNCHANGED, "src", image="img", live=live), 1.0, T)
    assert s.known == "img" and s.live == live
    assert not decide.start_plan(s).ask_cluster


def test_a_restarted_container_is_resynced_at_once_only_when_files_are_ahead(tmp_path):
    s = state(tmp_path)
    assert not decide.container_started(s, "docker://new", now=5.0)  # nothing live: image only
    s.live = LiveState("src", "img", {}, frozenset({"docker://c1"}), 1)
    assert not decide.container_started(s, "docker://c1", now=5.0)  # holds the files already
    assert decide.due({"api": s}, 5.0, T) == []
    assert decide.container_started(s, "docker://c2", now=5.0)
    assert decide.due({"api": s}, 5.0, T) == ["api"]  # no quiet period for a lost sync
    assert decide.start_plan(s).resync
    assert not s.resync


def test_a_paused_service_keeps_its_changes_and_starts_them_when_resumed(tmp_path):
    s = state(tmp_path)
    s.full_scan = False
    decide.set_paused(s, True)
    decide.note_change(s, [tmp_path / "a"], at=1.0)
    assert decide.due({"api": s}, 9.0, T) == []
    assert decide.next_timeout({"api": s}, 9.0, T) is None  # no wake-ups for a paused one
    decide.set_paused(s, False)
    assert decide.due({"api": s}, 9.0, T) == ["api"]
    assert [p.name for p in decide.start_plan(s).changed or []] == ["a"]


def test_a_trigger_is_due_at_once_even_when_paused_and_forces_a_full_reload(tmp_path):
    s = state(tmp_path)
    s.failed = "bad"
    decide.set_paused(s, True)
    decide.trigger(s, now=5.0)
    assert decide.due({"api": s}, 5.0, T) == ["api"]
    plan = decide.start_plan(s)
    assert plan.force and not plan.known_failed  # the same inputs are tried again
    assert not decide.start_plan(s).force  # once


def test_a_config_write_is_read_once_its_writes_settle_one_read_at_a_time():
    cfg = decide.ConfigState()
    decide.note_config_change(cfg, frozenset(), at=10.0)  # the editor truncates ...
    assert decide.start_config_read(cfg, 10.05, T) is None  # ... no read of a half-written file
    decide.note_config_change(cfg, frozenset({"web"}), at=10.06)  # ... and writes
    assert decide.next_timeout({}, 10.06, T, cfg) == pytest.approx(0.1)
    assert decide.start_config_read(cfg, 10.16, T) == frozenset({"web"})
    # a write during the read waits for it, then is due as usual (never two reads at once)
    decide.note_config_change(cfg, frozenset(), at=10.2)
    assert decide.start_config_read(cfg, 11.0, T) is None
    assert decide.next_timeout({}, 11.0, T, cfg) is None
    decide.config_read_done(cfg)
    assert decide.start_config_read(cfg, 11.0, T) == frozenset()
    decide.config_read_done(cfg)
    assert decide.start_config_read(cfg, 20.0, T) is None  # nothing left


def test_a_config_that_keeps_changing_is_read_by_the_cap():
    cfg = decide.ConfigState()
    for i in range(30):
        decide.note_config_change(cfg, frozenset(), at=i * 0.09)
        if decide.start_config_read(cfg, i * 0.09, T) is not None:
            break
    assert i * 0.09 >= T.cap_s and cfg.busy


def test_services_wait_for_a_config_read_that_is_due_or_running(tmp_path):
    api = state(tmp_path)
    states = {"api": api}
    cfg = decide.ConfigState()
    decide.note_change(api, [tmp_path / ".dockerignore"], at=1.0)
    decide.note_config_change(cfg, frozenset({"api"}), at=1.0)
    # both due at 1.1: the read goes first, api waits (its ignore rules may have changed) ...
    assert decide.due(states, 1.2, T, cfg) == []
    assert decide.start_config_read(cfg, 1.2, T) == frozenset({"api"})
    assert decide.due(states, 1.3, T, cfg) == []
    assert decide.next_timeout(states, 1.3, T, cfg) is None  # no busy wake-ups meanwhile
    decide.config_read_done(cfg)
    # ... and starts once it is done
    assert decide.due(states, 1.4, T, cfg) == ["api"]


def test_a_reload_the_api_server_overloaded_is_retried_without_a_save_a_refused_one_is_not(
        tmp_path):
    # deploy.py reports a 503/429 storm that outlasted the call's retries as
    # cluster_unreachable (HTTP 503 in the reason); a refusal (422, a missing container) is
    # deploy_failed: the inputs' fault, nothing changes until they do
    overloaded, refused = state(tmp_path, "api"), state(tmp_path, "web")
    states = {"api": overloaded, "web": refused}
    for s, outcome in ((overloaded, CLUSTER_UNREACHABLE), (refused, DEPLOY_FAILED)):
        decide.start_plan(s)
        decide.fold(s, PipelineResult(s.digest.service.name, outcome, "d2", "HTTP 503"),
                    now=10.0, timing=T)
    assert decide.due(states, 11.0, T) == []
    assert decide.due(states, 12.0, T) == ["api"]  # 2 s later, no change needed
    assert decide.deadline(refused, T) is None and decide.due(states, 100.0, T) == ["api"]
