"""What the dashboard derives from events, with a real EventBus and a real Dashboard subscriber
(no server needed for these: the cards and the kept lines are what the page and API serve)."""

from __future__ import annotations

from devloop import events as ev
from devloop.redact import Redactor
from devloop.ui.dashboard.server import Dashboard
from devloop.ui.dashboard.state import LOG_LINES_PER_POD, PODS_PER_SERVICE


def subscribed(services=("api",), only=None) -> tuple[ev.EventBus, Dashboard]:
    bus = ev.EventBus()
    dash = Dashboard(bus, Redactor(["s3cr3t-value"]), lambda _m: None, lambda: [],
                     list(services), only=only)
    bus.subscribe(dash)  # what start() does, without binding a port
    return bus, dash


def test_a_crash_loop_is_its_own_state_and_a_fix_resolves_the_problem():
    bus, dash = subscribed()
    bus.publish(ev.RELOAD_STARTED, "api", digest="d", image="api:dl-1", mode="build")
    bus.publish(ev.BUILD_STARTED, "api", image="api:dl-1")
    assert dash.state.card("api")["state"] == "building"
    bus.publish(ev.DEPLOY_PATCHED, "api", deployment="api", container="api", image="api:dl-1",
                generation=2)
    assert dash.state.card("api")["state"] == "deploying"
    bus.publish(ev.ROLLOUT_FAILED, "api", deployment="api", reason="CrashLoopBackOff",
                message="back-off", pod="api-1", log_tail=[])
    bus.publish(ev.PROBLEM, "api", file="app/main.py", line=3, message="NameError: x",
                kind="crash")
    bus.publish(ev.RELOAD_FINISHED, "api", ok=False, outcome="rollout_failed", reason="crash",
                seconds=4.0, image="api:dl-1")
    card = dash.state.card("api")
    assert card["state"] == "crashloop"
    assert card["problem"]["text"] == "app/main.py:3: NameError: x"
    assert card["last_reload"]["ok"] is False and card["last_reload"]["seconds"] == 4.0
    bus.publish(ev.RELOAD_STARTED, "api", digest="e", image="api:dl-2", mode="live")
    assert dash.state.card("api")["state"] == "syncing"
    bus.publish(ev.RELOAD_FINISHED, "api", ok=True, outcome="synced", reason="", seconds=0.2,
                image="api:dl-2")
    card = dash.state.card("api")
    assert card["state"] == "ready" and card["problem"]["resolved"] is True


def test_paused_shows_over_a_resting_state_but_not_over_a_reload():
    bus, dash = subscribed()
    bus.publish(ev.SERVICE_PAUSED, "api", pending=0)
    assert dash.state.card("api")["state"] == "paused"
    bus.publish(ev.RELOAD_QUEUED, "api", position=1, limit=1)  # a Rebuild click while paused
    assert dash.state.card("api")["state"] == "queued"
    bus.publish(ev.SERVICE_RESUMED, "api", pending=0)
    assert dash.state.card("api")["paused"] is False


def test_logs_are_bounded_per_pod_and_per_service_and_redacted():
    bus, dash = subscribed()
    for pod in range(PODS_PER_SERVICE + 2):
        for n in range(LOG_LINES_PER_POD + 50):
            bus.publish(ev.POD_LOG, "api", pod=f"api-{pod}", container="api",
                        line=f"{pod}/{n} token=s3cr3t-value", source="pod")
    bus.publish(ev.BUILD_OUTPUT, "api", line="Step 1/3 : FROM scratch")
    lines = dash.state.logs("api", limit=10**9)
    pods = {x["pod"] for x in lines}
    assert len(pods) == PODS_PER_SERVICE  # the two oldest pods' lines were dropped
    assert "api-0" not in pods and "api-1" not in pods
    assert len(lines) == (PODS_PER_SERVICE - 1) * LOG_LINES_PER_POD + 1
    assert lines[-1]["source"] == "build" and lines[-1]["pod"] is None
    assert all("s3cr3t" not in x["line"] and "***" in x["line"] for x in lines[:-1])


def test_a_config_reload_adds_and_removes_cards_within_the_selection():
    bus, dash = subscribed(("api", "web"), only=["api", "worker"])
    bus.publish(ev.CONFIG_LOADED, None, path="devloop.yaml", services=["api", "db", "worker"])
    assert [c["service"] for c in dash.state.cards()] == ["api", "worker"]


def test_a_forward_link_is_shown_while_the_port_is_open_and_dropped_when_it_is_closed():
    bus, dash = subscribed()
    fwd = {"address": "127.0.0.1", "remote_port": 8000}
    bus.publish(ev.FORWARD_READY, "api", url="http://127.0.0.1:8001", local_port=8001,
                pod="api-1", **fwd)
    bus.publish(ev.FORWARD_READY, "api", url="http://127.0.0.1:8002", local_port=8002,
                pod="api-1", **fwd)
    bus.publish(ev.FORWARD_MOVED, "api", url="http://127.0.0.1:8001", local_port=8001,
                pod="api-2", previous="api-1", **fwd)
    assert dash.state.card("api")["urls"] == ["http://127.0.0.1:8001", "http://127.0.0.1:8002"]
    bus.publish(ev.FORWARD_STOPPED, "api", url="http://127.0.0.1:8001", local_port=8001,
                reason="port_forwards of api changed in devloop.yaml", **fwd)
    assert dash.state.card("api")["urls"] == ["http://127.0.0.1:8002"]


def test_a_skip_of_inputs_that_failed_keeps_the_card_failed_and_an_up_to_date_one_is_ready():
    bus, dash = subscribed(services=("api", "web"))
    bus.publish(ev.BUILD_FAILED, "api", image="api:dl-1", error="step 3 failed")
    bus.publish(ev.BUILD_SKIPPED, "api", image="api:dl-1", known_failed=True,
                reason="inputs unchanged since the last failure; waiting for a fix")
    card = dash.state.card("api")
    assert card["state"] == "failed" and "waiting for a fix" in card["detail"]
    bus.publish(ev.BUILD_SKIPPED, "web", image="web:dl-2", known_failed=False,
                reason="deployed image is current")
    assert dash.state.card("web")["state"] == "ready"


def test_a_patched_statefulset_is_named_with_its_kind():
    bus, dash = subscribed()
    bus.publish(ev.DEPLOY_PATCHED, "api", deployment="db", workload="statefulset/db",
                container="db", image="db:dl-1", generation=2)
    assert dash.state.card("api")["detail"] == "patched statefulset/db"
    bus.publish(ev.DEPLOY_PATCHED, "api", deployment="api", container="api", image="api:dl-2",
                generation=3)  # an event without the field (older output): a Deployment
    assert dash.state.card("api")["detail"] == "patched deployment/api"
