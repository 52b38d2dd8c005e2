"""The reload decision alone: each way `plan_reload` decides, and the reason it gives.

The skip reasons are the words of the `build skipped` line; `live_refused` is the `full reload:`
line. The pipeline carrying these plans out is tested in test_pipeline_fakes.py.
"""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import pytest

from devloop.loop.plan import BUILD, LIVE, SKIP, ReloadFacts, ReloadPlan, plan_reload
from devloop.vocab import LiveState

NOW = "a" * 64  # the digest of the sources now
OLD = "b" * 64
IMAGE = "c" * 64
DEVLOOP = Path(__file__).resolve().parents[2] / "devloop"

# watch with live update, the image deployed, the sources just edited
WATCH = ReloadFacts(NOW, OLD, image=IMAGE, changed=True, syncer=True, allow_live=True)


def _live(digest: str) -> LiveState:
    return LiveState(digest, IMAGE, {}, frozenset({"docker://c1"}), 1)


@pytest.mark.parametrize(("facts", "reason"), [
    (replace(WATCH, known=NOW), "inputs unchanged"),
    (replace(WATCH, known=NOW, changed=False), "deployed image is current"),
    (replace(WATCH, known=NOW, changed=False, cluster=False, syncer=False), "image is current"),
    (replace(WATCH, known=NOW, known_failed=True),
     "inputs unchanged since the last failure; waiting for a fix"),
])
def test_inputs_that_run_already_are_skipped_saying_why(facts: ReloadFacts, reason: str) -> None:
    plan = plan_reload(facts)
    assert (plan.action, plan.reason) == (SKIP, reason)
    # positive control: the same facts with other sources are not skipped
    assert plan_reload(replace(facts, digest=OLD[:-1] + "0")).action != SKIP


def test_synced_sources_count_as_what_runs_unless_they_failed() -> None:
    synced = replace(WATCH, known=OLD, live=_live(NOW))
    plan = plan_reload(synced)
    assert (plan.action, plan.known) == (SKIP, NOW)
    # a failed reload's digest is compared, not what was synced before it
    failed = plan_reload(replace(synced, known_failed=True))
    assert (failed.action, failed.known) == (LIVE, OLD)
    assert failed.reason == "inputs changed since the last failure; syncing into the running" \
                            " containers"


def test_a_change_is_synced_when_live_update_may_be_tried() -> None:
    assert plan_reload(WATCH) == ReloadPlan(
        LIVE, "inputs changed; syncing into the running containers", OLD)


@pytest.mark.parametrize(("facts", "reason"), [
    (replace(WATCH, allow_live=False), "inputs changed; live update is off for this command"),
    (replace(WATCH, syncer=False), "inputs changed; live update needs a cluster"),
    (replace(WATCH, image=None, known=None),
     "nothing deployed yet; no deployed image to sync into"),
    (replace(WATCH, image=None, known=None, cluster=False, syncer=False, allow_live=False),
     "no image of these inputs yet; live update is off for this command"),
])
def test_a_change_live_update_cannot_reach_is_built(facts: ReloadFacts, reason: str) -> None:
    plan = plan_reload(facts)
    assert (plan.action, plan.reason, plan.live_refused) == (BUILD, reason, "")


@pytest.mark.parametrize(("facts", "refused", "why"), [
    (replace(WATCH, force=True), "a full reload was asked for", "a full reload was asked for"),
    (replace(WATCH, known=NOW, force=True), "a full reload was asked for",
     "a full reload was asked for"),
    (replace(WATCH, live_blocked="pod x runs files synced by an earlier devloop run"),
     "pod x runs files synced by an earlier devloop run", "inputs changed"),
])
def test_live_update_refused_is_a_build_that_says_why(facts: ReloadFacts, refused: str,
                                                      why: str) -> None:
    plan = plan_reload(facts)
    assert (plan.action, plan.live_refused) == (BUILD, refused)
    assert plan.reason == f"{why}; {refused}"


def test_a_restarted_container_is_synced_again_though_nothing_changed() -> None:
    facts = replace(WATCH, live=_live(NOW), resync=True)
    plan = plan_reload(facts)
    assert (plan.action, plan.reason) == (
        LIVE, "a container restarted without the live-synced files; syncing into the running"
              " containers")
    assert plan_reload(replace(facts, resync=False)).action == SKIP  # positive control
    # no live state to restore: a resync is nothing to do
    assert plan_reload(replace(facts, live=None, known=NOW)).action == SKIP


@pytest.mark.parametrize(("facts", "health", "replace_pods"), [
    (replace(WATCH, known=NOW, ask_cluster=True), True, True),
    (replace(WATCH, known=NOW, ask_cluster=True, live=_live(NOW)), True, False),
    (replace(WATCH, known=NOW, ask_cluster=True, known_failed=True), False, True),
    (replace(WATCH, known=NOW, ask_cluster=True, syncer=False), True, False),
    (replace(WATCH, known=NOW, ask_cluster=True, cluster=False, syncer=False), False, False),
    (replace(WATCH, known=NOW), False, False),  # a save in watch: the cluster is not asked
])
def test_a_skip_at_start_up_checks_what_the_pods_run(facts: ReloadFacts, health: bool,
                                                     replace_pods: bool) -> None:
    plan = plan_reload(facts)
    assert plan.action == SKIP
    assert (plan.check_health, plan.replace_diverged) == (health, replace_pods)


def test_the_plan_is_pure_and_the_fakes_need_no_docker_or_kubernetes() -> None:
    """plan.py decides from data only; seams.py and fakes.py (what unit tests build on) import
    neither Docker nor Kubernetes, and of devloop only the shared words and each other (types
    for annotations aside)."""
    allowed = {"devloop.vocab", "devloop.loop.seams"}
    for name in ("plan", "seams", "fakes"):
        tree = ast.parse((DEVLOOP / "loop" / f"{name}.py").read_text())
        runtime = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        found = {a.name for n in runtime if isinstance(n, ast.Import) for a in n.names}
        found |= {n.module or "" for n in runtime if isinstance(n, ast.ImportFrom)}
        assert not {m for m in found if m.split(".")[0] in ("docker", "kubernetes")}, name
        assert {m for m in found if m.startswith("devloop")} <= allowed, name
