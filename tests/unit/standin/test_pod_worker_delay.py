"""When a stand-in pod worker looks at its containers again (a plain function of the slots and
a fake clock): a probe that does not run is never due. A pod with a startup probe that had
succeeded was inspected 20 times a second for its whole life (every Lumina frontend of the
suite: one Docker API call and a status write each time)."""

from __future__ import annotations

from tests.kube_standin.pod_worker import ProbeTrack, Slot, next_sync_delay

NOW = 1000.0


def running(started: bool, **probes: float) -> Slot:
    """A running container whose probes come due at NOW + the given seconds."""
    return Slot("web", init=False, current="c1", waiting=None, started=started,
                probes={kind: ProbeTrack(NOW + due) for kind, due in probes.items()})


def test_a_succeeded_startup_probe_is_never_due_again() -> None:
    slot = running(True, startupProbe=-300.0, livenessProbe=25.0, readinessProbe=1.5)
    assert next_sync_delay([slot], NOW) == 1.5


def test_liveness_and_readiness_wait_for_the_startup_probe() -> None:
    slot = running(False, startupProbe=4.0, livenessProbe=-10.0, readinessProbe=-5.0)
    assert next_sync_delay([slot], NOW) == 2.0  # the idle look, not the overdue probes
    slot = running(False, startupProbe=0.5, livenessProbe=-10.0)
    assert next_sync_delay([slot], NOW) == 0.5


def test_a_due_probe_back_off_or_waiting_container_comes_first() -> None:
    assert next_sync_delay([running(True, readinessProbe=-1.0)], NOW) == 0.05
    assert next_sync_delay([running(True, livenessProbe=0.25)], NOW) == 0.25
    backing_off = Slot("web", init=False, backoff_until=NOW + 0.75)
    assert next_sync_delay([backing_off], NOW) == 0.75
    waiting = Slot("web", init=False, waiting=("ContainerCreating", ""))
    assert next_sync_delay([waiting], NOW) == 1.0
    assert next_sync_delay([], NOW) == 2.0
