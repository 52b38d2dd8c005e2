"""Builds from the CLI (no cluster: --no-deploy): --service, labels, image pruning, shared paths
that trigger a service, and the console/JSON output forms."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from devloop import events as ev
from devloop.redact import Redactor
from tests.conftest import devloop_env
from tests.core.harness import running

REPO = Path(__file__).resolve().parents[2]


def _sync(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devloop.cli", "sync", "--no-deploy", *args],
                          cwd=root, capture_output=True, text=True, timeout=300,
                          env=devloop_env(HOME=str(root.parent),
                                          XDG_CACHE_HOME=str(root.parent)))


def test_sync_service_limits_the_build_and_images_carry_labels(make_project, docker_client,
                                                               image_prefix):
    root = make_project({"api": {}, "web": {}})
    proc = _sync(root, "--service", "api", "-o", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert {e["service"] for e in events if e["type"] == "build.started"} == {"api"}
    image = next(e["image"] for e in events if e["type"] == "build.finished")
    labels = docker_client.images.get(image).labels
    assert labels["devloop.service"] == "api"
    assert labels["devloop.digest"] == image.rsplit(":", 1)[1]
    assert docker_client.images.list(name=f"{image_prefix}-web") == []
    # up to date now: a second sync builds nothing and says so
    again = _sync(root, "--service", "api")
    assert again.returncode == 0 and "build skipped" in again.stdout
    assert "build started" not in again.stdout
    assert _sync(root, "--service", "nope").returncode == 2


def test_old_images_beyond_keep_images_are_removed(make_project, docker_client, image_prefix):
    root = make_project({"api": {}}, top="quiet_period_ms: 50\nkeep_images: 2\n")
    src = root / "services/api/src/main.txt"
    with running(root, docker_client) as h:
        for i in range(4):
            mark = h.mark()
            src.write_text(f"version {i}\n")
            h.wait(ev.RELOAD_FINISHED, "api", after=mark)
            h.settle(0.3)
        built = [e.data["image"] for e in h.recorder.of(ev.BUILD_FINISHED, "api")]
    tags = {t for img in docker_client.images.list(name=f"{image_prefix}-api") for t in img.tags}
    assert len(built) == 5
    assert tags == set(built[-2:]), "only the newest keep_images images stay"
    assert h.recorder.of("images.pruned", "api")


def test_extra_watch_paths_trigger_only_their_service(make_project, docker_client):
    root = make_project({"api": {"yaml": "watch: [shared]"}, "web": {}})
    (root / "shared").mkdir(exist_ok=True)  # before the engine loads the config
    (root / "shared/util.txt").write_text("v1\n")
    with running(root, docker_client) as h:
        mark = h.mark()
        (root / "shared/util.txt").write_text("v2\n")
        h.wait(ev.RELOAD_FINISHED, "api", after=mark)
        h.settle(0.5)
        assert [e.service for e in h.since(mark, ev.BUILD_STARTED)] == ["api"]








def test_the_signal_handler_takes_no_lock(make_project, docker_client):
    """Ctrl-C runs the handler on the main thread, possibly while that thread holds the engine
    queue's lock inside get(): a handler that puts on the queue would deadlock devloop (it did,
    once). Simulate exactly that: hold the lock on one thread and interrupt from it."""
    import threading

    from devloop.app import App
    from devloop.config.loader import load_config
    from devloop.image.build import Builder
    from devloop.loop.engine import Engine
    from devloop.loop.pipeline import Pipeline

    root = make_project({"api": {}})
    config = load_config(root / "devloop.yaml")
    bus = ev.EventBus()
    app = App(config, bus, Redactor(), deploy=False)
    app.engine = Engine(config, bus, Pipeline(bus, Builder(docker_client), None, root=root))

    def handler_while_holding_the_queue_lock() -> None:
        with app.engine.queue.mutex:
            app.interrupt()

    t = threading.Thread(target=handler_while_holding_the_queue_lock, daemon=True)
    t.start()
    t.join(2)
    assert not t.is_alive(), "interrupt() blocked on a lock its own thread holds"
    stopped = threading.Thread(target=app.engine.run, daemon=True)
    stopped.start()
    stopped.join(5)
    assert not stopped.is_alive(), "the loop did not notice the stop request"
