"""The model path of /chat, with OPENROUTER_API_KEY set.

OpenRouter is a third-party service this machine cannot reach, so the chatbot is pointed (via
OPENROUTER_BASE_URL) at a small scripted OpenAI-compatible server on 127.0.0.1 (`fake_model`
in conftest). Everything else is real: the chatbot process, its tool calls, and the backend.
"""

from __future__ import annotations

import json


def requests_for(fake_model, phrase: str) -> list[dict]:
    return [
        r
        for r in fake_model.requests
        if any(phrase in (m.get("content") or "") for m in r["body"]["messages"])
    ]


def test_model_tool_call_runs_against_the_backend(user, fake_model) -> None:
    answer = user.chat("please water the plants", service=user.stack.llm_chatbot)

    [stored] = user.todos()
    assert (stored["title"], stored["priority"], stored["due_date"]) == (
        "water the plants",
        "high",
        "2031-05-06",
    )
    assert answer["actions"] == [{"tool": "add_todo", "result": stored}]
    # The fake builds its final answer from the tool result it was sent back.
    assert answer["reply"] == f"Added #{stored['id']} water the plants for 2031-05-06."

    first, second = requests_for(fake_model, "water the plants")
    assert first["headers"]["authorization"] == f"Bearer {fake_model.api_key}"
    assert first["body"]["model"] == fake_model.model
    offered = {t["function"]["name"] for t in first["body"]["tools"]}
    assert offered == {"list_todos", "add_todo", "complete_todo", "update_todo", "delete_todo"}
    assert user.email in first["body"]["messages"][0]["content"]
    tool_message = second["body"]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_add"
    assert json.loads(tool_message["content"])["id"] == stored["id"]


def test_invalid_tool_arguments_go_back_to_the_model(user) -> None:
    answer = user.chat("bad arguments please", service=user.stack.llm_chatbot)
    assert answer["actions"] == []
    assert "invalid arguments for add_todo: title: Field required" in answer["reply"]
    assert user.todos() == []


def test_tool_loop_is_bounded(user) -> None:
    answer = user.chat("keep going", service=user.stack.llm_chatbot)
    assert answer["reply"].startswith("I stopped after 5 rounds of tool calls")
    assert [a["tool"] for a in answer["actions"]] == ["list_todos"] * 5


def test_provider_errors_become_clear_replies_without_leaking_the_key(user, fake_model) -> None:
    answer = user.chat("bad key", service=user.stack.llm_chatbot)
    assert answer == {
        "reply": "The language model provider rejected the API key (HTTP 401); "
        "the operator should check OPENROUTER_API_KEY.",
        "actions": [],
    }
    answer = user.chat("provider hiccup", service=user.stack.llm_chatbot)
    assert answer["reply"].startswith("The language model provider returned an error (HTTP 400)")
    assert "[redacted]" in answer["reply"]
    assert fake_model.api_key not in answer["reply"]

    logs = user.stack.llm_chatbot.logs()
    assert "LLM provider call failed: AuthenticationError (status 401)" in logs
    assert fake_model.api_key not in logs
    assert user.token not in logs
