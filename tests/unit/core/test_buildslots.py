"""The build limiter (`max_parallel`): fair order, queue positions, stop while queued.

Real threads, synchronised with Events; timeouts below only bound a hang, they assert no timing.
"""

from __future__ import annotations

import threading

import pytest

from devloop.image.buildslots import BuildSlots, default_limit

HANG = 10.0  # seconds; only reached when the limiter is broken


class Contender:
    """One service's worker thread asking for a slot; records what it saw."""

    def __init__(self, slots: BuildSlots, name: str, stop: threading.Event | None = None,
                 then: threading.Event | None = None, log: list[str] | None = None) -> None:
        self.slots, self.name = slots, name
        self.stop = stop or threading.Event()
        self.queued = threading.Event()
        self.positions: list[int] = []
        self.result: bool | None = None
        self._then, self._log = then, log
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_queued(self, position: int) -> None:
        self.positions.append(position)
        self.queued.set()

    def _run(self) -> None:
        self.result = self.slots.acquire(self.name, self.stop, self._on_queued)
        if self.result and self._log is not None:
            self._log.append(self.name)
            if self._then is not None:
                self._then.wait(HANG)
            self.slots.release(self.name)

    def start_queued(self) -> Contender:
        """Start and return once it is waiting (so arrival order is the call order)."""
        self.thread.start()
        assert self.queued.wait(HANG), f"{self.name} never queued"
        return self

    def finish(self) -> bool | None:
        self.thread.join(HANG)
        assert not self.thread.is_alive(), f"{self.name} still blocked"
        return self.result


def test_under_the_limit_nobody_waits() -> None:
    slots = BuildSlots(2)
    stop = threading.Event()
    seen: list[int] = []
    assert slots.acquire("a", stop, seen.append)
    assert slots.acquire("b", stop, seen.append)
    assert seen == []
    assert slots.snapshot() == (["a", "b"], [])


def test_waiters_are_served_in_arrival_order_with_their_positions() -> None:
    slots = BuildSlots(1)
    stop = threading.Event()
    assert slots.acquire("holder", stop)
    waiters = [Contender(slots, f"s{i}").start_queued() for i in range(4)]
    assert [w.positions for w in waiters] == [[1], [2], [3], [4]]
    assert slots.snapshot() == (["holder"], ["s0", "s1", "s2", "s3"])

    order = []
    current = "holder"
    for w in waiters:
        slots.release(current)
        assert w.finish() is True
        order.append(slots.snapshot()[0])
        current = w.name
    assert order == [["s0"], ["s1"], ["s2"], ["s3"]]
    slots.release(current)
    assert slots.snapshot() == ([], [])


def test_a_later_arrival_never_overtakes_a_waiter_when_a_slot_frees() -> None:
    slots = BuildSlots(1)
    stop = threading.Event()
    assert slots.acquire("holder", stop)
    early = Contender(slots, "early").start_queued()
    slots.release("holder")
    # The slot was handed to `early` under the lock, before its thread even ran again: a
    # newcomer at this very moment must queue behind it rather than grab the free slot.
    late = Contender(slots, "late").start_queued()
    assert late.positions == [1]
    assert slots.snapshot() == (["early"], ["late"])
    assert early.finish() is True
    slots.release("early")
    assert late.finish() is True  # positive control: the newcomer is served next
    assert slots.snapshot() == (["late"], [])


def test_many_contenders_in_order_under_load() -> None:
    slots = BuildSlots(1)
    stop = threading.Event()
    assert slots.acquire("holder", stop)
    log: list[str] = []
    waiters = [Contender(slots, f"s{i:02}", log=log).start_queued() for i in range(25)]
    slots.release("holder")  # each contender releases as soon as it has logged itself
    for w in waiters:
        assert w.finish() is True
    assert log == [w.name for w in waiters]
    assert slots.snapshot() == ([], [])


def test_a_stopped_waiter_leaves_the_queue_and_the_others_move_up() -> None:
    slots = BuildSlots(1)
    stop = threading.Event()
    assert slots.acquire("holder", stop)
    first = Contender(slots, "first").start_queued()
    cancelled = Contender(slots, "cancelled").start_queued()
    last = Contender(slots, "last").start_queued()
    assert last.positions == [3]

    cancelled.stop.set()
    assert cancelled.finish() is False
    assert slots.snapshot() == (["holder"], ["first", "last"])

    slots.release("holder")  # positive control: the queue still moves, without the leaver
    assert first.finish() is True
    slots.release("first")
    assert last.finish() is True
    assert slots.snapshot() == (["last"], [])


def test_stop_and_grant_at_the_same_moment_passes_the_slot_on() -> None:
    slots = BuildSlots(1)
    stop = threading.Event()
    assert slots.acquire("holder", stop)
    racer = Contender(slots, "racer").start_queued()
    after = Contender(slots, "after").start_queued()
    racer.stop.set()
    # Whether the racer notices its stop before or after the slot is handed to it, it must not
    # build, and the slot must go on to the next waiter instead of being lost with it.
    slots.release("holder")
    assert racer.finish() is False
    assert after.finish() is True
    assert slots.snapshot() == (["after"], [])


def test_a_grant_just_before_stop_is_either_used_or_handed_on() -> None:
    slots = BuildSlots(1)
    stop = threading.Event()
    assert slots.acquire("holder", stop)
    racer = Contender(slots, "racer").start_queued()
    after = Contender(slots, "after").start_queued()
    slots.release("holder")
    racer.stop.set()
    # Thread scheduling decides whether the racer saw the grant first; both are fine as long
    # as exactly one of them holds the slot.
    if racer.finish():
        assert slots.snapshot() == (["racer"], ["after"])
        slots.release("racer")
    assert after.finish() is True
    assert slots.snapshot() == (["after"], [])


def test_stop_already_set_takes_no_slot() -> None:
    slots = BuildSlots(1)
    stopped = threading.Event()
    stopped.set()
    seen: list[int] = []
    assert slots.acquire("a", stopped, seen.append) is False
    assert seen == []
    assert slots.snapshot() == ([], [])
    assert slots.acquire("b", threading.Event())  # positive control: the slot is still free


def test_slot_context_releases_even_when_the_build_raises() -> None:
    slots = BuildSlots(1)
    stop = threading.Event()
    with pytest.raises(RuntimeError, match="boom"), slots.slot("a", stop) as got:
        assert got is True
        assert slots.snapshot() == (["a"], [])
        raise RuntimeError("boom")
    assert slots.snapshot() == ([], [])
    stop.set()
    with slots.slot("b", stop) as got:
        assert got is False
    assert slots.snapshot() == ([], [])


def test_raising_the_limit_admits_waiters_and_lowering_it_lets_builds_finish() -> None:
    slots = BuildSlots(1)
    stop = threading.Event()
    assert slots.acquire("a", stop)
    b = Contender(slots, "b").start_queued()
    c = Contender(slots, "c").start_queued()
    slots.set_limit(3)
    assert b.finish() is True and c.finish() is True
    slots.set_limit(1)
    d = Contender(slots, "d").start_queued()
    slots.release("a")
    slots.release("b")
    assert slots.snapshot() == (["c"], ["d"])  # still one too many running: d waits
    slots.release("c")
    assert d.finish() is True


def test_release_without_a_slot_is_a_clear_error() -> None:
    slots = BuildSlots(1)
    with pytest.raises(RuntimeError, match="build slot released for web, which holds none"):
        slots.release("web")


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_limit_must_be_a_positive_whole_number(bad: object) -> None:
    with pytest.raises(ValueError, match="max_parallel must be a whole number >= 1"):
        BuildSlots(bad)  # type: ignore[arg-type]


def test_default_limit_is_the_cpu_count_but_never_a_single_build() -> None:
    assert [default_limit(n) for n in (1, 2, 4, 16)] == [2, 2, 4, 16]
    assert default_limit() >= 2
