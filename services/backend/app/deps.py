"""FastAPI dependencies: the shared state, a per-request connection, the signed-in user."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .security import InvalidToken
from .state import AppState
from .users import User, get_user

bearer = HTTPBearer(auto_error=False, description="Access token from POST /api/auth/login")


def get_state(request: Request) -> AppState:
    return request.app.state.lumina


State = Annotated[AppState, Depends(get_state)]


def get_conn(state: State) -> Iterator[sqlite3.Connection]:
    """Open a connection for one request (migrating first if start-up could not)."""
    state.db.ensure_ready()
    conn = state.db.connect()
    try:
        yield conn
    finally:
        conn.close()


# scope="function": closed before the response goes out, so no connection (and its file
# descriptors) outlives the request it served.
Conn = Annotated[sqlite3.Connection, Depends(get_conn, scope="function")]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def get_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    if credentials is None:
        raise _unauthorized("missing bearer token: log in via POST /api/auth/login")
    return credentials.credentials


Token = Annotated[str, Depends(get_token)]


def current_user(token: Token, state: State) -> User:
    """The token's user; its own short connection, so /api/chat holds none while it waits."""
    try:
        user_id = state.tokens.user_id(token)
    except InvalidToken as exc:
        raise _unauthorized(str(exc)) from None
    state.db.ensure_ready()
    with closing(state.db.connect()) as conn:
        user = get_user(conn, user_id)
    if user is None:
        raise _unauthorized("the account for this token no longer exists")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
