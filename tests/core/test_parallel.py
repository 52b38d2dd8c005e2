"""`max_parallel`: a burst over many services builds a bounded number at a time, first come first
served, and the waiting ones are shown as queued (real watchdog, real Docker builds)."""

from __future__ import annotations

from devloop import events as ev
from tests.core.harness import running

SLOW = 'RUN ["/bin/sh","-c","sleep 1"]\n'  # each build takes a second: overlaps would show


def test_a_burst_over_three_services_builds_one_at_a_time_in_arrival_order(
        make_project, docker_client):
    root = make_project({n: {"extra": SLOW} for n in ("a", "b", "c")},
                        top="quiet_period_ms: 100\nmax_parallel: 1\n")
    with running(root, docker_client) as h:
        mark = h.mark()
        for name in ("a", "b", "c"):
            (root / f"services/{name}/src/main.txt").write_text(f"{name} 2\n")
        for name in ("a", "b", "c"):
            h.wait(ev.RELOAD_FINISHED, name, after=mark, timeout=120)
        phases = [(e.type, e.service) for e in h.recorder.events[mark:]
                  if e.type in (ev.BUILD_STARTED, ev.BUILD_FINISHED)]
        # never two builds at once: every start follows the previous service's finish
        assert len(phases) == 6
        for (t1, s1), (t2, s2) in zip(phases[::2], phases[1::2], strict=True):
            assert (t1, t2) == (ev.BUILD_STARTED, ev.BUILD_FINISHED) and s1 == s2, phases
        queued = h.since(mark, ev.RELOAD_QUEUED)
        assert sorted(e.data["position"] for e in queued) == [1, 2]
        # the order builds ran in is the order they queued in
        order = [s for t, s in phases if t == ev.BUILD_STARTED]
        assert order[1:] == [e.service for e in sorted(queued, key=lambda e: e.data["position"])]
