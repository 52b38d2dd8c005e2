"""Settings read once from the environment (names fixed by the deployment seed).

Parsing lives here so a bad value fails start-up with one line naming the variable,
instead of surfacing later as a confusing runtime error.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite:///app/data/lumina.db"
DEFAULT_CHATBOT_URL = "http://localhost:8001"
DEFAULT_CORS_ORIGINS = "http://localhost:3000"
DEFAULT_SMTP_HOST = "smtp.gmail.com"
DEFAULT_SMTP_PORT = 587
DEFAULT_JWT_EXPIRE_MINUTES = 60


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class SmtpSettings:
    """Where and as whom the welcome email is sent; `enabled` only with credentials."""

    host: str
    port: int
    user: str | None
    password: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.user and self.password)

    def __repr__(self) -> str:  # keep the password out of any accidental log line
        return f"SmtpSettings(host={self.host!r}, port={self.port}, user={self.user!r})"


@dataclass(frozen=True)
class Settings:
    """Everything the backend reads from its environment, already validated."""

    database_path: Path
    chatbot_url: str
    environment: str
    cors_origins: tuple[str, ...]
    jwt_secret_key: str
    jwt_secret_generated: bool
    jwt_expire_minutes: int
    smtp: SmtpSettings

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def __repr__(self) -> str:  # never print the signing key
        return (
            f"Settings(database_path={str(self.database_path)!r}, "
            f"chatbot_url={self.chatbot_url!r}, environment={self.environment!r}, "
            f"cors_origins={self.cors_origins!r}, smtp={self.smtp!r})"
        )


def database_path_from_url(url: str) -> Path:
    """Map DATABASE_URL to an absolute file path.

    The seed uses `sqlite:///app/data/lumina.db` for the file /app/data/lumina.db, so the part
    after `sqlite://` is an absolute path; the SQLAlchemy-style `sqlite:////abs/path` is accepted
    too. Relative paths and in-memory databases are refused: data must live in a known directory
    (the mounted volume), or it is lost when the pod is replaced.
    """
    prefix = "sqlite://"
    if not url.startswith(prefix):
        raise SettingsError(f"DATABASE_URL must start with {prefix!r}, got {url!r}")
    raw = url[len(prefix) :].split("?", 1)[0]
    if not raw.startswith("/"):
        raise SettingsError(
            f"DATABASE_URL must name an absolute file path such as "
            f"sqlite:///app/data/lumina.db, got {url!r}"
        )
    path = Path("/" + raw.lstrip("/"))
    if path.name in ("", ":memory:") or raw.endswith("/"):
        raise SettingsError(f"DATABASE_URL must name a database file, got {url!r}")
    return path


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _jwt_secret(env: Mapping[str, str], environment: str) -> tuple[str, bool]:
    secret = env.get("JWT_SECRET_KEY", "").strip()
    if secret:
        return secret, False
    if environment == "production":
        raise SettingsError(
            "JWT_SECRET_KEY is not set and ENVIRONMENT=production: set it from the "
            "backend-secrets Secret (e.g. helm --set backend.secrets.jwtSecretKey=...)"
        )
    # Development only: tokens stop working when the process restarts, which is acceptable.
    return secrets.token_urlsafe(48), True


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build Settings from an environment mapping (os.environ in production, a dict in tests)."""
    environment = env.get("ENVIRONMENT", "development").strip().lower() or "development"
    secret, generated = _jwt_secret(env, environment)
    chatbot_url = env.get("CHATBOT_URL", DEFAULT_CHATBOT_URL).strip().rstrip("/")
    if not chatbot_url.startswith(("http://", "https://")):
        raise SettingsError(f"CHATBOT_URL must be an http(s) URL, got {chatbot_url!r}")
    origins = tuple(
        o.strip().rstrip("/")
        for o in env.get("CORS_ORIGINS", DEFAULT_CORS_ORIGINS).split(",")
        if o.strip()
    )
    return Settings(
        database_path=database_path_from_url(
            env.get("DATABASE_URL", DEFAULT_DATABASE_URL).strip() or DEFAULT_DATABASE_URL
        ),
        chatbot_url=chatbot_url,
        environment=environment,
        cors_origins=origins,
        jwt_secret_key=secret,
        jwt_secret_generated=generated,
        jwt_expire_minutes=_int(env, "JWT_EXPIRE_MINUTES", DEFAULT_JWT_EXPIRE_MINUTES, 1, 43200),
        smtp=SmtpSettings(
            host=env.get("SMTP_HOST", "").strip() or DEFAULT_SMTP_HOST,
            port=_int(env, "SMTP_PORT", DEFAULT_SMTP_PORT, 1, 65535),
            user=env.get("SMTP_USER", "").strip() or None,
            password=env.get("SMTP_PASS", "") or None,
        ),
    )
