"""App factory and the module-level `app` that uvicorn serves (`uvicorn app.main:app`)."""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from .accesslog import quiet_probes
from .chat_client import ChatbotClient, new_http_client
from .db import Database, DatabaseUnavailable
from .logging_setup import configure_logging
from .routes import auth, chat, health, todos
from .security import Passwords, TokenIssuer
from .settings import Settings, SettingsError, load_settings
from .state import AppState

log = logging.getLogger("app")


def _startup_report(state: AppState) -> None:
    s = state.settings
    log.info(
        "backend starting",
        extra={
            "fields": {
                "environment": s.environment,
                "database": str(s.database_path),
                "chatbot_url": s.chatbot_url,
                "cors_origins": list(s.cors_origins),
                "smtp": "enabled" if s.smtp.enabled else "disabled",
            }
        },
    )
    if s.jwt_secret_generated:
        log.warning(
            "JWT_SECRET_KEY not set: using a random per-process key (development only); "
            "tokens stop working when the process restarts"
        )
    try:
        state.db.ensure_ready()
    except DatabaseUnavailable as exc:
        # Keep serving: /api/health answers 503 with the reason, and the next request retries.
        log.error("database unavailable at start-up", extra={"fields": {"error": str(exc)}})


def create_app(settings: Settings) -> FastAPI:
    """Build the FastAPI application for these settings (tests and uvicorn both use this)."""
    configure_logging()
    quiet_probes("/api/health")  # the chart's probe path (k8s/templates/backend-deployment)
    state = AppState(
        settings=settings,
        db=Database(settings.database_path),
        passwords=Passwords(),
        tokens=TokenIssuer(settings.jwt_secret_key, settings.jwt_expire_minutes),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _startup_report(state)
        async with new_http_client() as http:
            state.chatbot = ChatbotClient(settings.chatbot_url, http)
            yield
        log.info("backend stopped")

    app = FastAPI(title="Lumina Todo backend", version="1.0.0", lifespan=lifespan)
    app.state.lumina = state
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
    )

    @app.exception_handler(DatabaseUnavailable)
    @app.exception_handler(sqlite3.DatabaseError)
    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "database error",
            extra={"fields": {"path": request.url.path, "error": f"{type(exc).__name__}: {exc}"}},
        )
        return JSONResponse(status_code=503, content={"detail": "database unavailable"})

    for module in (health, auth, todos, chat):
        app.include_router(module.router)
    return app


def _app_from_environment() -> FastAPI:
    """Load settings from os.environ; a configuration error ends the process with one line."""
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        print(f"lumina-backend: configuration error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    return create_app(settings)


app = _app_from_environment()
