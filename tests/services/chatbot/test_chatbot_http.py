"""The chatbot's plain HTTP surface: health, /chat input errors, start-up errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CHATBOT_DIR = Path(__file__).resolve().parents[3] / "services" / "chatbot"


def test_health_answers_ok(stack) -> None:
    r = stack.http.get(f"{stack.chatbot.base_url}/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_chat_without_bearer_token_is_refused(stack) -> None:
    r = stack.http.post(f"{stack.chatbot.base_url}/chat", json={"message": "show my todos"})
    assert r.status_code == 401
    assert "Bearer" in r.json()["detail"]


def test_chat_rejects_malformed_bodies_with_a_reason(user) -> None:
    url = f"{user.stack.chatbot.base_url}/chat"
    r = user.stack.http.post(url, headers=user.auth, content=b"not json")
    assert r.status_code == 400
    assert "JSON" in r.json()["detail"]
    r = user.stack.http.post(url, headers=user.auth, json={"user": {"id": 1, "email": "a@b.c"}})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("message:")
    r = user.stack.http.post(url, headers=user.auth, json={"message": ""})
    assert r.status_code == 422


def test_chat_with_a_token_the_backend_rejects_explains_it(stack) -> None:
    r = stack.http.post(
        f"{stack.chatbot.base_url}/chat",
        headers={"Authorization": "Bearer not-a-valid-jwt"},
        json={"message": "what's on my list"},
    )
    assert r.status_code == 200
    body = r.json()
    assert "log in again" in body["reply"]
    assert body["actions"] == []


def test_bad_port_setting_stops_startup_with_one_clear_line() -> None:
    env = {"PATH": os.environ["PATH"], "MCP_SERVER_PORT": "eighty"}
    done = subprocess.run(
        [sys.executable, "-m", "chatbot"],
        cwd=CHATBOT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == "chatbot: MCP_SERVER_PORT must be a port number 1-65535, got 'eighty'"
    )
