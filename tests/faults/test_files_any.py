"""Any file a tree can hold is built, skipped or named in one line; never "internal error".

A real engine watches and builds with the real Docker Engine (no cluster needed). Tests run as
root here, where no file is unreadable; that one case simulates the refusal at os.open.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from devloop import events as ev
from devloop.inputs import digest as digest_mod
from tests.conftest import devloop_env
from tests.core.harness import running
from tests.watchproc import Watch

LATIN1_NAME = b"caf\xe9.txt"  # a file name that is not UTF-8 (an old archive, a Windows share)


def _project(make_project) -> Path:
    return make_project({"api": {"files": {"src/main.txt": "hello\n"}}},
                        top="quiet_period_ms: 150\nwatch_backend: inotify\n")


def _sh(docker_client, image: str, script: str) -> bytes:
    return docker_client.containers.run(image, ["/bin/sh", "-c", script], remove=True,
                                        network_mode="none")


def test_hard_links_non_utf8_names_fifos_and_sockets_build_and_reload(make_project,
                                                                      docker_client, tmp_path):
    root = _project(make_project)
    src = root / "services/api/src"
    os.link(src / "main.txt", src / "linked.txt")  # a hard link: two names, one inode
    with open(os.path.join(os.fsencode(src), LATIN1_NAME), "wb") as f:
        f.write(b"latin-1 name\n")
    os.mkfifo(src / "pipe")  # opening it would block the digest forever
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "dev.sock"))  # a dev server's socket
    try:
        with running(root, docker_client) as h:
            first = h.recorder.of(ev.RELOAD_FINISHED, "api")[-1]
            assert first.data["ok"] is True, h.recorder.of(ev.BUILD_FAILED)
            out = _sh(docker_client, first.data["image"],
                      "cat /app/main.txt /app/linked.txt /app/caf*; ls /app | wc -l")
            assert out == b"hello\nhello\nlatin-1 name\n3\n"  # FIFO and socket skipped
            # the hard-linked file changes under both names: one reload, both updated
            mark = h.mark()
            (src / "linked.txt").write_text("changed through the link\n")
            done = h.wait(ev.RELOAD_FINISHED, "api", after=mark, ok=True, timeout=90)
            assert _sh(docker_client, done.data["image"], "cat /app/main.txt") == (
                b"changed through the link\n")
            h.settle(0.5)
            # the non-UTF-8 file is an input like any other
            mark = h.mark()
            with open(os.path.join(os.fsencode(src), LATIN1_NAME), "wb") as f:
                f.write(b"edited\n")
            done = h.wait(ev.RELOAD_FINISHED, "api", after=mark, ok=True, timeout=90)
            assert _sh(docker_client, done.data["image"], "cat /app/caf*") == b"edited\n"
            detected = h.since(mark, ev.CHANGE_DETECTED, "api")[0]
            assert detected.data["paths"] == ["services/api/src/caf\udce9.txt"]
            assert not h.recorder.of(ev.ERROR)
    finally:
        sock.close()


def test_an_unreadable_file_is_named_in_one_line_and_the_fix_reloads(make_project,
                                                                     docker_client, monkeypatch):
    root = _project(make_project)
    src = root / "services/api/src"
    secret = src / "secret.txt"
    secret.write_text("for root only\n")
    real_open = digest_mod.os.open
    locked = {str(secret)}

    def as_a_user(path, flags, *args):
        # tests run as root, who may read anything: the refusal a user gets is simulated
        if os.fspath(path) in locked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(digest_mod.os, "open", as_a_user)
    with running(root, docker_client) as h:
        errors = [e.data["message"] for e in h.recorder.of(ev.ERROR, "api")]
        assert len(errors) == 1 and "\n" not in errors[0]
        assert str(secret) in errors[0] and "permission denied" in errors[0]
        assert "ignore:" in errors[0] and "internal error" not in errors[0]
        assert h.recorder.of(ev.BUILD_STARTED, "api") == []  # never an image without it
        mark = h.mark()
        locked.clear()
        os.chmod(secret, 0o644)  # the user fixes it
        done = h.wait(ev.RELOAD_FINISHED, "api", after=mark, ok=True, timeout=90)
        assert b"for root only" in _sh(docker_client, done.data["image"], "cat /app/*")


def test_devloop_watch_shows_a_non_utf8_name_escaped_in_json_and_console(make_project,
                                                                         tmp_path):
    root = _project(make_project)
    name = os.path.join(os.fsencode(root / "services/api/src"), LATIN1_NAME)
    watch = Watch(root, tmp_path / "no-kubeconfig", args=("--no-deploy", "--no-ui"))
    try:
        watch.wait("reload.finished", timeout=120, ok=True)
        mark = watch.mark()
        with open(name, "wb") as f:
            f.write(b"saved\n")
        detected = watch.wait("change.detected", after=mark, timeout=60)
        assert detected["paths"] == ["services/api/src/caf\udce9.txt"]  # JSON's own escape
        watch.wait("reload.finished", after=mark, timeout=120, ok=True)
    finally:
        assert watch.stop() == 130
    # the console: the same name, escaped, in the change line; no traceback
    env = devloop_env(KUBECONFIG=str(tmp_path / "no-kubeconfig"), HOME=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "devloop.cli", "watch", "--no-deploy",
                             "--no-ui"], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    lines: list[bytes] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    try:
        _wait_for(lines, b"watching", 120)
        time.sleep(0.5)
        with open(name, "wb") as f:
            f.write(b"saved again\n")
        _wait_for(lines, b"reload finished", 120, after=b"caf\\udce9.txt")
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 130
    output = b"".join(lines)
    assert b"Traceback" not in output and b"internal error" not in output


def _wait_for(lines: list[bytes], text: bytes, timeout: float, after: bytes = b"") -> None:
    """Until a line holds `text` (after a line holding `after`, when given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = b"".join(lines)
        start = seen.find(after) if after else 0
        if start >= 0 and text in seen[start:]:
            return
        time.sleep(0.1)
    raise AssertionError(f"no {text!r} after {after!r} in {timeout}s: {b''.join(lines)[-1500:]!r}")
