"""How long devloop waits for the Kubernetes API: the one place request timeouts are chosen.

Every request has a timeout, so a silently dropped connection or a stalled server is noticed
instead of hanging a reload, a watch or `devloop status`. The kubernetes client takes
`_request_timeout=(connect, read)`: the connect part is the same everywhere (a server that does
not accept a connection within it is not there); the read part depends on what is asked.
"""

from __future__ import annotations

Timeout = tuple[float, float]  # (connect, read) seconds: the client's `_request_timeout`

CONNECT_S = 5
# One ordinary request: read, list, patch, create or delete one thing.
REQUEST: Timeout = (CONNECT_S, 15)
# A request whose answer may be big or slow to make: API discovery, server-side apply, `down`.
BULK: Timeout = (CONNECT_S, 30)
# A look whose answer only helps if it is quick (the pod after a failed exec, a node list).
QUICK: Timeout = (CONNECT_S, 10)
# How much longer than the server's own watch timeout a watch request may stay silent.
WATCH_SLACK_S = 5


def stream(read_s: float) -> Timeout:
    """A streaming request (a log, an exec) that may stay silent for `read_s` seconds."""
    return (CONNECT_S, read_s)


def watch(server_timeout_s: float) -> Timeout:
    """A watch the server ends after `server_timeout_s` (its `timeout_seconds`): silence
    beyond that, plus a little slack, means the connection is gone."""
    return (CONNECT_S, server_timeout_s + WATCH_SLACK_S)
