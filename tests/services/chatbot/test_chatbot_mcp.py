"""A real MCP client session (the SDK's streamable HTTP client) against the running chatbot.

Every tool call is checked against the real backend's REST API, read with the user's token.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_MODERN_VERSION

TOOL_NAMES = {"list_todos", "add_todo", "complete_todo", "update_todo", "delete_todo"}


def mcp_session(stack, token: str | None, mode: str = "auto") -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx2.AsyncClient(headers=headers, timeout=30.0, trust_env=False)
    transport = streamable_http_client(f"{stack.chatbot.base_url}/mcp", http_client=http)
    return Client(transport, mode=mode)


def payload(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


# "legacy" is the initialize handshake today's desktop MCP clients use; "auto" negotiates
# the newest protocol revision the SDK speaks.
@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_mcp_session_manages_todos_through_the_backend(user, mode: str) -> None:
    async def scenario() -> None:
        async with mcp_session(user.stack, user.token, mode) as client:
            if mode == "auto":
                assert client.protocol_version == LATEST_MODERN_VERSION
            else:
                assert client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == TOOL_NAMES
            assert tools["add_todo"].input_schema["required"] == ["title"]

            added = payload(
                await client.call_tool(
                    "add_todo",
                    {"title": "file taxes", "priority": "high", "due_date": "2031-04-15"},
                )
            )
            backend_view = {t["id"]: t for t in user.todos()}
            assert backend_view[added["id"]]["title"] == "file taxes"
            assert backend_view[added["id"]]["priority"] == "high"
            assert backend_view[added["id"]]["due_date"] == "2031-04-15"

            listed = payload(await client.call_tool("list_todos", {}))
            assert [t["id"] for t in listed["todos"]] == [added["id"]]

            done = payload(await client.call_tool("complete_todo", {"todo_id": added["id"]}))
            assert done["done"] is True
            assert user.todos()[0]["done"] is True
            assert payload(await client.call_tool("list_todos", {"status": "open"}))["count"] == 0

            renamed = payload(
                await client.call_tool("update_todo", {"todo_id": added["id"], "title": "taxes!"})
            )
            assert renamed["title"] == "taxes!"

            deleted = payload(await client.call_tool("delete_todo", {"todo_id": added["id"]}))
            assert deleted == {"deleted": True, "id": added["id"], "title": "taxes!"}
            assert user.todos() == []

    anyio.run(scenario)


def test_mcp_tools_act_only_for_the_token_holder(user, other_user) -> None:
    theirs = other_user.add("other user's secret plan")

    async def scenario() -> None:
        async with mcp_session(user.stack, user.token) as client:
            listed = payload(await client.call_tool("list_todos", {}))
            assert listed["todos"] == []
            result = await client.call_tool("delete_todo", {"todo_id": theirs["id"]})
            assert result.is_error
            assert f"no todo #{theirs['id']}" in result.content[0].text

    anyio.run(scenario)
    assert [t["id"] for t in other_user.todos()] == [theirs["id"]]


def test_mcp_tool_errors_are_explained(user) -> None:
    async def scenario() -> None:
        async with mcp_session(user.stack, None) as client:
            result = await client.call_tool("list_todos", {})
            assert result.is_error
            assert "missing bearer token" in result.content[0].text
        async with mcp_session(user.stack, user.token) as client:
            result = await client.call_tool("add_todo", {"priority": "urgent"})
            assert result.is_error
            text = result.content[0].text
            assert "title: Field required" in text
            assert "priority: Input should be 'low', 'medium' or 'high'" in text

    anyio.run(scenario)
    assert user.todos() == []
