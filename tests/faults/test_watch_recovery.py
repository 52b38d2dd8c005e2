"""When the watcher loses events or fails, devloop says so, rescans, and keeps reloading.

The kernel's event queue really overflows (the reader is held while more events than
fs.inotify.max_queued_events are written). Running out of watches is simulated at
`Kernel.add_watch`: lowering the machine-wide fs.inotify.max_user_watches would disturb every
other process watching files on this shared machine. The reader's failure is a real exception
raised in the reader thread. Everything else (files, inotify, Docker) is real.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options as ChromeOptions
from selenium.webdriver.chrome.service import Service as ChromeService

from devloop import events as ev
from devloop.inputs import filewatch_inotify as watch_inotify
from devloop.inputs.filewatch import INOTIFY_LIMIT_HELP, TreeWatcher
from tests.conftest import devloop_env
from tests.core.harness import running
from tests.services.frontend.conftest import CHROMEDRIVER, CHROMIUM, CHROMIUM_FLAGS

_SCHEMA = jsonschema.Draft202012Validator(json.loads(
    resources.files("devloop").joinpath("schemas/event-v1.json").read_text()))


def _project(make_project, backend: str = "inotify"):
    return make_project({"api": {"files": {"src/main.txt": "hello\n"}}},
                        top=f"quiet_period_ms: 150\nwatch_backend: {backend}\n")


def _image_output(docker_client, image: str, path: str = "") -> str:
    """What the image's `cat /app/*` prints, or the content of /app/`path`."""
    command = ["/bin/cat", f"/app/{path}"] if path else None
    return docker_client.containers.run(image, command, remove=True,
                                        network_mode="none").decode()


def test_queue_overflow_rescans_and_builds_the_files_whose_events_were_lost(
        make_project, docker_client, monkeypatch):
    # A real overflow of the kernel's queue: the reader is held (a machine under load, a
    # suspended laptop) while a tool writes more events than fs.inotify.max_queued_events
    root = _project(make_project)
    src = root / "services/api/src"
    held = threading.Event()
    released = threading.Event()
    real_read = watch_inotify.read_buffer

    def busy_reader(fd: int) -> bytes:
        if held.is_set():
            released.wait(60)
        return real_read(fd)

    monkeypatch.setattr(watch_inotify, "read_buffer", busy_reader)
    queue_limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    with running(root, docker_client) as h:
        mark = h.mark()
        held.set()
        fds = [os.open(src / name, os.O_WRONLY | os.O_CREAT) for name in ("a.log", "b.log")]
        try:
            for i in range(queue_limit + 1000):  # alternating files: the kernel merges none
                os.write(fds[i % 2], b".")
        finally:
            for fd in fds:
                os.close(fd)
        (src / "lost.txt").write_text("created while the queue overflowed\n")
        released.set()
        rescan = h.wait(ev.WATCH_RESCAN, after=mark, timeout=60)
        assert "overflow" in rescan.data["reason"] and rescan.data["services"] == ["api"]
        _SCHEMA.validate(rescan.to_json())
        h.settle(1.0)
        done = h.since(mark, ev.RELOAD_FINISHED, "api")[-1]
        assert done.data["ok"] is True
        assert "created while the queue overflowed" in _image_output(docker_client,
                                                                     done.data["image"])
        mark = h.mark()
        (src / "main.txt").write_text("positive control\n")
        h.wait(ev.RELOAD_FINISHED, "api", after=mark, ok=True, timeout=90)


def test_out_of_watches_mid_run_says_the_sysctl_once_and_polls_the_new_folder(
        make_project, docker_client, monkeypatch):
    root = _project(make_project)
    src = root / "services/api/src"
    with running(root, docker_client) as h:
        assert h.engine.watcher is not None and h.engine.watcher.mode == "inotify"

        def refuse(self, fd, path):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(watch_inotify.Kernel, "add_watch", refuse)
        mark = h.mark()
        (src / "new/deeper").mkdir(parents=True)
        (src / "new/deeper/a.txt").write_text("first\n")
        h.wait(ev.RELOAD_FINISHED, "api", after=mark, ok=True, timeout=90)
        h.settle(1.5)
        warnings = [e.data["message"] for e in h.since(mark, ev.WARNING)]
        assert warnings == [INOTIFY_LIMIT_HELP]
        assert h.engine.watcher.mode == "inotify+polling"
        # a folder that got no inotify watch is polled: its edits reload
        mark = h.mark()
        (src / "new/deeper/a.txt").write_text("second, seen by polling\n")
        done = h.wait(ev.RELOAD_FINISHED, "api", after=mark, ok=True, timeout=90)
        assert _image_output(docker_client, done.data["image"], "new/deeper/a.txt") == (
            "second, seen by polling\n")
        h.settle(1.5)
        (src / "newer").mkdir()  # more refusals: said once
        h.settle(1.5)
        assert [e.data["message"] for e in h.since(mark, ev.WARNING)] == []
        mark = h.mark()
        (src / "main.txt").write_text("positive control\n")
        h.wait(ev.RELOAD_FINISHED, "api", after=mark, ok=True, timeout=90)


@pytest.mark.parametrize("backend", ["inotify", "native", "polling"])
def test_reader_failure_restarts_the_watcher_rescans_and_says_so(
        make_project, docker_client, monkeypatch, backend):
    root = _project(make_project, backend)
    src = root / "services/api/src"
    failures = []
    real_changed = TreeWatcher.changed

    def fail_once(self, paths):
        if not failures:
            failures.append(paths)
            raise KeyError(7)  # what watchdog 6's read_events raised for a removed watch
        real_changed(self, paths)

    with running(root, docker_client) as h:
        monkeypatch.setattr(TreeWatcher, "changed", fail_once)
        mark = h.mark()
        (src / "main.txt").write_text("saved while the reader failed\n")
        rescan = h.wait(ev.WATCH_RESCAN, after=mark, timeout=30)
        assert "KeyError" in rescan.data["reason"] and "rescanned" in rescan.data["reason"]
        _SCHEMA.validate(rescan.to_json())
        assert failures  # the failure happened on that save's event
        # the save whose event killed the reader is not lost: the rescan finds it
        done = h.wait(ev.RELOAD_FINISHED, "api", after=mark, ok=True, timeout=90)
        assert _image_output(docker_client, done.data["image"]) == (
            "saved while the reader failed\n")
        assert h.engine.watcher is not None and h.engine.watcher.mode == backend
        h.settle(1.0)
        mark = h.mark()
        os.replace(_tmp(src, "positive control\n"), src / "main.txt")
        h.wait(ev.RELOAD_FINISHED, "api", after=mark, ok=True, timeout=90)


def _tmp(directory, text: str):
    path = directory / "main.txt.tmp4242"
    path.write_text(text)
    return path


def test_a_watcher_restart_is_told_on_the_console_and_the_dashboard(make_project, tmp_path):
    # A real restart a user causes: under the native observer, a folder with subfolders moved
    # into the tree (restored from the trash) rebuilds the observer and rescans. One real
    # `devloop watch` (console output, dashboard on): the person at the terminal and the one
    # looking at the page are both told; then an edit inside the moved folder reloads.
    root = _project(make_project, "native")
    outside = tmp_path / "Trash/restored/a/b"
    outside.mkdir(parents=True)
    (outside / "deep.txt").write_text("deep\n")
    proc = subprocess.Popen([sys.executable, "-m", "devloop.cli", "watch", "--no-deploy",
                             "--ui-port", "0"], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env=devloop_env(KUBECONFIG=str(tmp_path / "no-kubeconfig"),
                                            HOME=str(tmp_path)))
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True).start()
    try:
        dashboard = _line_after(lines, "dashboard: ", 120).split("dashboard: ", 1)[1].strip()
        _line_after(lines, "reload finished", 120)
        os.rename(tmp_path / "Trash/restored", root / "services/api/src/restored")
        told = _line_after(lines, "every service rescanned", 60)
        assert "arrived with subfolders" in told and "watching again (native)" in told
        base, token = dashboard.split("/?token=")
        request = urllib.request.Request(f"{base}/api/services",
                                         headers={"X-Devloop-Token": token})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=30) as resp:
            notices = json.loads(resp.read())["notices"]
        assert [n["type"] for n in notices] == ["watch.rescan"]
        assert notices[0]["text"] in told
        assert "arrived with subfolders" in _page_notice(dashboard, tmp_path)
        seen = len(lines)
        (root / "services/api/src/restored/a/b/deep.txt").write_text("positive control\n")
        _line_after(lines, "reload finished", 120, start=seen)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 130
    assert "Traceback" not in "".join(lines)


def _line_after(lines: list[str], text: str, timeout: float, start: int = 0) -> str:
    """The first console line from `start` on holding `text` (waits for it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = next((line for line in lines[start:] if text in line), None)
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no line with {text!r} in {timeout}s: {''.join(lines)[-2000:]}")


def _page_notice(address: str, tmp_path: Path) -> str:
    """What the dashboard page (headless Chromium) shows in its header's notice."""
    options = ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=ChromeService(executable_path=CHROMEDRIVER))
    try:
        driver.get(address)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = driver.find_element("id", "notice").text
            if text:
                return text
            time.sleep(0.1)
        return ""
    finally:
        driver.quit()
