"""When the manifests are applied: plain functions of state and a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from devloop.config.loader import ServiceConfig
from devloop.inputs.digest import ServiceDigest
from devloop.loop import rules as decide
from devloop.loop.rules import ManifestState, ServiceState, Timing

T = Timing(quiet_s=0.1, cap_s=2.0)


def _service(tmp_path: Path) -> ServiceState:
    svc = ServiceConfig(name="api", context=tmp_path, dockerfile=tmp_path / "Dockerfile",
                        image="api", deployment="api", container="api")
    return ServiceState(ServiceDigest(svc))


def test_a_manifest_save_is_applied_once_its_writes_settle(tmp_path):
    m = ManifestState()
    decide.note_manifest_change(m, at=10.0)
    decide.note_manifest_change(m, at=10.05)
    assert not decide.start_manifests(m, {}, 10.1, T)
    assert decide.manifests_deadline(m, T) == 10.15
    assert decide.start_manifests(m, {}, 10.15, T)
    assert m.busy and decide.manifests_deadline(m, T) is None
    decide.note_manifest_change(m, at=10.2)  # saved during the apply: one more afterwards
    assert not decide.start_manifests(m, {}, 11.0, T)
    decide.manifests_done(m, retry=False, now=11.0, timing=T)
    assert decide.start_manifests(m, {}, 11.0, T)


def test_a_source_change_of_the_same_quiet_period_is_deployed_first(tmp_path):
    m, svc = ManifestState(), _service(tmp_path)
    states = {"api": svc}
    decide.note_change(svc, [tmp_path / "app.py"], at=10.0)
    decide.note_manifest_change(m, at=10.0)
    assert decide.due(states, 10.2, T) == ["api"]
    assert not decide.start_manifests(m, states, 10.2, T)  # the service is due: it goes first
    decide.start_plan(svc)  # ... and runs
    assert not decide.start_manifests(m, states, 10.3, T)  # the apply waits for its image
    svc.busy = False
    assert decide.start_manifests(m, states, 10.4, T)  # then applies, carrying it


def test_a_source_saved_just_after_the_manifest_is_deployed_first(tmp_path):
    # seen on a plain-YAML project: `save manifest; save source` from a shell rolled the
    # workload twice, the apply going first at its deadline, 5 ms before the source was due
    m, svc = ManifestState(), _service(tmp_path)
    states = {"api": svc}
    decide.note_manifest_change(m, at=10.0)
    decide.note_change(svc, [tmp_path / "app.py"], at=10.005)
    assert decide.due(states, 10.1, T) == []
    assert not decide.start_manifests(m, states, 10.1, T)  # the source is in its quiet period
    assert decide.due(states, 10.105, T) == ["api"]
    decide.start_plan(svc)
    assert not decide.start_manifests(m, states, 10.2, T)
    svc.busy = False
    assert decide.start_manifests(m, states, 10.3, T)  # then the apply, carrying its image


def test_an_unreachable_cluster_retries_the_apply_with_back_off(tmp_path):
    m = ManifestState()
    decide.note_manifest_change(m, at=0.0)
    assert decide.start_manifests(m, {}, 1.0, T)
    decide.manifests_done(m, retry=True, now=1.0, timing=T)
    assert not decide.start_manifests(m, {}, 2.9, T)
    assert decide.start_manifests(m, {}, 3.0 + 0.01, T)  # 2 s later (then 4, 8 ... 30)


def test_a_config_read_in_progress_holds_the_apply(tmp_path):
    m, config = ManifestState(), decide.ConfigState()
    decide.note_manifest_change(m, at=0.0)
    decide.note_config_change(config, frozenset(), at=0.0)
    assert not decide.start_manifests(m, {}, 1.0, T, config)
    assert decide.start_config_read(config, 1.0, T) is not None
    decide.config_read_done(config)
    assert decide.start_manifests(m, {}, 1.0, T, config)


def test_a_held_apply_sets_no_timeout_until_what_holds_it_ends(tmp_path):
    # the first apply is due at start, and held while the first builds run (minutes for a
    # real stack): a timeout of 0 all that time made `devloop watch` spin a core
    m, svc = ManifestState(), _service(tmp_path)
    states = {"api": svc}
    decide.note_manifest_change(m, at=10.0 - 3600.0, edited=False)
    decide.note_change(svc, [tmp_path / "app.py"], at=10.0)
    assert decide.manifests_timeout(m, states, 10.0, T) is None  # the source is pending...
    # ... and its deadline wakes the loop
    assert decide.next_timeout(states, 10.0, T) == pytest.approx(0.1)
    decide.start_plan(svc)
    assert decide.manifests_timeout(m, states, 60.0, T) is None  # its reload's end wakes it
    assert decide.next_timeout(states, 60.0, T) is None
    svc.busy = False
    assert decide.manifests_timeout(m, states, 60.0, T) == 0.0
    assert decide.start_manifests(m, states, 60.0, T)
    assert decide.manifests_timeout(m, states, 60.0, T) is None  # the apply runs
    decide.manifests_done(m, retry=False, now=61.0, timing=T)
    decide.note_manifest_change(m, at=70.0)  # an edit: due after its quiet period
    assert decide.manifests_timeout(m, states, 70.0, T) == pytest.approx(T.quiet_s)


def test_a_removed_service_sets_no_timeout(tmp_path):
    svc = _service(tmp_path)
    decide.note_change(svc, [tmp_path / "app.py"], at=10.0)
    svc.removed = True  # due() never starts it: its deadline must not wake the loop either
    assert decide.due({"api": svc}, 11.0, T) == []
    assert decide.next_timeout({"api": svc}, 11.0, T) is None
    svc.removed = False  # positive control: the same pending change, kept, is due at once
    assert decide.next_timeout({"api": svc}, 11.0, T) == 0.0
