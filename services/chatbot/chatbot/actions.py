"""What a /chat turn did: the reply text and the tool calls that ran for the user."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chatbot.backend_client import TodoBackend
from chatbot.tools import run_tool


@dataclass
class ChatReply:
    reply: str
    actions: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"reply": self.reply, "actions": self.actions}


@dataclass
class ToolSession:
    """Runs tools for one user during one chat turn and records each successful call.

    Failed calls raise `ToolError` and are not recorded: `actions` lists what actually happened.
    """

    backend: TodoBackend
    actions: list[dict[str, Any]] = field(default_factory=list)

    async def run(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = await run_tool(self.backend, name, arguments)
        self.actions.append({"tool": name, "result": result})
        return result
