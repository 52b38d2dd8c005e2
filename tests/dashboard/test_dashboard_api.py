"""The dashboard's JSON API, asked directly over HTTP, on a real `devloop watch` (stand-in cluster).

The same API the page uses: status, cards, logs, the event stream and the actions, with the
token and Host checks that keep other web sites out.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from tests.conftest import devloop_env
from tests.dashboard.dashboard_page import open_url, request, start_watch
from tests.kube_standin.fixtures import wait_for
from tests.live.test_live_watch import make_box

pytestmark = pytest.mark.docker

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def running(standin, tmp_path, image_prefix):
    root = make_box(standin, tmp_path, image_prefix)
    watch, url = start_watch(root, standin.kubeconfig)
    try:
        watch.wait("rollout.ready", timeout=180)
        yield root, watch, url
    finally:
        watch.stop()


def token_of(url: str) -> str:
    """The token written in the page, opened as a person does: the printed address, whose
    redirect sets the cookie that then gets the page."""
    browser = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                          urllib.request.HTTPCookieProcessor())
    with browser.open(open_url(url), timeout=10) as resp:
        page = resp.read().decode()
    return page.split('name="devloop-token" content="', 1)[1].split('"', 1)[0]


def test_status_is_the_document_of_devloop_status(running, standin):
    root, _watch, url = running
    code, doc = request(url + "/api/status")
    assert code == 200 and doc["schema"] == "devloop.status/v1"
    cli = subprocess.run(
        [sys.executable, "-m", "devloop.cli", "status", "-o", "json"], cwd=root,
        env=devloop_env(KUBECONFIG=str(standin.kubeconfig), HOME=str(root.parent),
                        XDG_CACHE_HOME=str(root.parent / "cache")),
        capture_output=True, text=True, timeout=60)
    expected = json.loads(cli.stdout)
    [row], [want] = doc["services"], expected["services"]
    assert set(row) == set(want)
    for key in ("service", "deployment", "deployed_digest", "deployed_image", "stale", "live"):
        assert row[key] == want[key], key
    assert [p["name"] for p in row["pods"]] == [p["name"] for p in want["pods"]]
    assert row["pods"][0]["ready"] is True
    assert set(doc["seen"]) == {p["name"] for p in row["pods"]}


def test_cards_logs_and_the_event_stream(running):
    root, _watch, url = running
    def finished() -> dict | None:
        code, cards = request(url + "/api/services")
        assert code == 200
        [card] = cards["services"]
        return card if card["last_reload"] else None

    card = wait_for(finished, 180, what="the first reload's outcome on the card")
    assert card["service"] == "box" and card["state"] == "ready"
    assert card["last_reload"]["ok"] is True and card["last_reload"]["seconds"] > 0
    assert {p["name"] for p in card["last_reload"]["phases"]} >= {"build", "rollout"}

    stream = _OPENER.open(urllib.request.Request(url + "/api/events", headers={
        "X-Devloop-Token": token_of(url)}), timeout=30)
    (root / "services/box/src/message.txt").write_text("from the api test\n")
    seen = []
    while not any(e["type"] == "reload.finished" for e in seen):
        line = stream.readline().decode()
        if line.startswith("data: "):
            seen.append(json.loads(line[6:]))
        assert not line.startswith("event:"), "cards are only sent with ?cards=1"
    stream.close()
    assert all(e["schema"] == "devloop.event/v1" for e in seen)
    assert {"reload.started", "live.sync.finished", "reload.finished"} <= {e["type"] for e in seen}

    def new_output() -> list[dict]:
        return [x for x in request(url + "/api/logs?service=box")[1]["lines"]
                if x["line"].startswith("from the api test")]

    lines = wait_for(new_output, 30, what="the new output in /api/logs")
    assert lines[0]["source"] == "pod" and lines[0]["pod"].startswith("box-")


def test_actions_need_the_token_and_the_dashboards_host(running):
    _root, watch, url = running
    token = token_of(url)
    mark = watch.mark()
    assert request(url + "/api/services/box/pause", "POST")[0] == 403
    assert request(url + "/api/services/box/pause", "POST",
                   {"X-Devloop-Token": "guessed"})[0] == 403
    port = url.rsplit(":", 1)[1]
    for host in (f"attacker.example:{port}", "localhost.attacker.example", f"10.1.2.3:{port}"):
        code, body = request(url + "/api/services/box/pause", "POST",
                             {"X-Devloop-Token": token, "Host": host})
        assert code == 403, host
        assert request(url + "/api/status", headers={"Host": host})[0] == 403, host
    assert watch.since(mark, "service.paused") == []
    # positive control: the same request with the token and a right Host works
    code, body = request(url + "/api/services/box/pause", "POST",
                         {"X-Devloop-Token": token, "Host": f"localhost:{port}"})
    assert code == 202 and body == {"ok": True, "service": "box", "action": "pause"}
    watch.wait("service.paused", after=mark, timeout=30)
    assert request(url + "/api/services/nope/trigger", "POST",
                   {"X-Devloop-Token": token})[0] == 404


def test_a_busy_port_is_a_warning_and_the_loop_still_runs(standin, tmp_path, image_prefix):
    import socket

    from tests.watchproc import Watch

    root = make_box(standin, tmp_path, image_prefix)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        watch = Watch(root, standin.kubeconfig, args=("--ui-port", str(port)))
        try:
            warning = watch.wait("warning", timeout=60)
            assert f"dashboard: cannot listen on 127.0.0.1:{port}" in warning["message"]
            watch.wait("rollout.ready", timeout=180)  # watch goes on without the page
            assert watch.since(0, "dashboard.ready") == []
        finally:
            watch.stop()
