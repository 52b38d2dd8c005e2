"""The disk full while the build context is written: one line, and retried by itself.

What is real and what is simulated: the full disk is real, a 256 KiB tmpfs that TMPDIR points
at, filled up, so the writes fail with the kernel's ENOSPC. The seam is only the size above
which a build context spills from memory to TMPDIR (64 MB): lowered to 1 byte here so a small
context reaches the disk without writing 64 MB on a shared test machine. The engine runs
in-process (tests/core/harness.py) with real Docker builds.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devloop import events as ev
from devloop.image import build
from tests.core.harness import running


@pytest.fixture
def full_tmp(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs, filled up (mounting one needs root, as in CI and the dev container)."""
    mnt = tmp_path / "small-tmp"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "devloop-full", str(mnt)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up (needs root): {mounted.stderr.strip()}")
    try:
        # dd stops (and fails) when the tmpfs is full: that is the point
        subprocess.run(["dd", "if=/dev/zero", f"of={mnt / 'filler'}", "bs=4k"],
                       capture_output=True)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_while_writing_the_context_is_one_line_and_retried_until_it_builds(
        make_project, docker_client, full_tmp, monkeypatch):
    root = make_project({"api": {}})
    monkeypatch.setattr(build, "SPOOL_BYTES", 1)  # the seam (see the module docstring)
    monkeypatch.setattr(tempfile, "tempdir", str(full_tmp))
    with running(root, docker_client) as h:
        failed = h.wait(ev.RELOAD_FINISHED, "api", timeout=60)
        assert failed.data["outcome"] == "disk_full", failed.data
        reason = failed.data["reason"]
        assert "\n" not in reason and "internal error" not in reason
        assert str(full_tmp) in reason and "TMPDIR" in reason, reason
        errors = [e.data["message"] for e in h.recorder.events
                  if e.type == ev.ERROR and e.service == "api"]
        assert errors and all("No space left" in m and "\n" not in m for m in errors), errors
        # the person makes room (the context alone needs more than 256 KiB); no save: the
        # next retry builds
        mark = h.mark()
        (full_tmp / "filler").unlink()
        subprocess.run(["mount", "-o", "remount,size=64m", str(full_tmp)], check=True)
        done = h.wait(ev.RELOAD_FINISHED, "api", after=mark, timeout=90, outcome="ok")
        tag = done.data["image"]
    out = docker_client.containers.run(tag, remove=True, network_mode="none")
    assert out == b"hello from api\n"  # the image holds the sources: nothing lost
