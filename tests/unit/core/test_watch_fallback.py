"""When the kernel refuses inotify watches (ENOSPC), devloop says how to fix it and polls."""

from __future__ import annotations

import errno
import struct
import threading
import time

import pytest

from devloop.config.loader import ConfigError, load_config
from devloop.inputs import filewatch_inotify as watch_inotify
from devloop.inputs.filewatch import (
    INOTIFY_LIMIT_HELP,
    RestartPlan,
    TreeWatcher,
    WatchRoot,
    choose_backend,
    restart_plan,
)
from devloop.inputs.ignore import IgnoreRules
from devloop.inputs.watchroots import RootSet


def test_enospc_explains_the_sysctl_and_falls_back_to_polling(tmp_path, monkeypatch):
    # Exhausting the real, machine-wide fs.inotify.max_user_watches would break every other
    # process on the machine, so the kernel's refusal is simulated at the watch call.
    def refuse(self, fd, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(watch_inotify.Kernel, "add_watch", refuse)
    (tmp_path / "src").mkdir()
    (tmp_path / "node_modules/x").mkdir(parents=True)
    changes, warnings = [], []
    rules = IgnoreRules(tmp_path)
    watcher = TreeWatcher([WatchRoot(tmp_path, rules.prunes_dir)], changes.extend,
                          warnings.append, poll_interval=0.1)
    listed = []
    original = RootSet.listdir
    monkeypatch.setattr(RootSet, "listdir", lambda self, p: (listed.append(p),
                                                             original(self, p))[1])
    watcher.start()
    try:
        assert watcher.mode == "polling"
        assert warnings == [INOTIFY_LIMIT_HELP]
        assert "sysctl fs.inotify.max_user_watches" in warnings[0]
        time.sleep(0.3)
        (tmp_path / "src/a.py").write_text("x")
        deadline = time.monotonic() + 5
        while not any(p.name == "a.py" for p in changes) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(p.name == "a.py" for p in changes)
        # polling never lists ignored directories
        assert listed and not any("node_modules" in str(p) for p in listed)
    finally:
        watcher.stop()


def test_restart_plan_restarts_at_once_then_backs_off_then_settles_on_polling():
    assert restart_plan([100.0], 100.0) == RestartPlan(0.0, False)
    assert restart_plan([100.0, 101.0], 101.0) == RestartPlan(0.5, False)
    assert restart_plan([100.0, 101.0, 102.0], 102.0) == RestartPlan(1.0, True)
    # failures long ago do not count: a watcher that failed once an hour restarts at once
    assert restart_plan([0.0, 1000.0, 5000.0], 5000.0) == RestartPlan(0.0, False)


def test_auto_is_inotify_on_linux_and_native_elsewhere_and_never_needs_inotify():
    def yes():
        return True

    def no():
        return False

    assert choose_backend("auto", "linux", yes) == ("inotify", None)
    assert choose_backend("auto", "darwin", yes) == ("native", None)
    assert choose_backend("auto", "win32", no) == ("native", None)
    assert choose_backend("auto", "linux", no) == ("native", None)
    assert choose_backend("polling", "linux", yes) == ("polling", None)
    backend, warning = choose_backend("inotify", "darwin", no)
    assert backend == "native" and "watch_backend" in warning


class _Crashing:
    """A backend whose reader fails at once (a fake: the point is the supervisor's rule)."""

    def __init__(self, mode: str, runs: list[str]) -> None:
        self.mode = mode
        self.watch_count = 1
        self._runs = runs
        self._stop = threading.Event()

    def start(self) -> None:
        pass

    def run(self) -> str | None:
        self._runs.append(self.mode)
        if self.mode == "polling":
            self._stop.wait()
            return None
        raise KeyError(3)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        pass


def test_a_watcher_that_keeps_failing_falls_back_to_polling_and_says_it_once(tmp_path):
    runs, warnings, rescans = [], [], []
    watcher = TreeWatcher([WatchRoot(tmp_path, lambda rel: False)], lambda paths: None,
                          warnings.append, on_rescan=rescans.append, backend="native",
                          make_backend=lambda mode: _Crashing(mode, runs))
    watcher.start()
    try:
        deadline = time.monotonic() + 20
        while "polling" not in runs and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runs == ["native", "native", "native", "polling"]
        assert watcher.mode == "polling"
        assert len(warnings) == 1 and "polling every 1 s from now on" in warnings[0]
        assert len(rescans) == 3 and all("KeyError" in r for r in rescans)
    finally:
        watcher.stop()


class _CloseFailsOnce(_Crashing):
    closes = 0

    def close(self) -> None:
        _CloseFailsOnce.closes += 1
        if _CloseFailsOnce.closes == 1:
            raise OSError(9, "Bad file descriptor")


def test_a_restart_that_goes_wrong_is_said_and_the_watcher_still_ends_up_watching(tmp_path):
    runs, warnings, rescans = [], [], []
    watcher = TreeWatcher([WatchRoot(tmp_path, lambda rel: False)], lambda paths: None,
                          warnings.append, on_rescan=rescans.append, backend="native",
                          make_backend=lambda mode: _CloseFailsOnce(mode, runs))
    watcher.start()
    try:
        deadline = time.monotonic() + 20
        while "polling" not in runs and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runs[-1] == "polling" and watcher.mode == "polling"  # watching, not dead
        assert warnings[0] == ("restarting the file watcher went wrong (OSError: [Errno 9] Bad"
                               " file descriptor); trying again")
        assert rescans and all("rescanned" in r for r in rescans)
    finally:
        watcher.stop()


def test_events_of_removed_watches_and_overflow_are_handled_not_raised(tmp_path):
    # watchdog 6 raised KeyError for these and ended its reader; here they are noise, or a
    # rescan for the overflow
    (tmp_path / "gone").mkdir()
    changes, rescans = [], []
    watcher = TreeWatcher([WatchRoot(tmp_path, lambda rel: False)], changes.extend,
                          lambda text: None, on_rescan=rescans.append, backend="inotify")
    watcher.start()
    try:
        backend = watcher._backend
        backend.handle(struct.pack("iIII", 999, watch_inotify.IN_IGNORED, 0, 0)
                       + struct.pack("iIII", 998, watch_inotify.IN_MODIFY, 0, 0)
                       + struct.pack("iIII", -1, watch_inotify.IN_Q_OVERFLOW, 0, 0))
        assert changes == [] and len(rescans) == 1 and "overflow" in rescans[0]
        (tmp_path / "gone").rmdir()
        (tmp_path / "a.txt").write_text("x")
        deadline = time.monotonic() + 5
        while not any(p.name == "a.txt" for p in changes) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(p.name == "a.txt" for p in changes)  # still reading
    finally:
        watcher.stop()


def test_watch_backend_is_checked_and_windows_separators_in_paths_work(tmp_path):
    (tmp_path / "services/api").mkdir(parents=True)
    (tmp_path / "services/api/Dockerfile").write_text("FROM scratch\n")
    base = "version: 1\nservices:\n  api:\n    context: services\\api\n    image: api\n"
    config = tmp_path / "devloop.yaml"
    config.write_text(base + "watch_backend: polling\n")
    loaded = load_config(config)
    assert loaded.watch_backend == "polling"
    assert loaded.services["api"].context == tmp_path / "services/api"
    config.write_text(base + "watch_backend: fsevents\n")
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert [str(p) for p in err.value.problems] == [
        f"{config}:6: watch_backend: 'fsevents' is not one of auto, inotify, native,"
        " polling"]
