"""The objects one running backend shares between requests, built once by the app factory."""

from __future__ import annotations

from dataclasses import dataclass

from .chat_client import ChatbotClient
from .db import Database
from .security import Passwords, TokenIssuer
from .settings import Settings


@dataclass
class AppState:
    settings: Settings
    db: Database
    passwords: Passwords
    tokens: TokenIssuer
    chatbot: ChatbotClient | None = None  # set by the lifespan, which owns the HTTP client
