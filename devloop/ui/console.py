"""Turn events into output: coloured human lines or JSON lines, both through structlog.

Each renderer owns a structlog logger writing to its stream (no global structlog config), with the
redactor as the first processor so no renderer can print a secret. The console form keeps a few
lines stable and uncoloured for editors' problem matchers:

    [devloop] reload started: backend
    [devloop] reload finished: backend ok (2.41s)      | failed: <reason>
    [devloop] problem: services/backend/app/main.py:12: error: SyntaxError: invalid syntax
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import warnings
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

import structlog

from devloop import events as ev
from devloop.config.logfilter import BuildTally
from devloop.redact import Redactor

_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_BOLD = "\x1b[1m"
_RED = "\x1b[31m"
_YELLOW = "\x1b[33m"
_GREEN = "\x1b[32m"
_PALETTE = ("\x1b[36m", "\x1b[35m", "\x1b[34m", "\x1b[33m", "\x1b[32m", "\x1b[96m", "\x1b[95m")


def _colour_for(service: str) -> str:
    return _PALETTE[zlib.crc32(service.encode()) % len(_PALETTE)]


def _files(copied: int, deleted: int) -> str:
    parts = [f"{copied} file{'s' if copied != 1 else ''}"] if copied or not deleted else []
    if deleted:
        parts.append(f"{deleted} deletion{'s' if deleted != 1 else ''}")
    return " and ".join(parts)


_NOTE = "console.note"  # a line only the console prints (never published on the bus)


# --- one sentence per event type, by area -------------------------------------------------------

Sentence = Callable[[ev.Event], str]


def _reload_finished(e: ev.Event) -> str:
    d = e.data
    outcome = "failed: " + d.get("outcome", "").replace("_", " ")
    if d.get("ok"):
        outcome = "synced" if d.get("outcome") == "synced" else "ok"
    return f"[devloop] reload finished: {e.service} {outcome} ({d.get('seconds', 0):.2f}s)"


def _problem(e: ev.Event) -> str:
    message = " ".join(str(e.data["message"]).split())  # one line for problem matchers
    return f"[devloop] problem: {e.data['file']}:{e.data['line']}: error: {message}"


def _change_detected(e: ev.Event) -> str:
    more = f" (+{e.data['more']} more)" if e.data.get("more") else ""
    return f"change detected: {', '.join(e.data.get('paths', []))}{more}"


def _build_finished(e: ev.Event) -> str:
    d = e.data
    summary = f" ({d['summary']})" if d.get("summary") else ""
    return f"build finished: {d['image']} in {d['seconds']:.2f}s{summary}"


_RELOAD: dict[str, Sentence] = {
    ev.RELOAD_STARTED: lambda e: f"[devloop] reload started: {e.service}",
    ev.RELOAD_FINISHED: _reload_finished,
    ev.PROBLEM: _problem,
    ev.CHANGE_DETECTED: _change_detected,
    ev.BUILD_STARTED: lambda e: f"build started: {e.data['image']}",
    ev.BUILD_FINISHED: _build_finished,
    ev.BUILD_SKIPPED: lambda e: f"build skipped: {e.data['image']} ({e.data['reason']})",
    ev.BUILD_FAILED: lambda e: f"build failed: {e.data['error']}",
    ev.BUILD_OUTPUT: lambda e: f"  {e.data['line']}",
    ev.RELOAD_QUEUED: lambda e: f"queued for a build slot (position {e.data['position']})",
    ev.IMAGES_PRUNED: lambda e: f"removed old images: {', '.join(e.data['removed'])}",
}


def _deliver_finished(e: ev.Event) -> str:
    d = e.data
    line = f"image delivered via {d['method']}: {d['image']} in {d['seconds']:.2f}s"
    if "bytes_pushed" in d:  # a registry push: what travelled
        line += (f" ({d['layers_pushed']} layers pushed, {d['bytes_pushed'] / 1e6:.1f} MB;"
                 f" {d['layers_present']} already in {d['registry']})")
    return line


def _workload(e: ev.Event) -> str:
    """KIND/NAME of the workload an event is about (`workload`), else the Deployment's."""
    workload = e.data.get("workload")
    return str(workload) if workload else f"deployment/{e.data['deployment']}"


def _rollout_failed(e: ev.Event) -> str:
    d = e.data
    tail = "".join(f"\n    | {line}" for line in d.get("log_tail", [])[-10:])
    return f"rollout failed: {d['reason']}: {d['message']}{tail}"


_DEPLOY: dict[str, Sentence] = {
    ev.DELIVER_FINISHED: _deliver_finished,
    ev.DEPLOY_INSTALLED: lambda e: f"installed {', '.join(e.data['objects'])}",
    ev.DEPLOY_PATCHED: lambda e: (f"patched {_workload(e)} container"
                                  f" {e.data['container']} -> {e.data['image']}"),
    ev.ROLLOUT_PROGRESS: lambda e: f"rollout: {e.data['message']}",
    ev.ROLLOUT_READY: lambda e: f"rollout ready: {_workload(e)} in {e.data['seconds']:.2f}s",
    ev.ROLLOUT_FAILED: _rollout_failed,
}


def _live_sync_finished(e: ev.Event) -> str:
    d = e.data
    ahead = f"; {d['ahead']} file{'s' if d['ahead'] != 1 else ''} ahead of the image"
    return (f"synced {_files(d['files'], d['deletes'])} to {', '.join(d['pods'])} in "
            f"{d['seconds'] * 1000:.0f} ms{ahead if d['ahead'] else ''}")


_LIVE: dict[str, Sentence] = {
    ev.LIVE_SYNC_STARTED: lambda e: (f"syncing {_files(e.data['files'], e.data['deletes'])}"
                                     f" to {', '.join(e.data['pods'])}"),
    ev.LIVE_SYNC_FINISHED: _live_sync_finished,
    ev.LIVE_SYNC_FAILED: lambda e: (f"live update failed on {e.data['pod']}:"
                                    f" {e.data['reason']}; rebuilding"),
    ev.LIVE_RESET: lambda e: f"replaced {', '.join(e.data['pods'])}: {e.data['reason']}",
    ev.LIVE_REBUILD: lambda e: f"full reload: {e.data['reason']}",
}


def _log_skipped(e: ev.Event) -> str:
    d = e.data
    return (f"log of {d['pod']}/{d['container']} fell {d['seconds_behind']:.1f} s behind:"
            f" skipped {'about ' if d.get('estimate') else ''}{d['lines']} lines to show the"
            " present")


def _watch_ready(e: ev.Event) -> str:
    d = e.data
    return (f"watching {d['directories']} directories ({d['mode']}) for "
            f"{', '.join(d['services'])}; quiet period {d['quiet_period_ms']} ms")


def _forward_ready(e: ev.Event) -> str:
    d = e.data
    if d.get("direct"):
        return f"{d['url']} is served by pod {d['pod']} itself (it runs on this machine)"
    return f"forwarding {d['url']} -> pod {d['pod']} port {d['remote_port']}"


def _message(e: ev.Event) -> str:
    return e.data["message"]


_SESSION: dict[str, Sentence] = {
    ev.POD_LOG: lambda e: e.data["line"],
    ev.LOG_SKIPPED: _log_skipped,
    _NOTE: _message,
    ev.CONFIG_LOADED: lambda e: (f"config loaded: {e.data['path']}"
                                 f" ({len(e.data['services'])} services)"),
    ev.CONFIG_INVALID: lambda e: ("config invalid, keeping the previous one:\n  "
                                  + "\n  ".join(e.data["problems"])),
    ev.WATCH_READY: _watch_ready,
    ev.CLUSTER_CONNECTED: lambda e: (f"cluster: context {e.data['context']} at"
                                     f" {e.data['server']} (namespace {e.data['namespace']})"),
    ev.CLUSTER_UNREACHABLE: _message,
    ev.ERROR: _message,
    ev.WARNING: _message,
    ev.BUILDER_SELECTED: lambda e: f"builder: {e.data['builder']} ({e.data['reason']})",
    ev.WATCH_RESCAN: lambda e: e.data["reason"],
    ev.DASHBOARD_READY: lambda e: f"dashboard: {e.data.get('open') or e.data['url']}",
    ev.SHUTDOWN: lambda e: (f"stopped ({e.data.get('reason', 'interrupted')}); workloads keep"
                            " running"),
    ev.FORWARD_READY: _forward_ready,
    ev.FORWARD_MOVED: lambda e: (f"forward {e.data['url']} moved to pod {e.data['pod']} (was"
                                 f" {e.data['previous']})"),
    ev.FORWARD_FAILED: _message,
    ev.FORWARD_STOPPED: lambda e: f"stopped forwarding {e.data['url']}: {e.data['reason']}",
}


def _sync_finished(e: ev.Event) -> str:
    summary = ", ".join(f"{k} {v}" for k, v in sorted(e.data.get("services", {}).items()))
    return f"sync finished with exit code {e.data['exit_code']}: {summary}"


def _down_kept(e: ev.Event) -> str:
    d = e.data
    return f"kept {d['object']}: {d['reason']}" + \
        (f"; to delete it: {d['command']}" if d.get("command") else "")


def _manifests_applied(e: ev.Event) -> str:
    d = e.data
    rolls = "".join(f"; {w} rolls: {', '.join(c)} changed" for w, c in d["rolls"].items())
    made = f"; created {', '.join(d['created'])}" if d["created"] else ""
    return (f"applied {', '.join(d['objects']) or 'nothing'}{made} ({d['unchanged']}"
            f" unchanged) in {d['seconds']:.2f}s{rolls}")


def _manifests_orphaned(e: ev.Event) -> str:
    d = e.data
    if not d["objects"]:
        return "no orphaned objects left"
    what = "deleting them (prune: true)" if d["prune"] else \
        "kept; set prune: true in devloop.yaml to delete them"
    return f"orphaned (no longer in the manifests): {', '.join(d['objects'])}; {what}"


def _manifests_pruned(e: ev.Event) -> str:
    kept = f"; kept (not devloop's): {', '.join(e.data['kept'])}" if e.data["kept"] else ""
    return f"pruned {', '.join(e.data['objects']) or 'nothing'}{kept}"


_COMMANDS: dict[str, Sentence] = {
    ev.SYNC_FINISHED: _sync_finished,
    ev.DOWN_DELETED: lambda e: f"deleted {e.data['object']} ({e.data['reason']})",
    ev.DOWN_KEPT: _down_kept,
    ev.DOWN_FINISHED: lambda e: (f"down finished with exit code {e.data['exit_code']}:"
                                 f" {len(e.data['deleted'])} deleted,"
                                 f" {len(e.data['kept'])} kept"),
    ev.MANIFESTS_APPLIED: _manifests_applied,
    ev.MANIFESTS_FAILED: lambda e: f"manifests not applied: {e.data['message']}",
    ev.MANIFESTS_ORPHANED: _manifests_orphaned,
    ev.MANIFESTS_PRUNED: _manifests_pruned,
}

_SENTENCES: dict[str, Sentence] = {**_RELOAD, **_DEPLOY, **_LIVE, **_SESSION, **_COMMANDS}


def describe(event: ev.Event) -> str:
    """The human sentence for an event (without time or service prefix); a type without one
    reads as `type key=value ...`."""
    sentence = _SENTENCES.get(event.type)
    if sentence is not None:
        return sentence(event)
    rest = " ".join(f"{k}={v}" for k, v in event.data.items())
    return f"{event.type} {rest}".strip()
_BUILD_KEEP = 2000  # build output lines kept per service until the build ends


class _Output:
    """A renderer's stream, written under one lock and closed when the command ends: threads
    that outlive it (a reload's last step, a log follower) may still publish while the
    interpreter shuts down, and a write in flight then would abort it ("could not acquire
    lock for <stdout> at interpreter shutdown"). After close() nothing is written."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """Wait for a write in flight, flush, and write nothing more."""
        with self._lock:
            self._closed = True
            with contextlib.suppress(OSError, ValueError):  # a closed pipe, a closed file
                self._stream.flush()


class ConsoleRenderer(_Output):
    """Human output: one line per event, service-coloured prefixes on a terminal.

    Build output is held per service and, on success, summed up on the `build finished` line
    (steps, cache hits); a failed build prints all of it first (verbose_build: as it comes;
    show_build_output=False: never). Pod log lines flagged `probe` are folded: the first of
    each pod prints one note, the rest nothing (`devloop status` counts them). A periodic
    "(n folded)" line would itself be the noise folding removes.
    """

    def __init__(self, stream: TextIO, redactor: Redactor, colour: bool | None = None,
                 show_build_output: bool = True, verbose_build: bool = False) -> None:
        self.colour = stream.isatty() if colour is None else colour
        self.show_build_output = show_build_output
        self.verbose_build = verbose_build
        self._builds: dict[str | None, tuple[BuildTally, deque[ev.Event]]] = {}
        self._folded: set[tuple[str | None, str]] = set()  # (service, pod) with a note shown
        super().__init__(stream)
        self._width = 8
        self._log = structlog.wrap_logger(
            structlog.PrintLogger(stream),
            processors=[redactor, self._format],
            context_class=dict,
        )

    def __call__(self, event: ev.Event) -> None:
        if event.type == ev.BUILD_OUTPUT and not self.show_build_output:
            return
        with self._lock:
            if self._closed:
                return
            for shown in self._shown(event):
                self._log.info(shown.type, ev=shown)

    def _shown(self, event: ev.Event) -> list[ev.Event]:
        """The events to print for this one (under the lock: it updates the folds)."""
        t, service = event.type, event.service
        if t == ev.POD_LOG and event.data.get("probe"):
            key = (service, str(event.data.get("pod")))
            if key in self._folded:
                return []
            self._folded.add(key)
            return [ev.Event(_NOTE, service, {"message": (
                f"probe requests in the log of {event.data.get('pod')} are folded from here"
                " on (`devloop status` counts them; --output json shows them)")}, event.ts)]
        if self.verbose_build or not self.show_build_output:
            return [event]
        if t == ev.BUILD_STARTED:
            self._builds[service] = (BuildTally(), deque(maxlen=_BUILD_KEEP))
        elif t == ev.BUILD_OUTPUT:
            tally, held = self._builds.setdefault(service,
                                                  (BuildTally(), deque(maxlen=_BUILD_KEEP)))
            tally.add(str(event.data.get("line", "")))
            held.append(event)
            return []
        elif t == ev.BUILD_FINISHED and service in self._builds:
            tally, _ = self._builds.pop(service)
            if tally.summary():
                return [ev.Event(t, service, {**event.data, "summary": tally.summary()},
                                 event.ts)]
        elif t in (ev.BUILD_FAILED, ev.ERROR, ev.RELOAD_FINISHED) and service in self._builds:
            _, held = self._builds.pop(service)  # failed (or engine lost): all of it
            if event.data.get("outcome") == "cancelled":
                return [event]  # stopped by the user: the output is not news
            return [*held, event]
        return [event]

    def _format(self, _logger: Any, _method: str, event_dict: dict[str, Any]) -> str:
        event: ev.Event = event_dict["ev"]
        text = describe(event)
        clock = time.strftime("%H:%M:%S", time.localtime(event.ts))
        service = event.service or "devloop"
        self._width = max(self._width, len(service))
        if event.type == ev.POD_LOG:
            prefix = f"{service:<{self._width}} │ "
            if self.colour:
                prefix = f"{_colour_for(service)}{prefix}{_RESET}"
            return f"{prefix}{text}"
        if text.startswith("[devloop]"):
            return text  # stable, uncoloured: editors match these lines
        prefix = f"{clock} {service:<{self._width}} "
        if not self.colour:
            return prefix + text
        tint = ""
        if event.type in (ev.BUILD_FAILED, ev.ROLLOUT_FAILED, ev.ERROR, ev.CONFIG_INVALID,
                          ev.CLUSTER_UNREACHABLE, ev.LIVE_SYNC_FAILED, ev.FORWARD_FAILED,
                          ev.MANIFESTS_FAILED):
            tint = _RED + _BOLD
        elif event.type in (ev.WARNING, ev.WATCH_RESCAN):
            tint = _YELLOW
        elif event.type in (ev.ROLLOUT_READY, ev.BUILD_FINISHED, ev.LIVE_SYNC_FINISHED,
                            ev.FORWARD_READY, ev.FORWARD_MOVED):
            tint = _GREEN
        elif event.type == ev.BUILD_OUTPUT:
            tint = _DIM
        return (f"{_DIM}{clock}{_RESET} {_colour_for(service)}{service:<{self._width}}{_RESET} "
                f"{tint}{text}{_RESET if tint else ''}")


class JsonRenderer(_Output):
    """Machine output: one JSON object per line per event (schema devloop.event/v1)."""

    def __init__(self, stream: TextIO, redactor: Redactor) -> None:
        super().__init__(stream)
        self._log = structlog.wrap_logger(
            structlog.PrintLogger(stream),
            processors=[self._to_dict, redactor,
                        structlog.processors.JSONRenderer(serializer=_dumps)],
            context_class=dict,
        )

    def __call__(self, event: ev.Event) -> None:
        with self._lock:
            if not self._closed:
                self._log.info(event.type, ev=event)

    @staticmethod
    def _to_dict(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        return event_dict["ev"].to_json()


def _dumps(obj: Any, **kw: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str, separators=(",", ":"))


def route_stdlib_logging(stream: TextIO, redactor: Redactor, json_output: bool) -> None:
    """Send warnings of urllib3/docker/kubernetes through structlog's ProcessorFormatter, so
    they share the output format and the redaction; called once by the CLI entry point."""
    renderer: Any = (structlog.processors.JSONRenderer(serializer=_dumps) if json_output
                     else structlog.dev.ConsoleRenderer(colors=stream.isatty()))
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, redactor,
                    renderer],
        foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name,
                           structlog.processors.TimeStamper(fmt="iso")],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    # urllib3 warns on every retry while a cluster is down; devloop reports that itself.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def route_warnings(emit: Callable[[str], None] | None = None) -> None:
    """Python warnings (warnings.warn by devloop or a library) through devloop's output, each
    distinct message once (urllib3 sets its security warnings to "always": once per request).
    With `emit` they become devloop `warning` events; without (e.g. for `status`, whose stdout
    is its report) records of the `py.warnings` logger, rendered by route_stdlib_logging."""
    seen: set[str] = set()
    lock = threading.Lock()
    fallback = logging.getLogger("py.warnings")

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        text = " ".join(str(message).split())
        if not category.__module__.startswith("devloop"):
            text = f"{category.__name__}: {text} ({os.path.basename(filename)}:{lineno})"
        with lock:
            if text in seen:
                return
            seen.add(text)
        if emit is not None:
            emit(text)
        else:
            fallback.warning(text)

    warnings.showwarning = show

