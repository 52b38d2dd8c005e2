"""The engine loop with a controllable fake pipeline: real watchdog on real files, no Docker.

The pipeline is faked (each run blocks until the test releases it) so a test can hold a reload
"in progress" exactly while it edits devloop.yaml or .dockerignore; that is engine behaviour a
user sees (an edit during a reload is applied, not lost), which a real build is too quick or too
slow to pin down reliably.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from devloop import events as ev
from devloop.config.loader import load_config
from devloop.image.buildslots import BuildSlots
from devloop.loop.engine import Engine
from devloop.vocab import OK, PipelineResult


@dataclass
class Call:
    service: str
    digest: str
    files: list[str]
    release: threading.Event = field(default_factory=threading.Event)


class FakePipeline:
    """Records each run (service, digest, context files) and blocks until released."""

    def __init__(self, hold: bool) -> None:
        self.slots = BuildSlots(2)
        self.hold = hold
        self.calls: list[Call] = []
        self.applies = 0
        self.cond = threading.Condition()

    def reconfigure(self, config) -> None:
        self.config = config

    def run(self, digest, changed, known, stop, **_kw) -> PipelineResult:
        if changed is None:
            digest.scan()
        else:
            digest.update(changed)
        value = digest.digest()
        call = Call(digest.service.name, value, sorted(digest.context.files))
        with self.cond:
            self.calls.append(call)
            self.cond.notify_all()
        if self.hold:
            call.release.wait(30)
        return PipelineResult(call.service, OK, value)

    def apply_manifests(self, stop: threading.Event) -> str | None:
        self.applies += 1
        return None

    def wait_calls(self, n: int, timeout: float = 20) -> list[Call]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.calls) < n:
                left = deadline - time.monotonic()
                assert left > 0, f"expected {n} runs, saw {[c.service for c in self.calls]}"
                self.cond.wait(left)
            return list(self.calls)


def project(root: Path, services: dict[str, str], extra: str = "") -> Path:
    lines = ["version: 1", "namespace: lumina", "quiet_period_ms: 50", "services:"]
    for name, ignore in services.items():
        ctx = root / name
        (ctx / "src").mkdir(parents=True, exist_ok=True)
        (ctx / "Dockerfile").write_text("FROM scratch\nCOPY src/ /app/\n")
        (ctx / "src" / "main.txt").write_text(f"{name}\n")
        (ctx / "src" / "notes.md").write_text("notes\n")
        (ctx / ".dockerignore").write_text(ignore)
        lines += [f"  {name}:", f"    context: {name}", f"    image: {name}"]
    (root / "devloop.yaml").write_text("\n".join(lines) + "\n" + extra)
    return root / "devloop.yaml"


@contextmanager
def engine(config_path: Path, pipeline: FakePipeline, clock: Callable[[], float] = time.monotonic
           ) -> Iterator[tuple[Engine, ev.Recorder]]:
    bus = ev.EventBus()
    recorder = ev.Recorder()
    bus.subscribe(recorder)
    eng = Engine(load_config(config_path), bus, pipeline, clock=clock)  # type: ignore[arg-type]
    thread = threading.Thread(target=eng.run, daemon=True)
    thread.start()
    try:
        assert recorder.wait_for(lambda e: e.type == ev.WATCH_READY, 20)
        yield eng, recorder
    finally:
        for call in pipeline.calls:
            call.release.set()
        eng.stop("test finished")
        thread.join(10)


def test_a_config_change_during_a_reload_is_applied_when_it_ends(tmp_path):
    cfg = project(tmp_path, {"api": ""})
    pipe = FakePipeline(hold=True)
    with engine(cfg, pipe) as (_eng, rec):
        first = pipe.wait_calls(1)[0]
        # while the first reload runs, devloop.yaml gains a build arg (a new image identity)
        cfg.write_text(cfg.read_text().replace("    image: api\n",
                                               "    image: api\n    build_args: {V: '2'}\n"))
        assert rec.wait_for(lambda e: e.type == ev.CONFIG_LOADED, 20)
        time.sleep(0.3)  # nothing may start while the reload is still running
        assert len(pipe.calls) == 1
        first.release.set()
        second = pipe.wait_calls(2)[1]
        assert second.service == "api" and second.digest != first.digest
        second.release.set()


def test_a_service_removed_while_it_reloads_is_forgotten_when_done(tmp_path):
    cfg = project(tmp_path, {"api": "", "web": ""})
    pipe = FakePipeline(hold=True)
    with engine(cfg, pipe) as (eng, rec):
        calls = pipe.wait_calls(2)
        text = cfg.read_text()
        cfg.write_text(text[:text.index("  web:")])
        assert rec.wait_for(lambda e: e.type == ev.CONFIG_LOADED, 20)
        for call in calls:
            call.release.set()
        deadline = time.monotonic() + 10
        while "web" in eng.states and time.monotonic() < deadline:
            time.sleep(0.05)
        assert set(eng.states) == {"api"}
        # an edit of web's sources is no longer anyone's input; api's still is
        (tmp_path / "web/src/main.txt").write_text("web 2\n")
        (tmp_path / "api/src/main.txt").write_text("api 2\n")
        later = pipe.wait_calls(3)[2]
        later.release.set()
        time.sleep(0.5)
        assert [c.service for c in pipe.calls[2:]] == ["api"]


def test_a_dockerignore_edit_changes_what_is_hashed_during_watch(tmp_path):
    cfg = project(tmp_path, {"api": ""})
    pipe = FakePipeline(hold=False)
    with engine(cfg, pipe):
        assert "src/notes.md" in pipe.wait_calls(1)[0].files
        (tmp_path / "api/.dockerignore").write_text("**/*.md\n")
        call = pipe.wait_calls(2)[1]
        assert "src/notes.md" not in call.files
        # and an ignored file no longer triggers anything, while a real input still does
        (tmp_path / "api/src/notes.md").write_text("changed\n")
        (tmp_path / "api/src/main.txt").write_text("api 2\n")
        third = pipe.wait_calls(3)[2]
        time.sleep(0.5)
        assert len(pipe.calls) == 3 and "src/notes.md" not in third.files


def test_a_config_save_does_not_re_read_unchanged_files(tmp_path):
    cfg = project(tmp_path, {"api": ""})
    for i in range(200):
        (tmp_path / f"api/src/f{i}.txt").write_text(f"{i}\n")
    pipe = FakePipeline(hold=False)
    with engine(cfg, pipe) as (eng, _rec):
        pipe.wait_calls(1)
        cfg.write_text(cfg.read_text().replace("    image: api\n",
                                               "    image: api\n    build_args: {V: '2'}\n"))
        pipe.wait_calls(2)
        # the new ServiceDigest took the hashes from the old one: no file was read again
        assert eng.states["api"].digest.reads == 0
        # positive control: a real edit is read (exactly that one file)
        (tmp_path / "api/src/f7.txt").write_text("seven\n")
        pipe.wait_calls(3)
        assert eng.states["api"].digest.reads == 1


def test_the_loop_sleeps_while_the_first_apply_waits_for_the_first_builds(tmp_path):
    """The first apply of a manifests project is due at start and waits for the first builds;
    the loop used to wake at once, again and again, for as long as they ran: a whole core
    busy during every first deploy (22 s of CPU in 100 s for the Lumina stack)."""
    cfg = project(tmp_path, {"api": ""}, extra="manifests: [k8s/]\n")
    (tmp_path / "k8s").mkdir()
    (tmp_path / "k8s/app.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n"
                                           "metadata: {name: app}\n")
    looks = [0]

    def clock() -> float:
        looks[0] += 1
        return time.monotonic()

    pipe = FakePipeline(hold=True)
    with engine(cfg, pipe, clock) as (_eng, _rec):
        build = pipe.wait_calls(1)[0]  # held: the build "runs"
        before = looks[0]
        time.sleep(1.0)
        # the loop wakes twice a second to notice signals (a few clock reads each time);
        # spinning, it read the clock tens of thousands of times
        assert looks[0] - before < 100, looks[0] - before
        build.release.set()  # positive control: the build's end lets the apply go
        deadline = time.monotonic() + 20
        while pipe.applies == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pipe.applies == 1
