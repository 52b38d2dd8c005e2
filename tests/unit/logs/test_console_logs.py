"""What the console prints of builds and pod logs (the JSON output keeps every event), and
how a log stream decides it has fallen behind."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import jsonschema

from devloop import events as ev
from devloop.cli import _parser
from devloop.follow.logs import _Stream, format_timestamp, parse_timestamp
from devloop.redact import Redactor
from devloop.ui.console import ConsoleRenderer, JsonRenderer

BUILD = ["Step 1/3 : FROM python:3.11", " ---> Using cache", "Step 2/3 : COPY . /app",
         " ---> Using cache", "Step 3/3 : RUN pip install -r requirements.txt",
         "Collecting fastapi"]


def _build(render, failed: bool) -> None:
    render(ev.Event(ev.BUILD_STARTED, "api", {"image": "api:dl-1"}))
    for line in BUILD:
        render(ev.Event(ev.BUILD_OUTPUT, "api", {"line": line}))
    if failed:
        render(ev.Event(ev.BUILD_FAILED, "api", {"image": "api:dl-1", "error": "step 3 failed",
                                                 "step": None, "reason": "x", "last_lines": []}))
    else:
        render(ev.Event(ev.BUILD_FINISHED, "api", {"image": "api:dl-1", "seconds": 4.2,
                                                   "image_id": "sha256:1"}))


def test_a_successful_build_is_one_summary_line() -> None:
    out = io.StringIO()
    _build(ConsoleRenderer(out, Redactor(), colour=False), failed=False)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines  # started, finished
    assert lines[1].endswith("build finished: api:dl-1 in 4.20s (3 steps, 2 cached)")


def test_a_failed_build_shows_all_of_its_output_before_the_error() -> None:
    out = io.StringIO()
    _build(ConsoleRenderer(out, Redactor(), colour=False), failed=True)
    lines = out.getvalue().splitlines()
    assert len(lines) == len(BUILD) + 2, lines
    assert all(shown.endswith(f"  {line}") for shown, line in zip(lines[1:-1], BUILD,
                                                                 strict=True)), lines
    assert lines[-1].endswith("build failed: step 3 failed")


def test_verbose_build_prints_output_as_it_comes_and_quiet_not_at_all() -> None:
    out = io.StringIO()
    render = ConsoleRenderer(out, Redactor(), colour=False, verbose_build=True)
    render(ev.Event(ev.BUILD_STARTED, "api", {"image": "api:dl-1"}))
    render(ev.Event(ev.BUILD_OUTPUT, "api", {"line": "Step 1/3 : FROM python:3.11"}))
    assert out.getvalue().splitlines()[-1].endswith("Step 1/3 : FROM python:3.11")
    quiet = io.StringIO()
    _build(ConsoleRenderer(quiet, Redactor(), colour=False, show_build_output=False),
           failed=True)
    assert "Step" not in quiet.getvalue() and "build failed" in quiet.getvalue()
    args = _parser().parse_args(["watch", "--verbose-build"])
    assert args.verbose_build and not args.quiet_build


def test_json_output_keeps_every_build_line_and_probe_line() -> None:
    out = io.StringIO()
    render = JsonRenderer(out, Redactor())
    _build(render, failed=False)
    render(ev.Event(ev.POD_LOG, "api", {"pod": "api-1", "container": "api", "source": "pod",
                                        "line": "GET /health 200", "probe": True}))
    types = [json.loads(line)["type"] for line in out.getvalue().splitlines()]
    assert types.count("build.output") == len(BUILD) and types[-1] == "log"


def test_probe_lines_fold_into_one_note_per_pod_other_lines_show() -> None:
    out = io.StringIO()
    render = ConsoleRenderer(out, Redactor(), colour=False)

    def log(pod: str, line: str, probe: bool = False) -> None:
        data = {"pod": pod, "container": "api", "source": "pod", "line": line}
        render(ev.Event(ev.POD_LOG, "api", {**data, "probe": True} if probe else data))

    for _ in range(5):
        log("api-1", '"GET /health HTTP/1.1" 200', probe=True)
    log("api-1", "user 7 logged in")
    log("api-2", '"GET /health HTTP/1.1" 200', probe=True)
    text = out.getvalue()
    assert "GET /health" not in text
    assert text.count("are folded") == 2 and "api-1" in text and "api-2" in text
    assert "user 7 logged in" in text


def test_a_skip_is_one_line_naming_pod_and_count() -> None:
    out = io.StringIO()
    ConsoleRenderer(out, Redactor(), colour=False)(ev.Event(ev.LOG_SKIPPED, "api", {
        "pod": "api-1", "container": "api", "lines": 120000, "estimate": True,
        "seconds_behind": 6.04}))
    assert out.getvalue().rstrip().endswith(
        "log of api-1/api fell 6.0 s behind: skipped about 120000 lines to show the present")


def test_lag_is_measured_from_the_freshest_line_not_from_zero() -> None:
    stream = _Stream()
    stream.opened()
    t0 = 1_800_000_000.0
    # An old tail (60 s old at start) read quickly does not count as falling behind...
    for i in range(10):
        stream.accept(f"{format_timestamp((int(t0) - 60, i))} old line {i}", _empty())
        stream.counted(clock=lambda: t0)
    assert abs(stream.behind(t0 + 0.1)) < 0.2
    # ...but lines that keep getting older relative to the clock do: 1 s of log in 8 s.
    for i in range(1000):
        ts = t0 - 60 + i / 1000
        whole = int(ts)
        stream.accept(f"{format_timestamp((whole, int((ts - whole) * 1e9)))} x{i}", _empty())
        stream.counted(clock=lambda: t0)
    assert stream.behind(t0 + 8) > 5
    lines, seconds = stream.skip(t0 + 8)
    assert 6 < seconds < 8.5 and 6000 < lines < 8500  # ~1000 lines per log-second
    assert stream.resume_now and stream.last_ts_text is not None
    assert parse_timestamp(stream.last_ts_text) == stream.last_ts


def _empty() -> Counter[str]:
    return Counter()


def test_new_log_events_match_the_documented_schema() -> None:
    schema = json.loads((Path(ev.__file__).parent / "schemas" / "event-v1.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    out = io.StringIO()
    render = JsonRenderer(out, Redactor())
    render(ev.Event(ev.LOG_SKIPPED, "api", {"pod": "api-1", "container": "api", "lines": 900,
                                            "estimate": True, "seconds_behind": 5.2}))
    render(ev.Event(ev.POD_LOG, "api", {"pod": "api-1", "container": "api", "source": "pod",
                                        "line": "GET /health 200", "probe": True}))
    for line in out.getvalue().splitlines():
        assert not list(validator.iter_errors(json.loads(line))), line
    bad = {"schema": "devloop.event/v1", "ts": 1.0, "type": "log.skipped", "service": "api",
           "pod": "api-1", "container": "api", "lines": -1, "estimate": True,
           "seconds_behind": 5}
    assert list(validator.iter_errors(bad))
