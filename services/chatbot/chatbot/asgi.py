"""`chatbot.asgi:app`: the app configured from the environment, for a server that imports an
ASGI app (the development image's gunicorn). Production runs `python -m chatbot` instead."""

from __future__ import annotations

import os

from chatbot.__main__ import configure_logging
from chatbot.app import create_app
from chatbot.settings import Settings

configure_logging()
app = create_app(Settings.from_env(os.environ))
