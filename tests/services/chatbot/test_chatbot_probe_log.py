"""The kubelet's probe of the chatbot (GET /health, k8s/templates/chatbot-deployment.yaml)
stays out of the access log; every other request is still logged; and the filter is one file
shared byte for byte with the backend (two images, one idea)."""

from __future__ import annotations

import time

from .conftest import REPO, Stack


def test_probe_requests_are_not_logged_other_requests_are(stack: Stack) -> None:
    chatbot = stack.chatbot
    for _ in range(3):
        r = stack.http.get(f"{chatbot.base_url}/health",
                           headers={"User-Agent": "kube-probe/1.36"})
        assert r.status_code == 200
    assert stack.http.get(f"{chatbot.base_url}/no-such-route-probe-log-marker").status_code \
        == 404

    # Positive control: the access log is on (the ordinary request shows up).
    deadline = time.monotonic() + 10
    while "no-such-route-probe-log-marker" not in chatbot.logs():
        assert time.monotonic() < deadline, chatbot.logs()
        time.sleep(0.05)
    access = [line for line in chatbot.logs().splitlines() if '"GET ' in line]
    assert not [line for line in access if '"GET /health ' in line], access


def test_backend_and_chatbot_share_one_access_log_filter() -> None:
    backend = REPO / "services" / "backend" / "app" / "accesslog.py"
    chatbot = REPO / "services" / "chatbot" / "chatbot" / "accesslog.py"
    assert backend.read_bytes() == chatbot.read_bytes(), "edit both accesslog.py together"
