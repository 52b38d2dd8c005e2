"""Problems from pod output after a live update: a synced file that does not import.

A full reload learns of a crash from the rollout (the new pod never becomes Ready). A live update
replaces no pod: the app's own reloader restarts in place and, on a syntax error, prints a
traceback and keeps waiting for the fix. So after each live sync this subscriber reads the
service's pod output for a while and turns a Python traceback into a `problem` event pointing at
the repository file, like a crashing rollout does. Outside that window tracebacks are left to the
log stream (a request's exception is not a broken save).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from devloop import events as ev
from devloop.config.loader import Config
from devloop.image.problems import is_traceback_end, traceback_problem

WINDOW_S = 30.0  # how long after a sync a traceback is blamed on it
_LINES = 80  # lines kept per pod while a window is open


class CrashWatch:
    """Subscribe with `bus.subscribe(CrashWatch(bus, lambda: config))`."""

    def __init__(self, bus: ev.EventBus, config: Callable[[], Config],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bus = bus
        self.config = config
        self.clock = clock
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}  # service -> end of its window
        self._lines: dict[tuple[str, str], deque[str]] = {}
        self._reported: dict[str, tuple[str, int, str]] = {}

    def __call__(self, event: ev.Event) -> None:
        service = event.service
        if service is None:
            return
        if event.type == ev.LIVE_SYNC_FINISHED:
            with self._lock:
                self._until[service] = self.clock() + WINDOW_S
                self._reported.pop(service, None)
                for key in [k for k in self._lines if k[0] == service]:
                    del self._lines[key]
            return
        if event.type != ev.POD_LOG:
            return
        line = str(event.data.get("line", ""))
        with self._lock:
            if self._until.get(service, 0.0) < self.clock():
                self._until.pop(service, None)
                return
            lines = self._lines.setdefault((service, str(event.data.get("pod"))),
                                           deque(maxlen=_LINES))
            lines.append(line)
            if not is_traceback_end(line):
                return
            snapshot = list(lines)
            lines.clear()
        svc = self.config().services.get(service)
        if svc is None:
            return
        problem = traceback_problem(snapshot, svc, Path(self.config().root))
        if problem is None:
            return
        key = (problem["file"], problem["line"], problem["message"])
        with self._lock:
            if self._reported.get(service) == key:
                return  # the same error printed again (e.g. by a second worker)
            self._reported[service] = key
        self.bus.publish(ev.PROBLEM, service, **problem)
