"""POST /api/chat forwards to the chatbot with the caller's identity and token.

The chatbot is another team's service; a small real HTTP server on loopback stands in for it
and records what the backend sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # conftest is loaded by pytest; importing it at run time could pick another
    from conftest import Api, BackendLauncher, BackendProcess, FakeChatbot


@pytest.fixture(scope="module")
def chat_setup(
    module_launcher: BackendLauncher, module_fake_chatbot: FakeChatbot
) -> tuple[FakeChatbot, BackendProcess]:
    """One fake chatbot and one backend pointed at it (with a trailing slash, as users write)."""
    backend = module_launcher.start(env={"CHATBOT_URL": module_fake_chatbot.url + "/"})
    return module_fake_chatbot, backend


@pytest.fixture
def chatbot(chat_setup: tuple[FakeChatbot, BackendProcess]) -> FakeChatbot:
    chatbot = chat_setup[0]
    chatbot.requests.clear()
    chatbot.status = 200
    chatbot.body = json.dumps(
        {"reply": "Added 'buy milk'.", "actions": [{"tool": "add_todo", "result": {"id": 7}}]}
    ).encode()
    return chatbot


@pytest.fixture
def chat_api(chat_setup: tuple[FakeChatbot, BackendProcess]) -> Iterator[Api]:
    api = chat_setup[1].api()
    yield api
    api.close()


def test_chat_forwards_message_user_and_token(chatbot: FakeChatbot, chat_api: Api) -> None:
    auth = chat_api.new_user("chatty@example.com")
    me = chat_api.http.get("/api/auth/me", headers=auth).json()

    r = chat_api.http.post("/api/chat", json={"message": "add buy milk tomorrow"}, headers=auth)

    assert r.status_code == 200, r.text
    assert r.json() == {
        "reply": "Added 'buy milk'.",
        "actions": [{"tool": "add_todo", "result": {"id": 7}}],
    }
    [sent] = chatbot.requests
    assert sent.path == "/chat"
    assert sent.headers["authorization"] == auth["Authorization"]
    assert sent.json() == {
        "message": "add buy milk tomorrow",
        "user": {"id": me["id"], "email": "chatty@example.com"},
    }


def test_chatbot_errors_are_502_with_a_clear_detail(chatbot: FakeChatbot, chat_api: Api) -> None:
    auth = chat_api.new_user("gateway@example.com")

    def chat() -> tuple[int, str]:
        r = chat_api.http.post("/api/chat", json={"message": "what's on my list"}, headers=auth)
        return r.status_code, r.json()["detail"]

    chatbot.status, chatbot.body = 500, b'{"detail": "boom"}'
    assert chat() == (502, f"chatbot at {chatbot.url}/chat answered HTTP 500")

    chatbot.status, chatbot.body = 200, json.dumps({"answer": "?"}).encode()
    status, detail = chat()
    assert status == 502
    assert "without the expected JSON fields" in detail


def test_chat_needs_login_and_a_message(chatbot: FakeChatbot, chat_api: Api) -> None:
    assert chat_api.http.post("/api/chat", json={"message": "hi"}).status_code == 401
    auth = chat_api.new_user("quiet@example.com")
    assert chat_api.http.post("/api/chat", json={"message": "  "}, headers=auth).status_code == 422
    assert chatbot.requests == []


def test_unreachable_chatbot_is_502_not_500(launcher: BackendLauncher) -> None:
    backend = launcher.start()  # CHATBOT_URL points at a loopback port nothing listens on
    api = backend.api()
    auth = api.new_user("lonely@example.com")
    r = api.http.post("/api/chat", json={"message": "hello?"}, headers=auth)
    assert r.status_code == 502
    assert r.json()["detail"].startswith(
        f"chatbot unreachable at {backend.env['CHATBOT_URL']}/chat"
    )
    assert api.http.get("/api/health").status_code == 200  # the backend itself stays healthy
