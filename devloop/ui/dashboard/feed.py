"""The messages open pages are sent, encoded once and kept in one bounded ring.

Every SSE connection reads the same ring at its own position (its cursor), so publishing costs one
append whatever the number of pages, and no page can make devloop's memory grow: a page that
falls further behind than the ring holds has lost messages, and is told so (`missed`) instead of
being queued for without bound (a frozen tab once grew devloop to 1.18 GB).
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass

MAX_MESSAGES = 10_000  # kept for pages that lag; beyond either bound the oldest go first
MAX_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class Message:
    seq: int
    kind: str  # "event" (every stream) or "card" (streams with ?cards=1)
    frame: bytes  # the whole SSE message: `id:`, `event:` (cards), `data:` (one JSON line)


class Feed:
    """An append-only ring of messages numbered from 1; readers wait on a condition."""

    def __init__(self, max_messages: int = MAX_MESSAGES, max_bytes: int = MAX_BYTES,
                 run: str = "") -> None:
        self.run = run  # prefixes every id, so an id from an earlier devloop never resumes
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._ring: deque[Message] = deque()
        self._bytes = 0
        self._seq = 0
        self._readers = 0
        self._changed = threading.Condition()

    @property
    def seq(self) -> int:
        """The number of the last message appended (0: none yet)."""
        return self._seq

    @property
    def readers(self) -> int:
        return self._readers

    def kept(self) -> tuple[int, int]:
        """(messages, bytes) held now: never more than the bounds."""
        with self._changed:
            return len(self._ring), self._bytes

    def append(self, kind: str, data: bytes) -> None:
        """O(1) and never blocks on a reader; with no reader open nothing is kept."""
        with self._changed:
            self._seq += 1
            if not self._readers:
                return
            frame = self.frame(self._seq, kind, data)
            self._ring.append(Message(self._seq, kind, frame))
            self._bytes += len(frame)
            while self._ring and (len(self._ring) > self.max_messages
                                  or self._bytes > self.max_bytes):
                self._bytes -= len(self._ring.popleft().frame)
            self._changed.notify_all()

    def frame(self, seq: int, kind: str, data: bytes) -> bytes:
        head = b"" if kind == "event" else f"event: {kind}\n".encode()
        return f"id: {self.run}-{seq}\n".encode() + head + b"data: " + data + b"\n\n"

    def position(self, last_id: str | None) -> int | None:
        """The feed position a reconnecting page's Last-Event-ID names (None: not this run's)."""
        run, _, seq = (last_id or "").strip().rpartition("-")
        if run != self.run or not seq.isascii() or not seq.isdigit() or len(seq) > 18:
            return None
        return int(seq) if int(seq) <= self._seq else None

    def open(self) -> None:
        with self._changed:
            self._readers += 1

    def close(self) -> None:
        with self._changed:
            self._readers -= 1
            if not self._readers:
                self._ring.clear()
                self._bytes = 0

    def wake(self) -> None:
        """Wake every waiting reader (devloop stops)."""
        with self._changed:
            self._changed.notify_all()

    def read(self, after: int, timeout: float, limit: int = 500) -> tuple[list[Message], int]:
        """Messages numbered above `after` (waiting up to `timeout` for one), and how many of
        those are gone from the ring already (the reader fell behind: it has missed them)."""
        with self._changed:
            if self._seq <= after:
                self._changed.wait(timeout)
            first = self._ring[0].seq if self._ring else self._seq + 1
            missed = max(0, min(first, self._seq + 1) - after - 1)
            start = max(after + 1, first) - first  # index of the first wanted message
            return list(itertools.islice(self._ring, start, start + limit)), missed
