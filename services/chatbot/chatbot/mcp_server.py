"""The MCP server exposing the todo tools over streamable HTTP.

Built on the SDK's low-level `Server` so the tool schemas come from the same argument models
the chat paths use (one definition, no drift). Each `tools/call` acts as the user whose bearer
token arrives in that HTTP request's Authorization header.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp_types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
)

from chatbot import __version__
from chatbot.auth import bearer_token
from chatbot.backend_client import TodoBackend
from chatbot.tools import TOOLS, ToolError, run_tool

INSTRUCTIONS = (
    "Todo tools for Lumina Todo. Send the user's backend JWT as 'Authorization: Bearer <token>'; "
    "every tool acts on that user's own todos. Refer to todos by the id list_todos returns."
)
MISSING_TOKEN = (
    "missing bearer token: send the user's Lumina Todo login token as "
    "'Authorization: Bearer <token>' on the MCP connection"
)


def build_mcp_server(http: httpx2.AsyncClient) -> Server[Any]:
    """An MCP server whose tools call the backend through the shared client `http`."""

    async def list_tools(
        ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        return ListToolsResult(
            tools=[
                Tool(name=spec.name, description=spec.description, input_schema=spec.input_schema())
                for spec in TOOLS.values()
            ]
        )

    async def call_tool(
        ctx: ServerRequestContext[Any], params: CallToolRequestParams
    ) -> CallToolResult:
        token = bearer_token(getattr(ctx.request, "headers", None))
        if token is None:
            return _error(MISSING_TOKEN)
        try:
            result = await run_tool(TodoBackend(http, token), params.name, params.arguments or {})
        except ToolError as exc:
            return _error(str(exc))
        return CallToolResult(
            content=[TextContent(text=json.dumps(result, ensure_ascii=False))],
            structured_content=result,
        )

    def input_schema(name: str) -> dict[str, Any] | None:
        spec = TOOLS.get(name)
        return spec.input_schema() if spec else None

    return Server(
        "lumina-todo",
        version=__version__,
        instructions=INSTRUCTIONS,
        get_tool_input_schema=input_schema,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def _error(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(text=message)], is_error=True)
