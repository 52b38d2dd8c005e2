"""A push that found no registry is retried by `watch` on its own, with back-off, until it gets
through; a push the registry refused (401) waits for the user; a registry blip mid-push is left
to the engine's own retries. Plain rules, a fake clock."""

from __future__ import annotations

import itertools
from pathlib import Path

from devloop.config.loader import ServiceConfig
from devloop.deploy.registry import Outage
from devloop.inputs.digest import ServiceDigest
from devloop.loop import rules
from devloop.loop.rules import ServiceState, Timing
from devloop.vocab import DEPLOY_FAILED, OK, REGISTRY_UNREACHABLE, PipelineResult

TIMING = Timing(quiet_s=0.1, cap_s=2.0)


def backend(tmp_path: Path) -> ServiceState:
    svc = ServiceConfig(name="backend", context=tmp_path, dockerfile=tmp_path / "Dockerfile",
                        image="lumina-backend", deployment="backend", container="backend")
    return ServiceState(ServiceDigest(svc), known="running")


def next_start(state: ServiceState, now: float, until: float) -> float | None:
    """When the loop, waking as the rules say, starts the service; None if not before `until`."""
    states = {"backend": state}
    while (wait := rules.next_timeout(states, now, TIMING)) is not None and now + wait < until:
        now += wait
        if rules.due(states, now, TIMING):
            return round(now, 3)
    return None


def test_an_unreachable_registry_is_retried_with_back_off_until_the_push_gets_through(
        tmp_path):
    state = backend(tmp_path)
    rules.note_change(state, [tmp_path / "requirements.txt"], at=0.0)
    starts = [0.0]
    for _ in range(4):  # the registry stays away for four attempts
        plan = rules.start_plan(state)
        rules.fold(state, PipelineResult("backend", REGISTRY_UNREACHABLE, "new"),
                   now=starts[-1] + 1.0, timing=TIMING)  # each attempt took 1 s
        assert state.known == "running" and state.failed is None  # the running image stays
        start = next_start(state, starts[-1] + 1.0, starts[-1] + 60.0)
        assert start is not None, "no retry was scheduled"
        starts.append(start)
    gaps = [round(b - a - 1.0, 1) for a, b in itertools.pairwise(starts)]  # minus the attempt
    assert gaps == [2.0, 4.0, 8.0, 16.0]
    plan = rules.start_plan(state)  # the fifth attempt: the registry is back
    assert plan.changed is None and plan.ask_cluster  # all inputs again, what runs asked again
    rules.fold(state, PipelineResult("backend", OK, "new"), now=starts[-1] + 1.0, timing=TIMING)
    assert state.known == "new" and state.retries == 0
    assert next_start(state, starts[-1] + 1.0, starts[-1] + 120.0) is None  # done: no more


def test_the_back_off_stops_growing_at_30_seconds(tmp_path):
    state = backend(tmp_path)
    now = 0.0
    for _ in range(7):
        rules.start_plan(state)
        rules.fold(state, PipelineResult("backend", REGISTRY_UNREACHABLE, "new"), now=now,
                   timing=TIMING)
        start = next_start(state, now, now + 120.0)
        assert start is not None
        gap, now = start - now, start
    assert round(gap) == 30


def test_a_refused_push_waits_for_the_user(tmp_path):
    state = backend(tmp_path)
    rules.start_plan(state)
    rules.fold(state, PipelineResult("backend", DEPLOY_FAILED, "new", "401"), now=0.0,
               timing=TIMING)
    assert next_start(state, 0.0, 120.0) is None  # `docker login` is the user's to run
    rules.note_change(state, [tmp_path / "app.py"], at=120.0)  # a save starts it again
    assert next_start(state, 120.0, 121.0) == 120.1


def test_a_registry_blip_mid_push_is_left_to_the_engine_and_an_outage_ends_the_push():
    blip = Outage(grace=10.0)
    assert blip.due(0.0) and not blip.answered(False, 0.0)  # gone while a layer was sent
    assert not blip.due(0.5)  # asked about once a second, not on every countdown line
    assert not blip.answered(False, 1.0) and not blip.answered(True, 2.0)  # back: no failure
    assert not blip.answered(False, 30.0)  # a new outage counts from its own start
    outage = Outage(grace=10.0)
    silent = [outage.answered(False, float(t)) for t in range(12)]
    assert silent.index(True) == 10  # ten seconds of silence: the push ends, watch retries
