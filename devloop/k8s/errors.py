"""One-line descriptions of Kubernetes client failures.

The client's own exception text is a multi-line dump of headers and JSON; devloop's rule is one
line per error, naming the object, so every module turns client errors into text here.
"""

from __future__ import annotations

import json
import socket

import urllib3
from kubernetes.client.exceptions import ApiException

from devloop.text import one_line as one_line  # re-exported: API errors are told in one line


def api_message(exc: ApiException) -> str:
    """`HTTP 422 Invalid: <server message>` from the Status object the API server sent."""
    message = ""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if body:
        try:
            status = json.loads(body)
        except ValueError:
            message = body.strip()
        else:
            if isinstance(status, dict):
                message = str(status.get("message") or status.get("reason") or "")
    reason = (exc.reason or "").strip()
    text = f"HTTP {exc.status}"
    if reason:
        text += f" {reason}"
    if message:
        text += f": {message}"
    return one_line(text)



def is_connection_error(exc: BaseException) -> bool:
    """True when the API server could not be talked to at all (as opposed to a refusal)."""
    if isinstance(exc, ApiException):
        # status 0 is how the client reports TLS failures.
        return exc.status in (0, None)
    return isinstance(exc, urllib3.exceptions.HTTPError | OSError | socket.timeout)


def connection_detail(exc: BaseException) -> str:
    """The root cause of a connection failure, without urllib3's pool and retry wrapping."""
    cause: BaseException = exc
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        cause = exc.reason
    if isinstance(cause, urllib3.exceptions.NewConnectionError):
        text = str(cause)
        # "<HTTPConnection object at 0x..>: Failed to establish a new connection: [Errno 111] ..."
        return one_line(text.split(": ", 1)[-1], 200)
    if isinstance(cause, ApiException):
        return one_line(str(cause.reason or "TLS error"), 200)
    return one_line(f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__, 200)
