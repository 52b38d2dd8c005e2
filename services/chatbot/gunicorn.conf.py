"""gunicorn settings of the chatbot's development image (Dockerfile stage `dev`).

`kill -HUP 1` (devloop's live-update step after a file sync) makes the master fork a new worker
that imports chatbot/ afresh, then stop the old one. The master imported the libraries below
once and keeps the port open across reloads, so a reload costs only the import of chatbot/ and
waiting requests queue in the socket's backlog instead of being refused.
"""
# ruff: noqa: F401  (imported once in the master, inherited by every worker)

import os

import httpx2
import mcp.server.context
import mcp.server.lowlevel
import mcp_types
import openai
import pydantic
import starlette.applications
import starlette.routing
import uvicorn_worker

bind = f"{os.environ.get('MCP_SERVER_HOST', '0.0.0.0')}:{os.environ.get('MCP_SERVER_PORT', '8001')}"
workers = 1
worker_class = "uvicorn_worker.UvicornWorker"
graceful_timeout = 3
control_socket_disable = True
