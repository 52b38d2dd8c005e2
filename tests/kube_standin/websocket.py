"""Server side of RFC 6455, just what the Kubernetes channel protocols (exec, portforward) need."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import struct
import threading
from typing import Any, BinaryIO

from . import errors

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


class WebSocket:
    def __init__(self, rfile: BinaryIO, wfile: Any) -> None:
        self._rfile = rfile
        self._wfile = wfile
        self._lock = threading.Lock()
        self.closed = False

    def send(self, payload: bytes, opcode: int = OP_BINARY) -> None:
        header = bytes([0x80 | opcode])
        size = len(payload)
        if size < 126:
            header += bytes([size])
        elif size < 65536:
            header += bytes([126]) + struct.pack("!H", size)
        else:
            header += bytes([127]) + struct.pack("!Q", size)
        with self._lock:
            if self.closed and opcode != OP_CLOSE:
                return
            self._wfile.write(header + payload)
            self._wfile.flush()

    def _read_exact(self, count: int) -> bytes:
        data = self._rfile.read(count)
        if data is None or len(data) < count:
            raise EOFError
        return data

    def recv(self) -> bytes | None:
        """The next data message (binary or text); None once the peer closed."""
        message = b""
        while True:
            try:
                first, second = self._read_exact(2)
                opcode, final = first & 0x0F, bool(first & 0x80)
                size = second & 0x7F
                if size == 126:
                    size = struct.unpack("!H", self._read_exact(2))[0]
                elif size == 127:
                    size = struct.unpack("!Q", self._read_exact(8))[0]
                mask = self._read_exact(4) if second & 0x80 else b""
                payload = self._read_exact(size) if size else b""
            except (EOFError, OSError, ValueError):
                return None
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == OP_CLOSE:
                self.close()
                return None
            if opcode == OP_PING:
                self.send(payload, OP_PONG)
                continue
            if opcode == OP_PONG:
                continue
            message += payload
            if final:
                return message

    def close(self, code: int = 1000) -> None:
        if self.closed:
            return
        # The handler may already have closed the stream (ValueError on a closed file).
        with contextlib.suppress(OSError, ValueError):
            self.send(struct.pack("!H", code), OP_CLOSE)
        self.closed = True


def accept(handler: Any, supported: tuple[str, ...]) -> tuple[WebSocket, str]:
    """Completes the upgrade handshake on `handler` (a BaseHTTPRequestHandler)."""
    headers = handler.headers
    if "websocket" not in headers.get("Upgrade", "").lower():
        raise errors.bad_request(
            "Upgrade request required: the stand-in serves exec/portforward over WebSockets "
            "only (no SPDY)")
    offered = [p.strip() for p in headers.get("Sec-WebSocket-Protocol", "").split(",")
               if p.strip()]
    chosen = next((p for p in supported if p in offered), None)
    if offered and chosen is None:
        raise errors.bad_request(
            f"none of the offered subprotocols {offered} is supported; use one of "
            f"{list(supported)}")
    key = headers.get("Sec-WebSocket-Key", "")
    digest = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    handler.send_response(101, "Switching Protocols")
    handler.send_header("Upgrade", "websocket")
    handler.send_header("Connection", "Upgrade")
    handler.send_header("Sec-WebSocket-Accept", digest)
    if chosen:
        handler.send_header("Sec-WebSocket-Protocol", chosen)
    handler.end_headers()
    handler.wfile.flush()
    handler.close_connection = True
    return WebSocket(handler.rfile, handler.wfile), chosen or "channel.k8s.io"
