"""gunicorn settings of the backend's development image (Dockerfile stage `dev`).

`kill -HUP 1` (devloop's live-update step after a file sync) makes the master fork a new worker
that imports app/ afresh, then stop the old one. The master imported the libraries below once
and keeps the port open across reloads, so a reload costs only the import of app/ and waiting
requests queue in the socket's backlog instead of being refused.
"""
# ruff: noqa: F401  (imported once in the master, inherited by every worker)

import argon2
import email_validator
import fastapi
import fastapi.middleware.cors
import httpx
import jwt
import pydantic
import uvicorn_worker

bind = "0.0.0.0:8000"
workers = 1
worker_class = "uvicorn_worker.UvicornWorker"
graceful_timeout = 3
control_socket_disable = True
