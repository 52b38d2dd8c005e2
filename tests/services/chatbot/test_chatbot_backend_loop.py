"""Backend <-> chatbot over loopback in both directions, the way the cluster wires them:
browser-facing POST /api/chat on the real backend -> chatbot /chat -> tools -> backend API."""

from __future__ import annotations


def backend_chat(user, message: str):
    return user.stack.http.post(
        f"{user.stack.backend.base_url}/api/chat", headers=user.auth, json={"message": message}
    )


def test_chat_through_the_backend_changes_the_users_todos(user, other_user) -> None:
    r = backend_chat(user, "add renew passport high priority")
    assert r.status_code == 200, r.text
    body = r.json()
    [stored] = user.todos()
    assert (stored["title"], stored["priority"]) == ("renew passport", "high")
    assert body["actions"] == [{"tool": "add_todo", "result": stored}]
    assert body["reply"] == f'Added #{stored["id"]} "renew passport" (high priority).'

    r = backend_chat(user, "mark the passport one done")
    assert r.status_code == 200, r.text
    assert user.todos()[0]["done"] is True

    # The chatbot acted with this user's own token: the other user's list stays untouched,
    # and their own chat sees nothing of the first user's todos.
    assert other_user.todos() == []
    r = backend_chat(other_user, "what's on my list")
    assert r.status_code == 200, r.text
    assert "Your list is empty" in r.json()["reply"]


def test_chatbot_logs_never_contain_tokens(user) -> None:
    backend_chat(user, "show my todos")
    user.chat("what's on my list")
    assert user.token not in user.stack.chatbot.logs()
