"""A Docker Engine that is down, or dies mid-build, is reported in one line and retried
(issue 11, item 11).

A second, private dockerd (its own socket, data and exec roots under the test's tmp dir, started
with scripts/start-dockerd) is killed and restarted here; the machine's shared engine is never
touched. `watch` runs in-process with real builds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devloop import events as ev
from devloop import exitcodes
from devloop.app import App
from devloop.config.loader import load_config
from devloop.redact import Redactor
from devloop.vocab import DOCKER_UNREACHABLE
from tests.conftest import REPO, busybox_context


class PrivateEngine:
    """A dockerd of this test's own; start() again after kill() reuses its data."""

    def __init__(self) -> None:
        # short path: unix socket paths are limited to 107 bytes
        self.root = Path(tempfile.mkdtemp(prefix="dl-eng-", dir="/tmp"))
        self.sock = self.root / "docker.sock"
        self.pid: int | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    def start(self) -> None:
        env = {**os.environ, "DEVLOOP_DOCKER_SOCK": str(self.sock),
               "DEVLOOP_DOCKER_ROOT": str(self.root), "DEVLOOP_DOCKER_LOG":
               str(self.root / "dockerd.log")}
        done = subprocess.run([str(REPO / "scripts/start-dockerd")], env=env, text=True,
                              capture_output=True, timeout=60)
        if done.returncode != 0 or not done.stdout.strip():
            pytest.fail(f"cannot start a private dockerd: {done.stderr.strip()}")
        self.pid = int(done.stdout.strip())

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill our dockerd (SIGKILL: the engine is lost, no goodbye) and wait for it."""
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                break
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, os.WNOHANG)
            time.sleep(0.05)
        self.pid = None

    def close(self) -> None:
        self.kill(signal.SIGTERM)
        # what a SIGKILLed dockerd leaves behind (its containerd, a build container's shim):
        # processes of this engine only, found by its private root in their command line
        for proc in Path("/proc").iterdir():
            with contextlib.suppress(OSError, ValueError):
                if str(self.root) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    os.kill(int(proc.name), signal.SIGKILL)
        subprocess.run(["umount", "-R", str(self.root / "data")], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def engine() -> Iterator[PrivateEngine]:
    eng = PrivateEngine()
    yield eng
    eng.close()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: PrivateEngine) -> Path:
    """One busybox service whose build prints `building` and then takes a few seconds."""
    root = tmp_path / "repo"
    busybox_context(root / "services/slow", {"src/main.txt": "v1\n"},
                    extra='RUN ["/bin/sh","-c","echo building; sleep 4"]\n')
    (root / "devloop.yaml").write_text(
        "version: 1\nnamespace: lumina\nquiet_period_ms: 50\nservices:\n"
        "  slow:\n    context: services/slow\n    image: dl-lost-slow\n")
    monkeypatch.setenv("DOCKER_HOST", engine.host)
    return root


class Watching:
    def __init__(self, root: Path) -> None:
        self.bus = ev.EventBus()
        self.events = ev.Recorder(limit=100_000)
        self.bus.subscribe(self.events)
        self.app = App(load_config(root / "devloop.yaml"), self.bus, Redactor(), deploy=False)
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.app.watch()

    def wait(self, type: str, after: int = 0, timeout: float = 120, **match: object
             ) -> ev.Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events.events[after:]:
                if e.type == type and all(e.data.get(k) == v for k, v in match.items()):
                    return e
            assert self.thread.is_alive(), f"watch ended with {self.code}"
            time.sleep(0.05)
        raise AssertionError(f"no {type} {match} in {timeout}s; saw "
                             f"{[(e.type, e.data.get('message')) for e in self.events.events]}")

    def stop(self) -> None:
        self.app.interrupt()
        self.thread.join(30)


def test_sync_with_the_engine_down_exits_1_naming_the_socket(project: Path,
                                                             engine: PrivateEngine) -> None:
    bus = ev.EventBus()
    events = ev.Recorder()
    bus.subscribe(events)
    app = App(load_config(project / "devloop.yaml"), bus, Redactor(), deploy=False)
    assert app.sync() == exitcodes.BUILD_FAILED
    [error] = [e for e in events.events if e.type == ev.ERROR]
    assert str(engine.sock) in error.data["message"] and "\n" not in error.data["message"]
    assert "docker info" in error.data["message"]


def test_watch_started_before_the_engine_builds_once_it_answers(project: Path,
                                                                engine: PrivateEngine) -> None:
    watch = Watching(project)
    try:
        started = watch.wait(ev.ERROR, timeout=60)
        assert str(engine.sock) in started.data["message"]
        assert "builds start once it answers" in started.data["message"]
        watch.wait(ev.WATCH_READY, timeout=60)  # watch runs without an engine
        engine.start()  # nobody saves anything: devloop retries by itself
        watch.wait(ev.BUILD_FINISHED, timeout=180)
        watch.wait(ev.RELOAD_FINISHED, outcome="ok", timeout=60)
    finally:
        watch.stop()


@pytest.mark.parametrize("builder", ["legacy", "buildkit"])
def test_engine_killed_mid_build_is_one_line_and_the_build_is_retried_when_it_is_back(
        project: Path, engine: PrivateEngine, builder: str) -> None:
    config = project / "devloop.yaml"
    config.write_text(config.read_text().replace("quiet_period_ms: 50\n",
                                                 f"quiet_period_ms: 50\nbuilder: {builder}\n"))
    engine.start()
    watch = Watching(project)
    try:
        watch.wait(ev.BUILDER_SELECTED, builder=builder)  # buildkit: /usr/bin/docker here
        # the RUN step is running: `building` (legacy) or `#5 0.21 building` (BuildKit)
        deadline = time.monotonic() + 180
        while not any(e.type == ev.BUILD_OUTPUT and e.data["line"].split()[-1:] == ["building"]
                      for e in watch.events.events):
            assert time.monotonic() < deadline, "the RUN step never printed `building`"
            time.sleep(0.05)
        engine.kill()
        failed = watch.wait(ev.RELOAD_FINISHED, outcome=DOCKER_UNREACHABLE, timeout=60)
        reason = failed.data["reason"]
        assert "\n" not in reason and "internal error" not in reason
        assert reason.startswith(f"lost the Docker Engine at {engine.host} (connection cut"), \
            reason
        assert "during the build of slow; nothing was deployed" in reason
        assert not [e for e in watch.events.events if e.type == ev.BUILD_FAILED]
        mark = len(watch.events.events)
        engine.start()
        watch.wait(ev.BUILD_FINISHED, after=mark, timeout=180)
        watch.wait(ev.RELOAD_FINISHED, after=mark, outcome="ok", timeout=60)
    finally:
        watch.stop()
