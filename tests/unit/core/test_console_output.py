"""The console and JSON renderers: colour only on a terminal, one JSON object per line, and
no secret printed (redaction reaches nested event data)."""

from __future__ import annotations

import io
import json

from devloop import events as ev
from devloop.redact import Redactor
from devloop.ui.console import ConsoleRenderer, JsonRenderer


def test_console_output_is_coloured_only_on_a_terminal_and_json_is_one_object_per_line():
    event = ev.Event(ev.BUILD_FINISHED, "backend", {"image": "b:dl-0123456789ab",
                                                    "seconds": 1.5})
    plain, tty, js = io.StringIO(), io.StringIO(), io.StringIO()
    ConsoleRenderer(plain, Redactor())(event)
    ConsoleRenderer(tty, Redactor(), colour=True)(event)
    JsonRenderer(js, Redactor())(event)
    assert "\x1b[" not in plain.getvalue() and "build finished: b:dl-0123456789ab in 1.50s" in \
        plain.getvalue()
    assert "\x1b[" in tty.getvalue()
    doc = json.loads(js.getvalue())
    assert doc["type"] == "build.finished" and doc["schema"] == "devloop.event/v1"
    # the editor lines stay uncoloured even on a terminal
    tty = io.StringIO()
    ConsoleRenderer(tty, Redactor(), colour=True)(ev.Event(ev.RELOAD_STARTED, "backend"))
    assert tty.getvalue() == "[devloop] reload started: backend\n"


def test_redaction_covers_nested_event_data():
    out = io.StringIO()
    redactor = Redactor.from_env({"SMTP_PASS": "hunter22", "HOME": "/root"})
    JsonRenderer(out, redactor)(ev.Event(ev.BUILD_FAILED, "api", {
        "error": "login hunter22 refused", "last_lines": ["pw=hunter22"]}))
    assert "hunter22" not in out.getvalue() and out.getvalue().count("***") == 2


def test_the_console_never_prints_a_secret():
    """The console formats whole events itself: their data is redacted like the JSON form's."""
    out = io.StringIO()
    redactor = Redactor.from_env({"SMTP_PASS": "hunter22"})
    console = ConsoleRenderer(out, redactor, colour=False)
    console(ev.Event(ev.POD_LOG, "api", {"pod": "api-1", "container": "api",
                                         "line": "connecting with pw=hunter22"}))
    console(ev.Event(ev.ERROR, "api", {"message": "login hunter22 refused"}))
    assert "hunter22" not in out.getvalue()
    # positive control: the lines were printed, with the secret masked
    assert "connecting with pw=***" in out.getvalue() and "login *** refused" in out.getvalue()
