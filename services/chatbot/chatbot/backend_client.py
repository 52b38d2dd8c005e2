"""Calls to the backend's todo REST API on behalf of one user.

The chatbot never owns todo data: every read and write goes through the backend's public API
with the caller's own bearer token, so the backend's authorisation decides what a user sees.
"""

from __future__ import annotations

from typing import Any

import httpx2

TODOS_PATH = "/api/todos"


class BackendError(Exception):
    """The backend refused or failed a call; the message is safe to show to the user."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def new_http_client(backend_url: str, timeout: float = 10.0) -> httpx2.AsyncClient:
    """One pooled client per process; `trust_env=False` keeps in-cluster calls off any proxy."""
    return httpx2.AsyncClient(
        base_url=backend_url, timeout=timeout, trust_env=False, follow_redirects=True
    )


class TodoBackend:
    """The backend's todo endpoints, bound to one user's token.

    Cheap to create per request: it only holds references to the shared HTTP client.
    """

    def __init__(self, http: httpx2.AsyncClient, token: str) -> None:
        self._http = http
        self._headers = {"Authorization": f"Bearer {token}"}

    async def list_todos(self) -> list[dict[str, Any]]:
        todos = await self._call("GET", TODOS_PATH)
        if isinstance(todos, dict) and isinstance(todos.get("items"), list):
            todos = todos["items"]  # tolerate a paginated envelope
        if not isinstance(todos, list):
            raise BackendError("the backend returned an unexpected todo list")
        return todos

    async def get_todo(self, todo_id: int) -> dict[str, Any]:
        return await self._call("GET", f"{TODOS_PATH}/{todo_id}", todo_id=todo_id)

    async def create_todo(self, fields: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", TODOS_PATH, json=fields)

    async def update_todo(self, todo_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        return await self._call("PATCH", f"{TODOS_PATH}/{todo_id}", json=fields, todo_id=todo_id)

    async def delete_todo(self, todo_id: int) -> None:
        await self._call("DELETE", f"{TODOS_PATH}/{todo_id}", todo_id=todo_id)

    async def _call(
        self, method: str, path: str, *, json: Any = None, todo_id: int | None = None
    ) -> Any:
        try:
            response = await self._http.request(method, path, json=json, headers=self._headers)
        except httpx2.TimeoutException as exc:
            raise BackendError(f"the todo backend at {self._http.base_url} timed out") from exc
        except httpx2.TransportError as exc:
            raise BackendError(f"cannot reach the todo backend at {self._http.base_url}") from exc
        if response.status_code == 401:
            raise BackendError("the backend rejected your login token; log in again", 401)
        if response.status_code == 404 and todo_id is not None:
            raise BackendError(f"there is no todo #{todo_id} in your list", 404)
        if response.status_code >= 400:
            detail = _detail(response)
            raise BackendError(
                f"the backend refused {method} {path} ({response.status_code}): {detail}",
                response.status_code,
            )
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise BackendError(f"the backend sent a non-JSON answer to {method} {path}") from exc


def _detail(response: httpx2.Response) -> str:
    """The backend's own explanation (FastAPI's `detail`), shortened to one line."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI validation errors
        detail = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', [])[1:])}: {err.get('msg')}"
            if isinstance(err, dict)
            else str(err)
            for err in detail
        )
    return str(detail)[:300]
