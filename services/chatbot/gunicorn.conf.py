"""gunicorn settings of the Python services' development images (Dockerfile stage `dev`).

The same file in services/backend and services/chatbot (tests/images checks they stay equal);
what differs per service is in its Dockerfile: PRELOAD_MODULES, --bind and the app.

`kill -HUP 1` (devloop's live-update run step after a file sync) makes the master fork a fresh
worker that imports the app's code again, then stop the old worker. The master imported the
libraries in PRELOAD_MODULES once, so a reload costs only the import of the app's own package,
and it keeps the port open across reloads, so requests wait in the backlog instead of being
refused. A worker whose app does not import (say, a synced syntax error) logs the traceback and
answers 500 until the next HUP, rather than stopping gunicorn and with it the container.
"""

import importlib
import os

for _module in os.environ.get("PRELOAD_MODULES", "").split():
    importlib.import_module(_module)

workers = 1
worker_class = "uvicorn_worker.UvicornWorker"
graceful_timeout = 3
control_socket_disable = True
BROKEN = b"the app failed to import (traceback in the container log); save a fix to reload\n"


def post_fork(server, worker) -> None:
    """Keep the worker, and so the container, alive when the app fails to import."""
    load = worker.load_wsgi

    def load_or_answer_500() -> None:
        try:
            load()
        except Exception:
            worker.log.exception("the app failed to import; waiting for the next reload")
            worker.wsgi = broken_app

    worker.load_wsgi = load_or_answer_500


async def broken_app(scope, receive, send) -> None:
    """Stands in for an app that does not import: 500 with a pointer to the log."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "http":
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        await send({"type": "http.response.start", "status": 500, "headers": headers})
        await send({"type": "http.response.body", "body": BROKEN})
