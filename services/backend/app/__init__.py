"""Lumina Todo backend: FastAPI + SQLite REST API (auth, todos, chat forwarding)."""
