"""The chatbot's HTTP app: /health, the backend-facing /chat endpoint, and MCP at /mcp."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from chatbot import interpreter
from chatbot.accesslog import quiet_probes
from chatbot.actions import ChatReply, ToolSession
from chatbot.auth import bearer_token
from chatbot.backend_client import TodoBackend, new_http_client
from chatbot.llm import LlmChat, new_openai_client
from chatbot.mcp_server import build_mcp_server
from chatbot.settings import Settings

log = logging.getLogger(__name__)

MISSING_TOKEN = "missing bearer token: send the user's login token as 'Authorization: Bearer <JWT>'"


class ChatUser(BaseModel):
    id: int
    email: str


class ChatRequest(BaseModel):
    """The body the backend sends to POST /chat (see the service contract)."""

    model_config = ConfigDict(extra="ignore")
    message: str = Field(min_length=1, max_length=4000)
    user: ChatUser | None = None


def create_app(settings: Settings, today: Callable[[], date] = date.today) -> Starlette:
    """Wire the app from `settings`; `today` is injectable so dates are testable."""
    quiet_probes("/health")  # the chart's probe path (k8s/templates/chatbot-deployment)
    http = new_http_client(settings.backend_url)
    mcp_server = build_mcp_server(http)
    # Stateless: any chatbot replica can serve any MCP request (the Deployment may scale).
    mcp_app = mcp_server.streamable_http_app(
        streamable_http_path="/mcp", stateless_http=True, host=settings.host
    )
    llm = (
        LlmChat(new_openai_client(settings), settings.openrouter_model, settings.openrouter_api_key)
        if settings.openrouter_api_key
        else None
    )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def chat(request: Request) -> JSONResponse:
        token = bearer_token(request.headers)
        if token is None:
            return JSONResponse({"detail": MISSING_TOKEN}, status_code=401)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse(
                {"detail": 'body must be JSON: {"message": "...", "user": {"id": 1, ...}}'},
                status_code=400,
            )
        try:
            chat_request = ChatRequest.model_validate(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
                for err in exc.errors()
            )
            return JSONResponse({"detail": problems}, status_code=422)

        session = ToolSession(TodoBackend(http, token))
        if llm is not None:
            user = chat_request.user
            label = f"{user.email} (id {user.id})" if user else "the signed-in user"
            reply = await llm.respond(chat_request.message, label, session, today())
        else:
            reply = await interpreter.respond(chat_request.message, session, today())
        log.info(
            "chat user=%s mode=%s tools=%s",
            chat_request.user.id if chat_request.user else "?",
            "llm" if llm else "interpreter",
            ",".join(a["tool"] for a in session.actions) or "-",
        )
        return JSONResponse(ChatReply(reply, session.actions).to_json())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # A mounted app's own lifespan never runs, so the MCP session manager is started here.
        async with mcp_server.session_manager.run():
            try:
                yield
            finally:
                await http.aclose()
                if llm is not None:
                    await llm.aclose()

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/chat", chat, methods=["POST"]),
            Mount("/", app=mcp_app),
        ],
        lifespan=lifespan,
    )
