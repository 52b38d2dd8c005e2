"""GET /api/health: liveness/readiness probe that proves the database is usable."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..db import DatabaseUnavailable
from ..deps import State

log = logging.getLogger("app.health")
router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health", responses={503: {"description": "database unusable"}})
def health(state: State) -> JSONResponse:
    try:
        state.db.check()
    except DatabaseUnavailable as exc:
        log.warning("health: database unavailable", extra={"fields": {"error": str(exc)}})
        return JSONResponse(
            status_code=503,
            content={"status": "error", "database": "unavailable", "detail": str(exc)},
        )
    return JSONResponse({"status": "ok", "database": "ok"})
