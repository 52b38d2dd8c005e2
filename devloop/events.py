"""Events: what devloop tells the world, and the bus renderers subscribe to.

Everything the user sees goes through here: the console renderer, the JSON-lines stream and the
tests all read the same events. Workers publish from their threads; subscribers must be quick and
thread-safe (the renderers take a lock around their single write).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SCHEMA = "devloop.event/v1"

# Event types (the JSON `type` field). Documented in the README; add, never rename.
RELOAD_STARTED = "reload.started"
RELOAD_FINISHED = "reload.finished"
CHANGE_DETECTED = "change.detected"
BUILD_STARTED = "build.started"
BUILD_OUTPUT = "build.output"
BUILD_FINISHED = "build.finished"
BUILD_FAILED = "build.failed"
BUILD_SKIPPED = "build.skipped"
IMAGES_PRUNED = "images.pruned"
DELIVER_FINISHED = "deliver.finished"
DEPLOY_INSTALLED = "deploy.installed"
DEPLOY_PATCHED = "deploy.patched"
ROLLOUT_PROGRESS = "rollout.progress"
ROLLOUT_READY = "rollout.ready"
ROLLOUT_FAILED = "rollout.failed"
POD_LOG = "log"
PROBLEM = "problem"
CONFIG_LOADED = "config.loaded"
CONFIG_INVALID = "config.invalid"
CLUSTER_CONNECTED = "cluster.connected"
CLUSTER_UNREACHABLE = "cluster.unreachable"
WATCH_READY = "watch.ready"
BUILDER_SELECTED = "builder.selected"  # which builder builds images (BuildKit CLI or legacy)
WATCH_RESCAN = "watch.rescan"  # events may have been lost (watcher restarted, overflow): rescan
WARNING = "warning"
ERROR = "error"
SHUTDOWN = "shutdown"
SYNC_FINISHED = "sync.finished"  # end of the one-shot `devloop sync` command
RELOAD_QUEUED = "reload.queued"  # waiting for a build slot (max_parallel)
LIVE_SYNC_STARTED = "live.sync.started"  # live update: copying files into running containers
LIVE_SYNC_FINISHED = "live.sync.finished"
LIVE_SYNC_FAILED = "live.sync.failed"  # the copy failed; a full reload follows
DASHBOARD_READY = "dashboard.ready"  # the dashboard serves the page at `url`
SERVICE_PAUSED = "service.paused"  # a person paused reloads of this service (dashboard)
SERVICE_RESUMED = "service.resumed"
LIVE_RESET = "live.reset"  # pods running diverged synced files were replaced by image pods
LIVE_REBUILD = "live.rebuild"  # live update is not possible for this change; a full reload
FORWARD_READY = "forward.ready"  # a local port forwards to a Ready pod of the service
FORWARD_MOVED = "forward.moved"  # ... now to the new pod after a rollout (same local port)
FORWARD_FAILED = "forward.failed"  # a local port cannot be bound, or a pod refused a stream
FORWARD_STOPPED = "forward.stopped"  # devloop.yaml changed or dropped it: the local port is closed
DOWN_DELETED = "down.deleted"  # `devloop down` removed an object devloop installed or patched
DOWN_KEPT = "down.kept"  # ... left an object in place (a claim, or one devloop did not create)
DOWN_FINISHED = "down.finished"
LOG_SKIPPED = "log.skipped"  # a pod's log stream fell behind and skipped to the present
MANIFESTS_APPLIED = "manifests.applied"  # changed manifest objects were applied (server-side)
MANIFESTS_FAILED = "manifests.failed"  # rendering or applying failed; running objects unchanged
MANIFESTS_ORPHANED = "manifests.orphaned"  # objects devloop applied are no longer rendered
MANIFESTS_PRUNED = "manifests.pruned"  # ... and were deleted (prune: true)


@dataclass(frozen=True)
class Event:
    """One thing that happened. `data` holds the type-specific fields (all JSON-serialisable)."""

    type: str
    service: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "ts": round(self.ts, 6), "type": self.type,
                "service": self.service, **self.data}


Subscriber = Callable[[Event], None]


class EventBus:
    """Fan-out of events to subscribers, in publish order per thread."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        with self._lock:
            self._subscribers.append(fn)

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._subscribers:
                    self._subscribers.remove(fn)

        return unsubscribe

    def publish(self, type: str, service: str | None = None, **data: Any) -> Event:
        event = Event(type=type, service=service, data=data)
        with self._lock:
            subscribers = list(self._subscribers)
        for fn in subscribers:
            fn(event)
        return event


class Recorder:
    """A subscriber that keeps events in memory (bounded), for tests and `devloop status`."""

    def __init__(self, limit: int = 10_000) -> None:
        self.events: list[Event] = []
        self._limit = limit
        self._cond = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._cond:
            self.events.append(event)
            if len(self.events) > self._limit:
                del self.events[: len(self.events) - self._limit]
            self._cond.notify_all()

    def of(self, type: str, service: str | None = None) -> list[Event]:
        with self._cond:
            return [e for e in self.events
                    if e.type == type and (service is None or e.service == service)]

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float) -> Event | None:
        """Block until an event (already seen or new) satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for e in self.events[seen:]:
                    if predicate(e):
                        return e
                seen = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
