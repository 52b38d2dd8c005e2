"""The whole loop on the Lumina stack (issue 6), scenario 1 to 6, in order.

Real `devloop watch` / `devloop sync` processes (the CLI as a user runs it, `--output json`),
real images built by devloop from a copy of services/, the real chart installed through the real
helm, and the Kubernetes API stand-in (tests/kube_standin) whose pods are real Docker containers
with network none. The only thing not real is the API server itself, which cannot run here; the
same scenario runs on a real cluster in tests/e2e/test_real_cluster.py.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import time

import pytest

from tests.e2e.lumina import LuminaCluster, replace_text, run_sync

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lumina(lumina_env) -> LuminaCluster:
    return lumina_env


class TestLuminaLoop:
    """Ordered: each scenario starts from the state the previous one left."""

    def test_1_first_run_builds_installs_rolls_out_and_streams_logs(self, lumina):
        watch = lumina.start_watch()
        for svc in ("backend", "chatbot", "frontend"):
            watch.wait(lambda e, s=svc: e["type"] == "rollout.ready" and e["service"] == s,
                       timeout=900, what=f"{svc} ready")
        installed = watch.events_of("deploy.installed")
        assert installed, "the chart was not installed"
        objects = {o for e in installed for o in e["objects"]}
        assert {"Deployment/backend", "PersistentVolumeClaim/backend-sqlite-pvc"} <= objects
        for svc in ("backend", "chatbot", "frontend"):
            assert lumina.deployment_ready(svc)
            watch.wait(lambda e, s=svc: e["type"] == "log" and e["service"] == s
                       and e["source"] == "pod", timeout=120, what=f"{svc} logs")
        # every build is tagged by content, never latest
        for e in watch.events_of("reload.finished"):
            assert e["ok"] and ":dl-" in e["image"]

    def test_2_backend_edit_rebuilds_only_backend_and_keeps_the_data(self, lumina):
        watch = lumina.watch
        token = lumina.backend_register_and_login("ada@example.com", "correct horse 1")
        for title in ("buy milk", "write report", "call mom"):
            lumina.backend_call("POST", "/api/todos", token, {"title": title})
        other_uids = {s: lumina.pod_uids(s) for s in ("frontend", "chatbot")}
        mark = watch.mark()
        marker = f"reloaded-{secrets.token_hex(4)}"  # new content: never built before
        replace_text(lumina.repo / "services/backend/app/routes/health.py",
                     '"status": "ok"', f'"status": "ok", "e2e": "{marker}"')
        watch.wait(lambda e: e["type"] == "rollout.ready" and e["service"] == "backend",
                   after=mark, timeout=600, what="backend rollout")
        watch.settle(3)
        assert {e["service"] for e in watch.since(mark, "build.started")} == {"backend"}
        assert {e["service"] for e in watch.since(mark, "deploy.patched")} == {"backend"}
        health = lumina.backend_call("GET", "/api/health")
        assert health.get("e2e") == marker, health
        for svc, uids in other_uids.items():
            assert lumina.pod_uids(svc) == uids, f"{svc} pods were replaced"
        token = lumina.backend_login("ada@example.com", "correct horse 1")
        titles = sorted(t["title"] for t in lumina.backend_call("GET", "/api/todos", token))
        assert titles == ["buy milk", "call mom", "write report"]

    def test_3_frontend_edit_rebuilds_only_frontend(self, lumina):
        watch = lumina.watch
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

    def test_4_ignored_paths_and_identical_saves_build_nothing(self, lumina):
        watch = lumina.watch
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

    def test_5_broken_backend_is_reported_with_its_traceback_then_recovers(self, lumina):
        watch = lumina.watch
        path = lumina.repo / "services/backend/app/routes/health.py"
        good = path.read_text()
        mark = watch.mark()
        path.write_text(good + "\ndef broken(:\n    pass\n")
        failed = watch.wait(lambda e: e["type"] == "rollout.failed" and e["service"] == "backend",
                            after=mark, timeout=600, what="backend rollout failure")
        assert failed["reason"] in ("CrashLoopBackOff", "Error", "ContainerFailed",
                                    "ProgressDeadlineExceeded", "Timeout"), failed
        assert any("SyntaxError" in line for line in failed["log_tail"]), failed["log_tail"]
        problem = watch.wait(lambda e: e["type"] == "problem" and e["service"] == "backend",
                             after=mark, timeout=30, what="problem event")
        assert problem["file"] == "services/backend/app/routes/health.py"
        assert problem["line"] == len((good + "\ndef broken(:\n").splitlines())
        # fix it: the loop recovers by itself and the data is still there
        mark = watch.mark()
        path.write_text(good)
        watch.wait(lambda e: e["type"] == "rollout.ready" and e["service"] == "backend",
                   after=mark, timeout=600, what="backend recovery")
        token = lumina.backend_login("ada@example.com", "correct horse 1")
        assert len(lumina.backend_call("GET", "/api/todos", token)) == 3

    def test_6_ctrl_c_then_sync_rebuilds_nothing_then_only_the_changed_chatbot(self, lumina):
        watch = lumina.watch
        started = time.monotonic()
        watch.proc.send_signal(signal.SIGINT)
        code = watch.proc.wait(timeout=10)
        assert time.monotonic() - started < 2.5, "Ctrl-C took too long"
        assert code == 130
        assert all(lumina.deployment_ready(s) for s in ("backend", "chatbot", "frontend")), \
            "Ctrl-C must leave the workloads running"
        result = run_sync(lumina)
        assert result.code == 0, result.text
        assert result.seconds < 10, f"no-op sync took {result.seconds:.1f}s"
        assert result.of("build.started") == [] and result.of("deploy.patched") == []
        replace_text(lumina.repo / "services/chatbot/chatbot/app.py",
                     '"status": "ok"', f'"status": "ok", "e2e": "{secrets.token_hex(4)}"')
        result = run_sync(lumina)
        assert result.code == 0, result.text
        assert {e["service"] for e in result.of("build.started")} == {"chatbot"}
        assert {e["service"] for e in result.of("rollout.ready")} == {"chatbot"}
        assert lumina.deployment_ready("chatbot")


def test_events_are_valid_json_lines_with_schema(lumina):
    """Everything devloop printed in this module was one JSON object per line."""
    for line in lumina.all_output_lines():
        event = json.loads(line)
        assert event["schema"] == "devloop.event/v1"
        assert isinstance(event["ts"], float) and isinstance(event["type"], str)
        assert re.match(r"^[a-z]+(\.[a-z]+)?$", event["type"])

