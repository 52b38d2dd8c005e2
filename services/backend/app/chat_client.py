"""Forward a chat message to the chatbot service on behalf of the signed-in user.

The chatbot acts through this backend's REST API with the caller's own bearer token, so the
token is passed through unchanged and the chatbot can only see and change that user's todos.
"""

from __future__ import annotations

import httpx
from pydantic import ValidationError

from .schemas import ChatOut

CONNECT_TIMEOUT_SECONDS = 5.0
REPLY_TIMEOUT_SECONDS = 60.0  # a model with several tool calls can take a while


class ChatbotError(RuntimeError):
    """The chatbot could not be reached or gave an unusable answer; maps to a 5xx gateway error."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


def new_http_client() -> httpx.AsyncClient:
    """One pooled client per process; the lifespan closes it on shutdown."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(REPLY_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS),
        trust_env=False,  # cluster-internal call: never route it through an HTTP(S)_PROXY
    )


class ChatbotClient:
    """Calls `POST {CHATBOT_URL}/chat` with the contract fixed in the service conventions."""

    def __init__(self, base_url: str, http: httpx.AsyncClient) -> None:
        self._url = f"{base_url}/chat"
        self._http = http

    async def ask(self, message: str, user_id: int, email: str, token: str) -> ChatOut:
        payload = {"message": message, "user": {"id": user_id, "email": email}}
        try:
            response = await self._http.post(
                self._url, json=payload, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.TimeoutException:
            raise ChatbotError(
                504, f"chatbot at {self._url} did not answer within {REPLY_TIMEOUT_SECONDS:.0f} s"
            ) from None
        except httpx.HTTPError as exc:
            raise ChatbotError(
                502, f"chatbot unreachable at {self._url}: {type(exc).__name__}"
            ) from None
        if response.status_code != 200:
            raise ChatbotError(502, f"chatbot at {self._url} answered HTTP {response.status_code}")
        try:
            return ChatOut.model_validate_json(response.content)
        except ValidationError:
            raise ChatbotError(
                502, f"chatbot at {self._url} sent a reply without the expected JSON fields"
            ) from None
