"""POST /api/chat: hand the user's message to the chatbot and return its reply."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException

from ..chat_client import ChatbotError
from ..deps import CurrentUser, State, Token
from ..schemas import ChatIn, ChatOut

log = logging.getLogger("app.chat")
router = APIRouter(prefix="/api", tags=["chat"])


@router.post(
    "/chat",
    response_model=ChatOut,
    responses={502: {"description": "chatbot unreachable"}, 504: {"description": "timeout"}},
)
async def chat(body: ChatIn, user: CurrentUser, token: Token, state: State) -> ChatOut:
    assert state.chatbot is not None, "chatbot client is created by the app lifespan"
    try:
        return await state.chatbot.ask(body.message, user.id, user.email, token)
    except ChatbotError as exc:
        log.warning(
            "chat forward failed", extra={"fields": {"user_id": user.id, "error": exc.detail}}
        )
        raise HTTPException(exc.status_code, detail=exc.detail) from None
