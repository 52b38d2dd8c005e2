"""The whole loop on the Lumina stack (issue 6): first deploy, edits, no-ops, a broken save,
Ctrl-C, sync, status and drift.

Real `devloop watch` / `devloop sync` / `devloop status` processes (the CLI as a user runs it,
`--output json`), real images built by devloop from a copy of services/, the real chart
installed through the real helm, and the Kubernetes API stand-in (tests/kube_standin) whose
pods are real Docker containers with network none. The same scenarios run on a real cluster
with DEVLOOP_E2E_CONTEXT (tests/e2e/conftest.py); there, the ones that need answers from the
pods (HTTP, logs, a crash) skip with the reason when the pods run no containers.

No scenario depends on another having run: the first watch is a module fixture, and each
scenario asks for the state it needs (`watch`: a running watch with every service ready;
`no_watch`: the stack deployed and no watch running) and leaves the stack healthy.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import time
from collections.abc import Iterator

import pytest

from tests.e2e.lumina import (
    NAMESPACE,
    SERVICES,
    DevloopProcess,
    LuminaCluster,
    replace_text,
    run_sync,
    set_live_update,
)

# The first run builds three real images: longer than pytest's default 600 s on a loaded machine,
# so the waits below (with their diagnostics) end first.
# the module's Lumina stack (images, stand-in, a watch) is built once: its tests share a worker
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400), pytest.mark.xdist_group("lumina-loop")]


@pytest.fixture(scope="module")
def lumina(lumina_env: LuminaCluster) -> LuminaCluster:
    # these scenarios are the full reload path; live update has its own (test_live_lumina.py)
    set_live_update(lumina_env.repo, enabled=False)
    return lumina_env


@pytest.fixture(scope="module")
def first_run(lumina: LuminaCluster) -> DevloopProcess:
    """The first `devloop watch` on the empty namespace, until every service's first reload
    has finished (rollout.ready comes before the reload's last step, pruning old images)."""
    watch = lumina.start_watch()
    for svc in SERVICES:
        watch.wait(lambda e, s=svc: e["type"] == "reload.finished" and e["service"] == s,
                   timeout=900, what=f"{svc}'s first reload")
    return watch


@pytest.fixture
def watch(lumina: LuminaCluster, first_run: DevloopProcess) -> DevloopProcess:
    """A running watch with every service ready (a new one if a scenario stopped it)."""
    running = lumina.ensure_watch()
    running.settle(3)
    return running


@pytest.fixture
def no_watch(lumina: LuminaCluster, first_run: DevloopProcess) -> Iterator[None]:
    """The stack deployed and ready, and no watch running (it would react to edits too)."""
    lumina.ensure_watch().settle(3)
    assert lumina.stop() == 130
    lumina.wait_ready(SERVICES)
    yield


def test_first_run_builds_installs_and_rolls_out_every_service(lumina, first_run):
    installed = first_run.events_of("deploy.installed")
    assert installed, "the chart was not installed"
    objects = {o for e in installed for o in e["objects"]}
    assert {"Deployment/backend", "PersistentVolumeClaim/backend-sqlite-pvc"} <= objects
    finished = first_run.events_of("reload.finished")
    assert {e["service"] for e in finished if e["ok"]} == set(SERVICES), finished
    assert {e["service"] for e in first_run.events_of("rollout.ready")} == set(SERVICES)
    for e in finished:  # every build is tagged by content, never latest
        assert e["ok"] and ":dl-" in e["image"], e
    for svc in SERVICES:
        assert ":dl-" in lumina.image(svc)
    lumina.wait_ready(SERVICES)


def test_pod_logs_are_streamed_for_every_service(lumina, watch):
    lumina.needs_traffic("no HTTP answers, logs or crashes to observe")
    for svc in SERVICES:
        watch.wait(lambda e, s=svc: e["type"] == "log" and e["service"] == s
                   and e["source"] == "pod", timeout=120, what=f"{svc} logs")


def test_backend_edit_rebuilds_patches_and_rolls_out_only_backend(lumina, watch):
    other_uids = {s: lumina.pod_uids(s) for s in ("frontend", "chatbot")}
    before = lumina.image("backend")
    mark = watch.mark()
    replace_text(lumina.repo / "services/backend/app/routes/health.py",
                 '"status": "ok"', f'"status": "ok", "edit": "{secrets.token_hex(4)}"')
    watch.wait(lambda e: e["type"] == "rollout.ready" and e["service"] == "backend",
               after=mark, timeout=600, what="backend rollout")
    watch.settle(3)
    assert {e["service"] for e in watch.since(mark, "build.started")} == {"backend"}
    assert {e["service"] for e in watch.since(mark, "deploy.patched")} == {"backend"}
    assert lumina.image("backend") != before
    for svc, uids in other_uids.items():
        assert lumina.pod_uids(svc) == uids, f"{svc} pods were replaced"


def test_backend_serves_the_new_code_and_keeps_its_data_across_a_reload(lumina, watch):
    lumina.needs_traffic("no HTTP answers, logs or crashes to observe")
    email = f"ada-{secrets.token_hex(3)}@example.com"
    token = lumina.backend_register_and_login(email, "correct horse 1")
    for title in ("buy milk", "write report", "call mom"):
        lumina.backend_call("POST", "/api/todos", token, {"title": title})
    mark = watch.mark()
    marker = f"reloaded-{secrets.token_hex(4)}"  # new content: never built before
    replace_text(lumina.repo / "services/backend/app/routes/health.py",
                 '"status": "ok"', f'"status": "ok", "e2e": "{marker}"')
    watch.wait(lambda e: e["type"] == "rollout.ready" and e["service"] == "backend",
               after=mark, timeout=600, what="backend rollout")
    health = lumina.backend_call("GET", "/api/health")
    assert health.get("e2e") == marker, health
    token = lumina.backend_login(email, "correct horse 1")
    titles = sorted(t["title"] for t in lumina.backend_call("GET", "/api/todos", token))
    assert titles == ["buy milk", "call mom", "write report"]


def test_frontend_edit_rebuilds_only_frontend(lumina, watch):
    backend_uids = lumina.pod_uids("backend")
    mark = watch.mark()
    page = lumina.repo / "services/frontend/app/layout.tsx"
    replace_text(page, "</body>", f"{{/* e2e edit {secrets.token_hex(4)} */}}</body>",
                 count=1)
    watch.wait(lambda e: e["type"] == "rollout.ready" and e["service"] == "frontend",
               after=mark, timeout=900, what="frontend rollout")
    watch.settle(3)
    assert {e["service"] for e in watch.since(mark, "build.started")} == {"frontend"}
    assert {e["service"] for e in watch.since(mark, "deploy.patched")} == {"frontend"}
    assert lumina.pod_uids("backend") == backend_uids


def test_ignored_paths_and_identical_saves_build_nothing(lumina, watch):
    mark = watch.mark()
    repo = lumina.repo
    (repo / "services/frontend/node_modules/left-pad").mkdir(parents=True, exist_ok=True)
    (repo / "services/frontend/node_modules/left-pad/index.js").write_text("x")
    (repo / "services/frontend/.next/cache").mkdir(parents=True, exist_ok=True)
    (repo / "services/frontend/.next/cache/x.json").write_text("{}")
    (repo / "services/backend/app/__pycache__").mkdir(exist_ok=True)
    (repo / "services/backend/app/__pycache__/main.cpython-311.pyc").write_bytes(b"\0")
    main = repo / "services/chatbot/chatbot/app.py"
    main.write_text(main.read_text())
    watch.settle(3)
    assert watch.since(mark, "build.started") == []
    assert watch.since(mark, "deploy.patched") == []
    # Positive control: the same watcher reacts to a real change right after.
    mark = watch.mark()
    replace_text(main, '"status": "ok"', f'"status": "ok", "alive": "{secrets.token_hex(4)}"')
    watch.wait(lambda e: e["type"] == "build.started" and e["service"] == "chatbot",
               after=mark, timeout=120, what="a chatbot build after a real change")
    watch.wait(lambda e: e["type"] == "rollout.ready" and e["service"] == "chatbot",
               after=mark, timeout=600, what="chatbot rollout")


def test_broken_backend_is_reported_with_its_traceback_then_recovers(lumina, watch):
    lumina.needs_traffic("no HTTP answers, logs or crashes to observe")
    email = f"grace-{secrets.token_hex(3)}@example.com"
    token = lumina.backend_register_and_login(email, "correct horse 2")
    lumina.backend_call("POST", "/api/todos", token, {"title": "survive the crash"})
    path = lumina.repo / "services/backend/app/routes/health.py"
    good = path.read_text()
    mark = watch.mark()
    path.write_text(good + "\ndef broken(:\n    pass\n")
    try:
        failed = watch.wait(lambda e: e["type"] == "rollout.failed"
                            and e["service"] == "backend",
                            after=mark, timeout=600, what="backend rollout failure")
        assert failed["reason"] in ("CrashLoopBackOff", "Error", "ContainerFailed",
                                    "ProgressDeadlineExceeded", "Timeout"), failed
        assert any("SyntaxError" in line for line in failed["log_tail"]), failed["log_tail"]
        problem = watch.wait(lambda e: e["type"] == "problem" and e["service"] == "backend",
                             after=mark, timeout=30, what="problem event")
        assert problem["file"] == "services/backend/app/routes/health.py"
        assert problem["line"] == len((good + "\ndef broken(:\n").splitlines())
    finally:
        mark = watch.mark()
        path.write_text(good)  # the fix: the loop recovers by itself
    watch.wait(lambda e: e["type"] == "rollout.ready" and e["service"] == "backend",
               after=mark, timeout=600, what="backend recovery")
    token = lumina.backend_login(email, "correct horse 2")
    titles = [t["title"] for t in lumina.backend_call("GET", "/api/todos", token)]
    assert titles == ["survive the crash"]


def test_ctrl_c_stops_promptly_and_leaves_the_workloads_running(lumina, watch):
    started = time.monotonic()
    watch.proc.send_signal(signal.SIGINT)
    code = watch.proc.wait(timeout=60)
    # About a second when idle; joining the file watcher and log streams may take a few more
    # on a loaded machine. 15 s still tells prompt from waiting on a 30 s network timeout.
    assert time.monotonic() - started < 15, "Ctrl-C took too long"
    assert code == 130
    watch.drain()
    assert watch.events_of("shutdown"), "no shutdown event"
    assert all(lumina.deployment_ready(s) for s in SERVICES), \
        "Ctrl-C must leave the workloads running"


def test_sync_rebuilds_nothing_then_only_the_changed_service(lumina, no_watch):
    result = run_sync(lumina)
    assert result.code == 0, result.text
    assert result.seconds < 120, f"no-op sync took {result.seconds:.1f}s"  # no rebuild
    assert result.of("build.started") == [] and result.of("deploy.patched") == []
    replace_text(lumina.repo / "services/chatbot/chatbot/app.py",
                 '"status": "ok"', f'"status": "ok", "e2e": "{secrets.token_hex(4)}"')
    result = run_sync(lumina)
    assert result.code == 0, result.text
    assert {e["service"] for e in result.of("build.started")} == {"chatbot"}
    assert {e["service"] for e in result.of("rollout.ready")} == {"chatbot"}
    assert lumina.deployment_ready("chatbot")


def test_status_shows_every_service_up_to_date_and_healthy(lumina, no_watch):
    result = run_sync(lumina, command="status")
    assert result.code == 0, result.text
    (report,) = [e for e in result.events if e.get("schema") == "devloop.status/v1"]
    rows = {row["service"]: row for row in report["services"]}
    assert set(rows) == set(SERVICES)
    for svc, row in rows.items():
        assert (row["state"], row["stale"], row["healthy"]) == ("up to date", False, True), row
        assert row["deployed_image"] == lumina.image(svc)
        assert row["pods"] and all(p["ready"] for p in row["pods"]), row["pods"]


def test_image_changed_outside_devloop_is_reported_and_put_back_by_sync(lumina, no_watch):
    ours = lumina.image("chatbot")
    other = f"{ours.rsplit(':', 1)[0]}:e2e-drift-{secrets.token_hex(3)}"
    lumina.docker.images.get(ours).tag(other)  # another tag of a local image: pods can run
    try:
        # What `kubectl set image deployment/chatbot chatbot=<other>` sends.
        lumina.apps.patch_namespaced_deployment("chatbot", NAMESPACE, {"spec": {"template": {
            "spec": {"containers": [{"name": "chatbot", "image": other}]}}}})
        lumina.wait_ready(("chatbot",))
        status = run_sync(lumina, command="status")
        (report,) = [e for e in status.events if e.get("schema") == "devloop.status/v1"]
        (row,) = [r for r in report["services"] if r["service"] == "chatbot"]
        assert row["stale"] is True and row["deployed_image"] == other, row
        result = run_sync(lumina, "--service", "chatbot")
        assert result.code == 0, result.text
        assert {e["service"] for e in result.of("deploy.patched")} == {"chatbot"}
        assert lumina.image("chatbot") == ours
        lumina.wait_ready(("chatbot",))
    finally:
        lumina.docker.images.remove(other)


def test_events_are_valid_json_lines_with_schema(lumina, watch):
    """Everything devloop printed in this module (stdout and stderr) was one JSON object per
    line: events, status reports, and library logs/warnings rendered by structlog on stderr
    (`status` puts an insecure-TLS warning there)."""
    lines = lumina.all_output_lines()
    assert lines
    for line in lines:
        event = json.loads(line)
        if event.get("schema") == "devloop.status/v1":
            continue  # `devloop status` prints one report, not events
        if "schema" not in event:
            assert {"event", "level", "logger"} <= event.keys(), event  # a stderr log record
            continue
        assert event["schema"] == "devloop.event/v1"
        assert isinstance(event["ts"], float) and isinstance(event["type"], str)
        assert re.match(r"^[a-z]+(\.[a-z]+)*$", event["type"]), event["type"]
