"""Chatbot settings, read once from the environment names the Kubernetes seed fixes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_MODEL = "openai/gpt-4o-mini"
DEFAULT_OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
DEFAULT_BACKEND_URL = "http://localhost:8000"


class SettingsError(ValueError):
    """A chatbot environment variable holds a value the service cannot start with."""


@dataclass(frozen=True)
class Settings:
    """Everything the chatbot reads from its environment.

    The API key is excluded from repr so that printing or logging settings never leaks it.
    """

    host: str = "0.0.0.0"
    port: int = 8001
    environment: str = "production"
    backend_url: str = DEFAULT_BACKEND_URL
    openrouter_api_key: str | None = field(default=None, repr=False)
    openrouter_model: str = DEFAULT_MODEL
    openrouter_base_url: str = DEFAULT_OPENROUTER_BASE_URL

    @property
    def llm_enabled(self) -> bool:
        """True when /chat should ask the model; False selects the offline interpreter."""
        return bool(self.openrouter_api_key)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from `env`, raising SettingsError that names the bad variable."""

        def get(name: str, default: str) -> str:
            value = env.get(name, "").strip()
            return value or default

        return cls(
            host=get("MCP_SERVER_HOST", cls.host),
            port=_port(get("MCP_SERVER_PORT", str(cls.port))),
            environment=get("ENVIRONMENT", cls.environment),
            backend_url=_http_url("BACKEND_URL", get("BACKEND_URL", DEFAULT_BACKEND_URL)),
            openrouter_api_key=env.get("OPENROUTER_API_KEY", "").strip() or None,
            openrouter_model=get("OPENROUTER_MODEL", DEFAULT_MODEL),
            openrouter_base_url=_http_url(
                "OPENROUTER_BASE_URL", get("OPENROUTER_BASE_URL", DEFAULT_OPENROUTER_BASE_URL)
            ),
        )


def _port(raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise SettingsError(f"MCP_SERVER_PORT must be a port number 1-65535, got {raw!r}")
    return port


def _http_url(name: str, raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"{name} must be an http(s) URL such as http://host:8000, got {raw!r}")
    return raw.rstrip("/")
