"""Registration, login and the current user."""

from __future__ import annotations

import logging

from fastapi import APIRouter, BackgroundTasks, HTTPException, status

from .. import users
from ..deps import Conn, CurrentUser, State
from ..email import send_welcome_email
from ..schemas import LoginIn, RegisterIn, TokenOut, UserOut

log = logging.getLogger("app.auth")
router = APIRouter(prefix="/api/auth", tags=["auth"])


def _user_out(user: users.User) -> UserOut:
    return UserOut(id=user.id, email=user.email, name=user.name)


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserOut)
def register(body: RegisterIn, background: BackgroundTasks, state: State, conn: Conn) -> UserOut:
    email = body.email.lower()
    password_hash = state.passwords.hash(body.password)
    try:
        user = users.create_user(conn, email, body.name or None, password_hash)
    except users.EmailTaken:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail="an account with this email already exists"
        ) from None
    log.info("user registered", extra={"fields": {"user_id": user.id}})
    # Runs after the response is sent, so a slow or broken mail server cannot delay it.
    background.add_task(send_welcome_email, state.settings.smtp, user.email, user.name)
    return _user_out(user)


@router.post("/login", response_model=TokenOut)
def login(body: LoginIn, state: State, conn: Conn) -> TokenOut:
    user = users.find_by_email(conn, body.email.lower())
    if not state.passwords.verify(user.password_hash if user else None, body.password):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="incorrect email or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    assert user is not None
    if state.passwords.needs_rehash(user.password_hash):
        users.set_password_hash(conn, user.id, state.passwords.hash(body.password))
    token = state.tokens.issue(user.id, user.email)
    return TokenOut(access_token=token, expires_in=state.tokens.expire_minutes * 60)


@router.get("/me", response_model=UserOut)
def me(user: CurrentUser) -> UserOut:
    return _user_out(user)
