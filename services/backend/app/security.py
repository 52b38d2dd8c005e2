"""Password hashing (argon2id) and access tokens (HS256 JWT with expiry)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

JWT_ALGORITHM = "HS256"


class InvalidToken(ValueError):
    """The bearer token is malformed, badly signed or expired."""


# Each argon2 hash takes 64 MiB for ~50 ms. The threadpool runs up to 40 requests at once, so
# without a cap a burst of logins could use 2.5 GiB in a pod limited to 512 MiB.
MAX_CONCURRENT_HASHES = 2


class Passwords:
    """Hash and verify passwords; argon2-cffi picks safe parameters and salts for us."""

    def __init__(self) -> None:
        self._hasher = PasswordHasher()
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT_HASHES)
        self._dummy_lock = threading.Lock()
        self._dummy: str | None = None

    @property
    def _dummy_hash(self) -> str:
        """Verified against when the email is unknown, so both failures take the same time.

        Made on first use, not at start-up: one hash costs ~0.4 s at the pod's 500m CPU limit,
        which every (re)start of the process would otherwise wait for."""
        with self._dummy_lock:
            if self._dummy is None:
                self._dummy = self.hash("lumina-dummy-password")
            return self._dummy

    def hash(self, password: str) -> str:
        with self._slots:
            return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """Check a password; pass None for an unknown user to spend the same time anyway."""
        if password_hash is None:
            self._matches(self._dummy_hash, password)
            return False
        return self._matches(password_hash, password)

    def _matches(self, password_hash: str, password: str) -> bool:
        try:
            with self._slots:
                return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


@dataclass(frozen=True)
class TokenIssuer:
    """Issue and check access tokens signed with the configured secret."""

    secret: str
    expire_minutes: int

    def issue(self, user_id: int, email: str) -> str:
        now = datetime.now(UTC)
        claims = {
            "sub": str(user_id),
            "email": email,
            "iat": now,
            "exp": now + timedelta(minutes=self.expire_minutes),
        }
        return jwt.encode(claims, self.secret, algorithm=JWT_ALGORITHM)

    def user_id(self, token: str) -> int:
        """Return the user id a valid token was issued for."""
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[JWT_ALGORITHM],
                options={"require": ["exp", "sub"]},
            )
            return int(claims["sub"])
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired: log in again") from None
        except (jwt.InvalidTokenError, ValueError):
            raise InvalidToken("invalid token") from None
