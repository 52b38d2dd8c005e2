"""The watch loop end to end on real trees with a real Docker Engine (no cluster: build only)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

from devloop import events as ev
from tests.conftest import scratch_dockerfile
from tests.core.harness import running


def _builds(h, mark, service=None):
    return [e for e in h.since(mark, ev.BUILD_STARTED, service)]


def test_first_run_builds_every_service_then_only_the_changed_one(make_project, docker_client):
    root = make_project({"api": {}, "web": {}})
    with running(root, docker_client) as h:
        assert {e.service for e in h.recorder.of(ev.BUILD_STARTED)} == {"api", "web"}
        mark = h.mark()
        (root / "services/api/src/main.txt").write_text("changed\n")
        h.wait(ev.RELOAD_FINISHED, "api", after=mark)
        h.settle()
        assert [e.service for e in _builds(h, mark)] == ["api"]
        tag = h.since(mark, ev.BUILD_FINISHED, "api")[0].data["image"]
        out = docker_client.containers.run(tag, remove=True, network_mode="none")
        assert out == b"changed\n"


def test_atomic_save_move_delete_and_new_directory_each_rebuild(make_project, docker_client):
    # the temp file and the rename that replaces it are one save; on a loaded machine the
    # watcher thread can pause longer than the default 100 ms quiet period between reading the
    # two (seen once: a build of the tree with the temp file, then a second), so the quiet
    # period here covers such a pause and the test is about what is built, not the scheduler
    root = make_project({"api": {}}, top="quiet_period_ms: 500\n")
    src = root / "services/api/src"
    with running(root, docker_client) as h:
        # atomic save: write a temp file, rename it over the original
        mark = h.mark()
        (src / "main.txt.tmp123").write_text("atomic\n")
        os.replace(src / "main.txt.tmp123", src / "main.txt")
        h.wait(ev.RELOAD_FINISHED, "api", after=mark)
        h.settle()
        assert len(_builds(h, mark)) == 1
        # a new directory with a file inside, created in one go
        mark = h.mark()
        (src / "pkg/sub").mkdir(parents=True)
        (src / "pkg/sub/new.txt").write_text("new\n")
        h.wait(ev.RELOAD_FINISHED, "api", after=mark)
        h.settle()
        # the new directory is watched: a later edit inside it triggers again
        mark = h.mark()
        (src / "pkg/sub/new.txt").write_text("newer\n")
        h.wait(ev.RELOAD_FINISHED, "api", after=mark)
        h.settle()
        # move and delete
        mark = h.mark()
        os.rename(src / "pkg/sub/new.txt", src / "moved.txt")
        h.wait(ev.RELOAD_FINISHED, "api", after=mark)
        h.settle()
        mark = h.mark()
        (src / "moved.txt").unlink()
        h.wait(ev.RELOAD_FINISHED, "api", after=mark)
        h.settle()
        # the tree is the first save's again: built anew, or that image reused when it is
        # still there (pruning spares an image any container of the engine uses, and the
        # legacy builder's cache can hand this tree another test's image): what runs counts
        final = h.since(mark, ev.RELOAD_FINISHED, "api")[-1].data["image"]
        out = docker_client.containers.run(final, ["/bin/sh", "-c", "ls -R /app"], remove=True,
                                           network_mode="none").decode()
        # empty directories are not inputs (like git, devloop tracks files)
        assert "moved.txt" not in out and "main.txt" in out


def test_burst_of_2000_files_gives_one_build_per_affected_service(make_project, docker_client):
    # This Python loop writes slower than git does, and on a loaded CI machine it can pause
    # longer than the default 100 ms quiet period between two files; the quiet period here
    # covers such pauses so the test is about coalescing, not about the writer's speed.
    root = make_project({"api": {}, "web": {}, "idle": {}},
                        top="quiet_period_ms: 400\nquiet_period_cap_ms: 15000\n")
    with running(root, docker_client) as h:
        mark = h.mark()
        # like a git checkout: 1,000 files in each of two services, in nested directories
        for svc in ("api", "web"):
            for i in range(1000):
                d = root / "services" / svc / "src" / f"d{i % 20}"
                d.mkdir(exist_ok=True)
                (d / f"f{i}.txt").write_text(f"{svc} {i}\n")
        h.wait(ev.RELOAD_FINISHED, "api", after=mark)
        h.wait(ev.RELOAD_FINISHED, "web", after=mark)
        h.settle(1.5)
        assert sorted(e.service for e in _builds(h, mark)) == ["api", "web"]
        detected = h.since(mark, ev.CHANGE_DETECTED, "api")[0]
        assert detected.data["more"] > 0  # one change set listing many paths


def test_change_during_build_queues_exactly_one_follow_up(make_project, docker_client):
    # the slow step comes after the sources, so no build of new content can skip it; content
    # new to the engine too (an earlier run's cache made every build instant: 3 reloads)
    slow = scratch_dockerfile("src/", extra='COPY src/ /slow/\n'
                              'RUN ["/bin/sleep","2"]\n')
    root = make_project({"api": {"dockerfile": slow}})
    src = root / "services/api/src/main.txt"
    nonce = uuid.uuid4().hex
    with running(root, docker_client) as h:
        mark = h.mark()
        src.write_text(f"one {nonce}\n")
        h.wait(ev.BUILD_STARTED, "api", after=mark)
        for i in range(5):  # five saves while the build runs
            src.write_text(f"during {i} {nonce}\n")
            time.sleep(0.15)
        h.wait(ev.RELOAD_FINISHED, "api", after=mark)
        h.settle(1.5)
        # one reload and exactly one follow-up for the five saves. A build whose context changed
        # while it was sent is restarted inside its reload (under load that adds a build, not a
        # reload), and if that restart already built the last save, the follow-up is skipped.
        runs = h.since(mark, ev.RELOAD_STARTED, "api") + h.since(mark, ev.BUILD_SKIPPED, "api")
        assert len(runs) == 2, [(e.type, e.data) for e in runs]
        last = h.since(mark, ev.BUILD_FINISHED, "api")[-1].data["image"]
        out = docker_client.containers.run(last, remove=True, network_mode="none")
        assert out == f"during 4 {nonce}\n".encode()


def test_failing_build_names_its_step_and_line_and_the_next_good_save_recovers(
        make_project, docker_client):
    root = make_project({"api": {}})
    dockerfile = root / "services/api/Dockerfile"
    good = dockerfile.read_text()
    with running(root, docker_client) as h:
        mark = h.mark()
        bad = good.replace("COPY src/ /app/\n", 'COPY src/ /app/\nRUN ["/bin/sh","-c",'
                           '"echo compiling; echo boom >&2; exit 3"]\n')
        dockerfile.write_text(bad)
        failed = h.wait(ev.BUILD_FAILED, "api", after=mark)
        assert "step 5" in failed.data["error"] and "exit" in failed.data["error"].lower()
        assert any("boom" in line for line in failed.data["last_lines"])
        problem = h.wait(ev.PROBLEM, "api", after=mark)
        assert problem.data["file"] == "services/api/Dockerfile"
        assert problem.data["line"] == bad.splitlines().index(
            next(x for x in bad.splitlines() if "boom" in x)) + 1
        finished = h.wait(ev.RELOAD_FINISHED, "api", after=mark)
        assert finished.data["ok"] is False
        # the daemon keeps running; the next good save recovers
        mark = h.mark()
        dockerfile.write_text(good)
        (root / "services/api/src/main.txt").write_text("fixed\n")
        ok = h.wait(ev.RELOAD_FINISHED, "api", after=mark)
        assert ok.data["ok"] is True


def test_no_inotify_watch_inside_ignored_directories(make_project, docker_client):
    root = make_project({"web": {"dockerignore": "coverage\n"}})
    web = root / "services/web"
    for i in range(30):
        (web / "node_modules" / f"pkg{i}" / "lib").mkdir(parents=True)
    (web / ".next/cache").mkdir(parents=True)
    (web / "coverage/html").mkdir(parents=True)
    (web / "src/components").mkdir(parents=True)
    with running(root, docker_client) as h:
        watched = _inotify_watched_inodes()
        ignored = {p.stat().st_ino for base in ("node_modules", ".next", "coverage")
                   for p in [web / base, *(web / base).rglob("*")] if p.is_dir()}
        assert (web / "src/components").stat().st_ino in watched
        assert (web / "src").stat().st_ino in watched
        assert not watched & ignored
        # a directory created later under node_modules gets no watch either
        (web / "node_modules/late/deep").mkdir(parents=True)
        h.settle(0.5)
        assert (web / "node_modules/late/deep").stat().st_ino not in _inotify_watched_inodes()
        assert h.engine.watcher is not None and h.engine.watcher.mode == "inotify"


def _inotify_watched_inodes() -> set[int]:
    """Inodes of every inotify watch this process holds, read from /proc (what the kernel
    counts against fs.inotify.max_user_watches)."""
    inodes = set()
    fd_dir = Path("/proc/self/fd")
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(fd_dir / fd) != "anon_inode:inotify":
                continue
            info = (Path("/proc/self/fdinfo") / fd).read_text()
        except OSError:
            continue
        for line in info.splitlines():
            if line.startswith("inotify wd:"):
                fields = dict(part.split(":", 1) for part in line.split()[1:])
                inodes.add(int(fields["ino"], 16))
    return inodes


def test_git_writes_build_nothing_and_a_checkout_rewrite_is_one_build(make_project,
                                                                      docker_client):
    # the quiet period covers a loaded machine pausing between the files git writes, so the
    # test is about .git being ignored and a checkout coalescing, not about git's speed
    files = {"src/a.txt": "a1\n", "src/b.txt": "b1\n", "src/main.txt": "main1\n"}
    root = make_project({"api": {"files": files}}, top="quiet_period_ms: 300\n")

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(root), "-c", "user.email=t@e", "-c", "user.name=t",
                        *args], check=True)

    # a branch that rewrites two files and deletes one, prepared before devloop starts
    subprocess.run(["git", "-c", "init.defaultBranch=main", "init", "-q", str(root)], check=True)
    git("add", "-A")
    git("commit", "-qm", "v1")
    git("checkout", "-qb", "next")
    (root / "services/api/src/a.txt").write_text("a2\n")
    (root / "services/api/src/main.txt").write_text("main2\n")
    (root / "services/api/src/b.txt").unlink()
    git("commit", "-qam", "v2")
    git("checkout", "-q", "main")
    with running(root, docker_client) as h:
        mark = h.mark()
        # git writes only its own files under .git: never a build input nor a watch
        git("commit", "-q", "--allow-empty", "-m", "empty")
        git("tag", "v1")
        git("gc", "-q")
        h.settle(1.0)
        assert h.since(mark, ev.BUILD_STARTED) == []
        # positive control: a checkout rewriting several files is seen, as exactly one build
        mark = h.mark()
        git("checkout", "-q", "next")
        h.wait(ev.RELOAD_FINISHED, "api", after=mark, ok=True)
        h.settle(1.5)
        assert [e.service for e in _builds(h, mark)] == ["api"]
        tag = h.since(mark, ev.BUILD_FINISHED, "api")[0].data["image"]
        out = docker_client.containers.run(tag, remove=True, network_mode="none")
        assert out == b"a2\nmain2\n"


def test_config_is_reread_on_change_and_an_invalid_one_is_not_used(make_project, docker_client):
    root = make_project({"api": {}})
    config = root / "devloop.yaml"
    good = config.read_text()
    with running(root, docker_client) as h:
        mark = h.mark()
        config.write_text(good.replace("image:", "imag:"))
        invalid = h.wait(ev.CONFIG_INVALID, after=mark)
        assert any("services.api.imag: unknown key (did you mean 'image'?)" in p
                   for p in invalid.data["problems"])
        # the old config keeps working
        (root / "services/api/src/main.txt").write_text("still watching\n")
        h.wait(ev.RELOAD_FINISHED, "api", after=mark, ok=True)
        h.settle()
        # a valid change (a new build arg) is applied and rebuilds the service
        mark = h.mark()
        config.write_text(good + "    build_args:\n      FLAVOUR: mint\n")
        h.wait(ev.CONFIG_LOADED, after=mark)
        h.wait(ev.RELOAD_FINISHED, "api", after=mark, ok=True)
        assert len(h.since(mark, ev.BUILD_STARTED, "api")) == 1
