"""Chat through an OpenAI-compatible model (OpenRouter by default) that calls the todo tools.

The loop is model -> tool calls -> tool results -> model, bounded by `max_rounds` so a model
that keeps calling tools cannot hold a request forever. Provider failures become a reply that
says what went wrong; they never surface as a server error.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from typing import Any

import openai
from openai import AsyncOpenAI

from chatbot.actions import ToolSession
from chatbot.settings import Settings
from chatbot.tools import TOOLS, ToolError

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are the Lumina Todo assistant. You manage the signed-in user's todo list, and you "
    "change it only through the provided tools. Today is {today} ({weekday}). The user is "
    "{user}. Todos are identified by id: call list_todos to find an id when the user names a "
    "todo by its words, and never invent ids; if several todos match, ask which one. Dates are "
    "YYYY-MM-DD. After acting, answer in one or two short plain-text sentences saying what "
    "you did."
)


def new_openai_client(settings: Settings) -> AsyncOpenAI:
    """The provider client; one retry keeps a flaky provider from stalling a chat for long."""
    return AsyncOpenAI(
        api_key=settings.openrouter_api_key,
        base_url=settings.openrouter_base_url,
        max_retries=1,
        timeout=60.0,
        default_headers={"X-Title": "Lumina Todo"},
    )


def tool_schemas() -> list[dict[str, Any]]:
    """The todo tools in the chat-completions `tools` format."""
    return [
        {
            "type": "function",
            "function": {
                "name": spec.name,
                "description": spec.description,
                "parameters": spec.input_schema(),
            },
        }
        for spec in TOOLS.values()
    ]


class LlmChat:
    def __init__(self, client: AsyncOpenAI, model: str, api_key: str, max_rounds: int = 5):
        self._client = client
        self._model = model
        self._api_key = api_key  # only to scrub it from provider messages we pass on
        self._max_rounds = max_rounds
        self._tools = tool_schemas()

    async def respond(
        self, message: str, user_label: str, session: ToolSession, today: date
    ) -> str:
        """Answer `message`, running the tool calls the model asks for through `session`."""
        prompt = SYSTEM_PROMPT.format(
            today=today.isoformat(), weekday=f"{today:%A}", user=user_label
        )
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": prompt},
            {"role": "user", "content": message},
        ]
        for _ in range(self._max_rounds):
            try:
                completion = await self._client.chat.completions.create(
                    model=self._model, messages=messages, tools=self._tools, tool_choice="auto"
                )
            except openai.OpenAIError as exc:
                return self._provider_failure(exc, session)
            if not completion.choices:
                return "The language model sent an empty answer; please try again."
            reply = completion.choices[0].message
            calls = [c for c in reply.tool_calls or [] if c.type == "function"]
            if not calls:
                return (reply.content or "").strip() or "Done."
            messages.append(
                {
                    "role": "assistant",
                    "content": reply.content,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {
                                "name": c.function.name,
                                "arguments": c.function.arguments,
                            },
                        }
                        for c in calls
                    ],
                }
            )
            for call in calls:
                result = await _run_call(session, call.function.name, call.function.arguments)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        return (
            f"I stopped after {self._max_rounds} rounds of tool calls without finishing."
            + _done_so_far(session)
        )

    async def aclose(self) -> None:
        await self._client.close()

    def _provider_failure(self, exc: openai.OpenAIError, session: ToolSession) -> str:
        status = getattr(exc, "status_code", None)
        log.warning("LLM provider call failed: %s (status %s)", type(exc).__name__, status)
        if isinstance(exc, openai.AuthenticationError):
            text = (
                "The language model provider rejected the API key (HTTP 401); "
                "the operator should check OPENROUTER_API_KEY."
            )
        elif isinstance(exc, openai.RateLimitError):
            text = "The language model is rate-limited right now; please try again in a minute."
        elif isinstance(exc, openai.APITimeoutError):
            text = "The language model did not answer in time; please try again."
        elif isinstance(exc, openai.APIConnectionError):
            text = "I can't reach the language model provider right now; please try again later."
        elif isinstance(exc, openai.APIStatusError):
            detail = self._scrub(str(exc.message))[:200]
            text = f"The language model provider returned an error (HTTP {status}): {detail}"
        else:
            text = f"The language model sent an answer I could not read ({type(exc).__name__})."
        return text + _done_so_far(session)

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "[redacted]") if self._api_key else text


async def _run_call(session: ToolSession, name: str, raw_arguments: str | None) -> str:
    """Run one model tool call; errors go back to the model as JSON it can read and fix."""
    try:
        arguments = json.loads(raw_arguments) if raw_arguments else {}
        if not isinstance(arguments, dict):
            raise ToolError("tool arguments must be a JSON object")
        result = await session.run(name, arguments)
    except json.JSONDecodeError as exc:
        return json.dumps({"error": f"arguments are not valid JSON: {exc.msg}"})
    except ToolError as exc:
        return json.dumps({"error": str(exc)})
    return json.dumps(result, ensure_ascii=False)


def _done_so_far(session: ToolSession) -> str:
    if not session.actions:
        return ""
    return " Before that I ran: " + ", ".join(a["tool"] for a in session.actions) + "."
