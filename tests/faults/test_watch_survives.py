"""File watching survives what users do to their trees, under every backend.

Each scenario is caused as a user would cause it (folder renames, moving to the trash, renames
that only change case, a git checkout and a git stash of thousands of files, a service folder
deleted and restored) while a real engine watches with real watchdog/inotify and builds with the
real Docker Engine (build only: no cluster is needed to prove a save is noticed). Each ends with
an edit that must reload: the positive control that the watcher is alive. `native` on Linux is
watchdog's recursive inotify observer; on macOS and Windows it would be FSEvents /
ReadDirectoryChangesW (not run here; tests/faults/test_watch_platforms.py runs devloop with
inotify's import failing as it does there).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from devloop import events as ev
from devloop.config.loader import load_config
from devloop.inputs.digest import ServiceDigest, image_tag
from tests.core.harness import Running, running

BACKENDS = ["inotify", "native", "polling"]


def _project(make_project, backend: str, quiet_ms: int = 150) -> Path:
    return make_project({"api": {"files": {"src/main.txt": "hello\n",
                                           "src/pkg/a/b/deep.txt": "deep\n",
                                           "src/pkg/a/side.txt": "side\n"}}},
                        top=f"quiet_period_ms: {quiet_ms}\nquiet_period_cap_ms: 20000\n"
                            f"watch_backend: {backend}\n")


def _reloads(h: Running, path: Path, text: str, timeout: float = 90) -> None:
    """Write `path` and wait for the reload it must cause (the positive control)."""
    mark = h.mark()
    path.write_text(text)
    h.wait(ev.RELOAD_FINISHED, "api", after=mark, timeout=timeout, ok=True)
    h.settle(0.5)


def _expected_tag(root: Path) -> str:
    """The tag a fresh, full hash of the tree gives: what the last build must have used."""
    svc = load_config(root / "devloop.yaml").services["api"]
    digest = ServiceDigest(svc)
    digest.scan()
    return image_tag(svc.image, digest.digest())


def _last_image(h: Running) -> str:
    """The image of the last reload (built, or found already built)."""
    return h.recorder.of(ev.RELOAD_FINISHED, "api")[-1].data["image"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_folder_renamed_within_moved_out_to_trash_and_back_in(make_project, docker_client,
                                                              backend, tmp_path):
    root = _project(make_project, backend)
    src = root / "services/api/src"
    trash = tmp_path / "Trash"
    trash.mkdir()
    with running(root, docker_client) as h:
        assert h.engine.watcher is not None and h.engine.watcher.mode == backend
        # within: a folder with subfolders renamed; its subfolders are still watched
        mark = h.mark()
        os.rename(src / "pkg", src / "lib")
        h.wait(ev.RELOAD_FINISHED, "api", after=mark, ok=True)
        h.settle(0.5)
        _reloads(h, src / "lib/a/b/deep.txt", "deep, renamed\n")
        # out: deleted in an editor = moved to the trash
        mark = h.mark()
        os.rename(src / "lib", trash / "lib")
        h.wait(ev.RELOAD_FINISHED, "api", after=mark, ok=True)
        h.settle(0.5)
        assert _last_image(h) == _expected_tag(root)
        mark = h.mark()
        (trash / "lib/a/b/deep.txt").write_text("edited in the trash\n")
        h.settle(1.5)
        assert h.since(mark, ev.RELOAD_STARTED) == []  # not an input any more
        # in: restored from the trash under a new name, edits inside it reload
        mark = h.mark()
        os.rename(trash / "lib", src / "restored")
        h.wait(ev.RELOAD_FINISHED, "api", after=mark, ok=True)
        h.settle(0.5)
        _reloads(h, src / "restored/a/b/deep.txt", "deep, restored\n")
        assert _last_image(h) == _expected_tag(root)
        # renames that only change case (one name on macOS and Windows, two here)
        mark = h.mark()
        os.rename(src / "main.txt", src / "Main.txt")
        os.rename(src / "restored", src / "Restored")
        h.wait(ev.RELOAD_FINISHED, "api", after=mark, ok=True)
        h.settle(0.5)
        assert _last_image(h) == _expected_tag(root)
        _reloads(h, src / "Restored/a/b/deep.txt", "deep, case renamed\n")
        _reloads(h, src / "Main.txt", "positive control\n")
        assert not h.recorder.of(ev.ERROR)


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args],
                   cwd=cwd, check=True, capture_output=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_git_checkout_and_stash_of_thousands_of_files_build_exactly_that_tree(
        make_project, docker_client, backend):
    root = _project(make_project, backend, quiet_ms=400)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "main")
    _git(root, "checkout", "-qb", "feature")
    src = root / "services/api/src"
    shutil.rmtree(src / "pkg")  # a folder with subfolders goes away on the branch
    for i in range(2500):
        d = src / f"mod{i % 50}" / f"sub{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.txt").write_text(f"feature {i}\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "feature")
    _git(root, "checkout", "-q", "main")
    with running(root, docker_client) as h:
        # switching branches, then thousands of files taken from the other branch and stashed
        # away and back: each step changes every one of them at once
        steps = [("checkout", "-q", "feature"), ("checkout", "-q", "main"),
                 ("checkout", "feature", "--", "services/api/src"), ("stash", "-q"),
                 ("stash", "pop", "-q")]
        for args in steps:
            mark = h.mark()
            _git(root, *args)
            h.wait(ev.RELOAD_FINISHED, "api", after=mark, ok=True, timeout=120)
            h.settle(1.5)
            assert _last_image(h) == _expected_tag(root), args
        assert (src / "mod3/sub3/f3.txt").read_text() == "feature 3\n"  # popped
        # the directories the stash pop created are watched: an edit deep inside reloads
        _reloads(h, src / "mod7/sub0/f7.txt", "edited after checkout\n")
        _reloads(h, src / "main.txt", "positive control\n")
        assert not h.recorder.of(ev.ERROR)


@pytest.mark.parametrize("backend", BACKENDS)
def test_service_folder_removed_and_restored_is_watched_again(make_project, docker_client,
                                                              backend, tmp_path):
    root = _project(make_project, backend)
    ctx = root / "services/api"
    saved = tmp_path / "saved-api"
    shutil.copytree(ctx, saved, symlinks=True)
    with running(root, docker_client) as h:
        shutil.rmtree(ctx)
        h.settle(1.5)
        mark = h.mark()
        shutil.copytree(saved, ctx, symlinks=True)  # `git checkout services/api`, a restore
        (ctx / "src/main.txt").write_text("restored\n")
        h.wait(ev.RELOAD_FINISHED, "api", after=mark, ok=True, timeout=90)
        h.settle(1.0)
        assert _last_image(h) == _expected_tag(root)
        _reloads(h, ctx / "src/pkg/a/b/deep.txt", "edited after the restore\n")
        _reloads(h, ctx / "src/main.txt", "positive control\n")
