"""A fair limit on concurrent Docker builds (`max_parallel` in devloop.yaml).

One burst that touches many services (a `git checkout`, a shared library in `watch:`) would
otherwise start every build at once: 30 concurrent builds thrash a 2-core machine, and the first
image is ready much later than with a few builds at a time (bench/bench_parallel.py). Only the
build takes a slot; digests, live syncs and rollout waits are cheap and never queue.

First come, first served: a freed slot is handed straight to the oldest waiter under the lock, so
a later arrival cannot overtake it even when it arrives at the moment the slot frees.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

# A queued waiter sleeps on its own Event; it wakes at once when granted, and only this often to
# look at `stop` (threading cannot wait on two Events). No wake-ups when nothing is queued.
_STOP_CHECK_S = 0.1


@dataclass(eq=False)
class _Waiter:
    name: str
    granted: threading.Event = field(default_factory=threading.Event)


class BuildSlots:
    """At most `limit` holders at a time; the others wait in arrival order. Thread-safe."""

    def __init__(self, limit: int) -> None:
        self._lock = threading.Lock()
        self._running: list[str] = []
        self._queue: deque[_Waiter] = deque()
        self._limit = _checked(limit)

    @property
    def limit(self) -> int:
        return self._limit

    def set_limit(self, limit: int) -> None:
        """Change the limit (devloop.yaml reloaded): a raise admits waiters at once, a cut lets
        running builds finish and admits no one until the count is below the new limit."""
        limit = _checked(limit)
        with self._lock:
            self._limit = limit
            self._grant_locked()

    def acquire(self, name: str, stop: threading.Event,
                on_queued: Callable[[int], None] | None = None) -> bool:
        """Take a slot for `name`, waiting in arrival order; False (no slot held) when `stop` is
        or becomes set first. `on_queued(position)` is called once, only when it has to wait,
        with its place in the queue at that moment (1 = next)."""
        with self._lock:
            if stop.is_set():
                return False
            if not self._queue and len(self._running) < self._limit:
                self._running.append(name)
                return True
            waiter = _Waiter(name)
            self._queue.append(waiter)
            position = len(self._queue)
        if on_queued is not None:
            on_queued(position)
        while not waiter.granted.wait(_STOP_CHECK_S):
            if stop.is_set():
                with self._lock:
                    if not waiter.granted.is_set():
                        self._queue.remove(waiter)
                        return False
                break  # granted at the same moment: hand the slot on below
        if stop.is_set():
            self.release(name)
            return False
        return True

    def release(self, name: str) -> None:
        """Give back a slot taken by `acquire(name, ...)`; the oldest waiter gets it."""
        with self._lock:
            try:
                self._running.remove(name)
            except ValueError:
                raise RuntimeError(f"build slot released for {name}, which holds none "
                                   "(release only after acquire returned True)") from None
            self._grant_locked()

    @contextmanager
    def slot(self, name: str, stop: threading.Event,
             on_queued: Callable[[int], None] | None = None) -> Iterator[bool]:
        """`with slots.slot(name, stop) as got:` holds a slot for the block when `got`."""
        got = self.acquire(name, stop, on_queued)
        try:
            yield got
        finally:
            if got:
                self.release(name)

    def snapshot(self) -> tuple[list[str], list[str]]:
        """(names building, names queued in order) for status lines and dashboards."""
        with self._lock:
            return list(self._running), [w.name for w in self._queue]

    def _grant_locked(self) -> None:
        while self._queue and len(self._running) < self._limit:
            waiter = self._queue.popleft()
            self._running.append(waiter.name)
            waiter.granted.set()


def _checked(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"max_parallel must be a whole number >= 1, got {limit!r}")
    return limit


def limit_for(max_parallel: int | None) -> int:
    """The build-slot limit for devloop.yaml's `max_parallel` (unset: default_limit())."""
    return max_parallel or default_limit()


def default_limit(cpu_count: int | None = None) -> int:
    """The `max_parallel` used when devloop.yaml sets none: the CPU count, at least 2.

    Measured by bench/bench_parallel.py (30 services, 2 CPUs, calm runs): heavy builds took
    41-43 s at 2 against 50-57 s unbounded (42-55 s at 3-8, 70-79 s at 1); the first image was
    ready after ~3 s instead of ~40 s, and memory peaked at 0.5 GB instead of 3.6 GB. Light builds:
    2 was also fastest (5-6 s), first image at 0.4 s instead of 4.5 s. At least 2, because each
    build also waits ~1 s on the engine (context upload, container create and commit), which a
    second build overlaps (a 1-CPU machine was not measured).
    """
    cpus = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    return max(2, cpus)
