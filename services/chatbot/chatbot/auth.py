"""Reading the caller's bearer token from an incoming HTTP request."""

from __future__ import annotations

from collections.abc import Mapping


def bearer_token(headers: Mapping[str, str] | None) -> str | None:
    """The token from `Authorization: Bearer <token>`, or None when absent or malformed.

    The token is passed through to the backend untouched; the backend verifies it.
    """
    if not headers:
        return None
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
