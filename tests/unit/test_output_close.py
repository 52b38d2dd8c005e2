"""The CLI closes its renderer when the command ends: threads that outlive the command (a
reload's last step, a log follower) may still publish while the interpreter shuts down, and a
write to stdout in flight then aborts Python ("could not acquire lock for <stdout> at
interpreter shutdown"; a watch stopped by Ctrl-C exited with SIGABRT once in CI). close() waits
for the write in flight; after it nothing is written."""

from __future__ import annotations

import io
import threading

import pytest

from devloop import events as ev
from devloop.redact import Redactor
from devloop.ui.console import ConsoleRenderer, JsonRenderer


class _SlowPipe(io.StringIO):
    """A stream whose first write blocks until released (a pipe nobody reads for a while)."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = threading.Event()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.writing.set()
        assert self.release.wait(30)
        return super().write(text)


@pytest.mark.parametrize("make", [lambda s: JsonRenderer(s, Redactor()),
                                  lambda s: ConsoleRenderer(s, Redactor(), colour=False)],
                         ids=["json", "console"])
def test_close_waits_for_the_write_in_flight_then_nothing_is_written(make) -> None:
    stream = _SlowPipe()
    renderer = make(stream)
    writer = threading.Thread(target=renderer, args=(
        ev.Event(ev.WARNING, None, {"message": "written before the end"}),))
    writer.start()
    assert stream.writing.wait(10)
    closer = threading.Thread(target=renderer.close)
    closer.start()
    closer.join(0.3)
    assert closer.is_alive()  # waits: the interpreter must not shut down under that write
    stream.release.set()
    closer.join(10)
    writer.join(10)
    assert not closer.is_alive() and not writer.is_alive()
    assert "written before the end" in stream.getvalue()  # positive control
    before = stream.getvalue()
    renderer(ev.Event(ev.WARNING, None, {"message": "published after the command ended"}))
    assert stream.getvalue() == before
