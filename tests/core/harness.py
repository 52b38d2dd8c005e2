"""Run a real devloop engine (real watchdog, real Docker) in-process for tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker

from devloop import events as ev
from devloop.config.loader import load_config
from devloop.image.build import Builder
from devloop.image.buildslots import BuildSlots, default_limit
from devloop.loop.engine import Engine
from devloop.loop.pipeline import Pipeline


@dataclass
class Running:
    engine: Engine
    recorder: ev.Recorder
    bus: ev.EventBus

    def wait(self, type: str, service: str | None = None, timeout: float = 60,
             after: int = 0, **match: object) -> ev.Event:
        """Wait for the first event of `type` (for `service`) beyond index `after`."""
        def ok(e: ev.Event) -> bool:
            return (e.type == type and (service is None or e.service == service)
                    and all(e.data.get(k) == v for k, v in match.items()))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.recorder.events[after:]:
                if ok(e):
                    return e
            time.sleep(0.02)
        # what happened instead, without the build's own output (it drowns the reason)
        seen = [(e.type, e.service, e.data.get("reason") or e.data.get("message"))
                for e in self.recorder.events[after:] if e.type != ev.BUILD_OUTPUT]
        raise AssertionError(f"no {type} event for {service} within {timeout}s; saw {seen[-30:]}")

    def mark(self) -> int:
        return len(self.recorder.events)

    def since(self, mark: int, type: str, service: str | None = None) -> list[ev.Event]:
        return [e for e in self.recorder.events[mark:]
                if e.type == type and (service is None or e.service == service)]

    def settle(self, seconds: float = 1.0) -> None:
        """Wait until no reload is running and `seconds` passed without a new event."""
        deadline = time.monotonic() + 60
        last = -1
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            n = len(self.recorder.events)
            busy = any(s.busy or s.pending for s in self.engine.states.values())
            if n != last or busy:
                last, quiet_since = n, time.monotonic()
            elif time.monotonic() - quiet_since >= seconds:
                return
            time.sleep(0.05)
        raise AssertionError("engine did not settle")


@contextmanager
def running(root: Path, client: docker.DockerClient, deployer=None) -> Iterator[Running]:
    config = load_config(root / "devloop.yaml")
    bus = ev.EventBus()
    recorder = ev.Recorder(limit=1_000_000)
    bus.subscribe(recorder)
    pipeline = Pipeline(bus, Builder(client, keep_images=config.keep_images), deployer,
                        root=config.root,
                        slots=BuildSlots(config.max_parallel or default_limit()))
    engine = Engine(config, bus, pipeline)
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    handle = Running(engine, recorder, bus)
    try:
        handle.wait(ev.WATCH_READY, timeout=30)
        handle.settle()
        yield handle
    finally:
        engine.stop("test finished")
        thread.join(timeout=10)
        assert not thread.is_alive(), "engine did not stop"
