"""One free loopback port for a server a test starts, taken where no client socket lands.

A port the kernel hands out for `bind(("127.0.0.1", 0))` comes from the ephemeral range, the
same range every outgoing connection takes its local port from: in a parallel run, between
closing the probe socket and the server's bind, a client connection of another test took
it ("[Errno 98] address already in use": 9 chatbot tests failed at setup). Ports below that
range are only ever taken by servers, so a random one that binds now stays free.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10000  # above the well-known and registered services a developer may run


def _below_ephemeral() -> range:
    try:
        first = int(_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first = 32768  # Linux's default
    return range(_LOWEST, max(first, _LOWEST + 1000))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now and no outgoing connection takes."""
    ports = _below_ephemeral()
    for _ in range(200):
        port = random.choice(ports)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1} after 200 tries")
