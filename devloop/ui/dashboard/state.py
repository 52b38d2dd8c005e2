"""What the dashboard shows, derived from events only: per-service cards and bounded log buffers.

The engine's loop owns devloop's real state; the dashboard is one more subscriber that folds the
event stream into its own small picture (like the console renderer folds it into lines). So the
page can never disagree with `--output json`, and nothing in the pipeline knows the page exists.
"""

from __future__ import annotations

import heapq
import json
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from operator import itemgetter
from typing import Any

from devloop import events as ev
from devloop.ui.dashboard.feed import Feed

LOG_LINES_PER_POD = 1000  # the last N lines kept per pod (and per service's build output)
PODS_PER_SERVICE = 8  # log buffers kept per service; the oldest pod's buffer is dropped first
MAX_LINE_CHARS = 4000  # a longer line is cut (a minified bundle must not fill the memory)
MAX_URLS = 10
MAX_NOTICES = 20  # devloop-wide warnings kept (the watcher restarted, events lost, ...)
# events without a service that the page shows above the cards: what a console user reads
NOTICE_EVENTS = {ev.WARNING: "message", ev.ERROR: "message", ev.WATCH_RESCAN: "reason"}

# from the port-forward manager (follow.forwards): `url` (same url when it follows a new pod)
FORWARD_EVENTS = ("forward.ready", "forward.moved")

_ts = itemgetter("ts")

# Card states (the page colours them; the JSON API returns them as `state`).
IDLE, QUEUED, SYNCING, BUILDING, DEPLOYING = "idle", "queued", "syncing", "building", "deploying"
READY, FAILED, CRASHLOOP, PAUSED = "ready", "failed", "crashloop", "paused"
_BUSY = (QUEUED, SYNCING, BUILDING, DEPLOYING)


def _new_card(name: str) -> dict[str, Any]:
    return {"service": name, "state": IDLE, "paused": False, "detail": "", "image": None,
            "live_ahead": None, "reload": None, "last_reload": None, "problem": None,
            "urls": [], "updated": None}


class DashboardState:
    """Cards and logs, updated from any publishing thread (one lock; every update is a few
    dict operations). Each change goes to `feed` in the same order, encoded once for every open
    page; `snapshot` gives the state as of one feed position, so a page that connects
    mid-reload misses nothing."""

    def __init__(self, services: Iterable[str] = (), only: Iterable[str] | None = None,
                 feed: Feed | None = None) -> None:
        self._lock = threading.Lock()
        self.feed = feed or Feed()
        self._only = set(only) if only else None  # `watch --service`: the others are not shown
        self._cards: dict[str, dict[str, Any]] = {n: _new_card(n) for n in services}
        # service -> OrderedDict(source key -> deque of lines); key "build" or the pod name
        self._logs: dict[str, OrderedDict[str, deque[dict[str, Any]]]] = {}
        self._orphaned: list[str] = []  # objects applied earlier, no longer in the manifests
        self._notices: deque[dict[str, Any]] = deque(maxlen=MAX_NOTICES)

    # --- reading ---------------------------------------------------------------------------------

    def cards(self) -> list[dict[str, Any]]:
        with self._lock:
            return [_public(c) for _, c in sorted(self._cards.items())]

    def card(self, service: str) -> dict[str, Any] | None:
        with self._lock:
            card = self._cards.get(service)
            return _public(card) if card else None

    def has_service(self, service: str) -> bool:
        with self._lock:
            return service in self._cards

    def logs(self, service: str | None = None, limit: int = 2000) -> list[dict[str, Any]]:
        """The kept lines (of one service, or all), oldest first, at most `limit` per service."""
        with self._lock:
            buffers = self._copy_buffers(service)
        return _merge(buffers, limit)

    def _copy_buffers(self, service: str | None) -> list[list[tuple[dict[str, Any], ...]]]:
        """Per service, a copy of each pod's buffer: the only part of a log read done under the
        lock every log line waits on (a C-speed copy of references; merged outside it)."""
        return [[tuple(b) for b in buffers.values()] for name, buffers in self._logs.items()
                if service is None or name == service]

    def notices(self) -> list[dict[str, Any]]:
        """devloop-wide warnings, oldest first: {ts, type, text} (redacted like the events)."""
        with self._lock:
            return list(self._notices)

    def line_count(self) -> int:
        with self._lock:
            return sum(len(b) for bufs in self._logs.values() for b in bufs.values())

    # --- what a connecting page gets first --------------------------------------------------------

    def snapshot(self, log_limit: int = 2000) -> tuple[int, dict[str, Any]]:
        """(feed position, {services, logs, log_lines_per_pod}): the state after exactly the
        messages up to that position, so the page continues from there with nothing missed or
        doubled. Under the lock only the cards and buffer references are copied."""
        with self._lock:
            seq = self.feed.seq
            cards = [_public(c) for _, c in sorted(self._cards.items())]
            buffers = self._copy_buffers(None)
            orphaned = list(self._orphaned)
            notices = list(self._notices)
        return seq, {"services": cards, "logs": _merge(buffers, log_limit),
                     "log_lines_per_pod": LOG_LINES_PER_POD, "orphaned": orphaned,
                     "notices": notices}

    # --- folding events --------------------------------------------------------------------------

    def apply(self, event: ev.Event, doc: dict[str, Any] | None) -> None:
        """Fold one event in; `doc` is its redacted JSON form. With a page open the event is
        encoded once, before the lock, and a changed card once, under it (its order matters)."""
        data = encode(doc if doc is not None else event.to_json()) if self.feed.readers else None
        with self._lock:
            changed = self._fold(event, doc)
            if self.feed.readers:
                if data is None:  # a page opened meanwhile (rare): encoded here instead
                    data = encode(doc if doc is not None else event.to_json())
                self.feed.append("event", data)
            if changed is not None and self.feed.readers:
                self.feed.append("card", encode(_public(changed)))

    def _fold(self, event: ev.Event, doc: dict[str, Any] | None) -> dict[str, Any] | None:
        t, d, name = event.type, event.data, event.service
        if t == ev.CONFIG_LOADED and name is None:  # devloop.yaml changed: services come and go
            listed = [n for n in [*d.get("services", []), *d.get("resources", [])]
                      if self._only is None or n in self._only]
            for service in listed:
                self._cards.setdefault(service, _new_card(service))
            for gone in set(self._cards) - set(listed):
                del self._cards[gone]
                self._logs.pop(gone, None)
            return None
        if t == ev.MANIFESTS_ORPHANED:
            self._orphaned = list(d.get("objects") or [])
            return None
        if name is None:
            if t in NOTICE_EVENTS:
                d = doc if doc is not None else event.to_json()
                self._notices.append({"ts": event.ts, "type": t,
                                      "text": str(d.get(NOTICE_EVENTS[t], ""))})
            return None
        if t in (ev.POD_LOG, ev.BUILD_OUTPUT):
            if not event.data.get("probe"):  # probe requests are folded, as on the console
                self._keep_line(event, doc)
            return None
        card = self._cards.setdefault(name, _new_card(name))
        if not _fold_card(card, event):
            return None
        card["updated"] = event.ts
        return card

    def _keep_line(self, event: ev.Event, doc: dict[str, Any] | None) -> None:
        d = doc if doc is not None else event.to_json()
        build = event.type == ev.BUILD_OUTPUT
        key = "build" if build else str(d.get("pod", "?"))
        line = str(d.get("line", ""))
        entry = {"ts": event.ts, "service": event.service, "pod": None if build else key,
                 "container": d.get("container"), "source": "build" if build else "pod",
                 "line": line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + " …"}
        assert event.service is not None
        buffers = self._logs.setdefault(event.service, OrderedDict())
        buffer = buffers.get(key)
        if buffer is None:
            buffer = buffers[key] = deque(maxlen=LOG_LINES_PER_POD)
            while len(buffers) > PODS_PER_SERVICE:
                buffers.popitem(last=False)
        else:
            buffers.move_to_end(key)
        buffer.append(entry)


def encode(doc: Any) -> bytes:
    """One JSON line, as SSE `data:` carries it (no newline inside: separators are compact)."""
    text = json.dumps(doc, ensure_ascii=False, default=str, separators=(",", ":"))
    return text.encode("utf-8", "backslashreplace")  # a non-UTF-8 file name: \udcXX, valid JSON


def _merge(buffers: list[list[tuple[dict[str, Any], ...]]], limit: int) -> list[dict[str, Any]]:
    """Each pod's buffer is in time order already: merged, not sorted; `limit` per service."""
    per_service = [deque(heapq.merge(*pods, key=_ts), maxlen=limit) for pods in buffers]
    return list(heapq.merge(*per_service, key=_ts))


def _public(card: dict[str, Any]) -> dict[str, Any]:
    """The card as the API shows it: `state` is `paused` while paused and not reloading."""
    out = dict(card)
    if card["paused"] and card["state"] not in _BUSY:
        out["state"], out["last_state"] = PAUSED, card["state"]
    return out


def _phase(card: dict[str, Any], name: str, seconds: Any) -> None:
    if card["reload"] is not None:
        card["reload"]["phases"].append({"name": name, "seconds": seconds})


def _fold_card(card: dict[str, Any], event: ev.Event) -> bool:
    """Update `card` from one event of its service; False when the event changes nothing."""
    t, d = event.type, event.data
    if t == ev.RELOAD_QUEUED:
        card["state"], card["detail"] = QUEUED, f"waiting for a build slot ({d.get('position')})"
    elif t == ev.RELOAD_STARTED:
        live = d.get("mode") == "live"
        card["reload"] = {"mode": d.get("mode"), "started": event.ts, "image": d.get("image"),
                          "phases": []}
        card["state"], card["detail"] = (SYNCING if live else BUILDING), ""
    elif t == ev.CHANGE_DETECTED:
        more = f" (+{d['more']} more)" if d.get("more") else ""
        card["detail"] = "changed: " + ", ".join(d.get("paths", [])) + more
    elif t == ev.LIVE_SYNC_STARTED:
        card["state"] = SYNCING
        card["detail"] = f"syncing {d.get('files')} file(s) to {', '.join(d.get('pods', []))}"
    elif t == ev.LIVE_SYNC_FINISHED:
        card["live_ahead"] = d.get("ahead")
        _phase(card, "sync", d.get("seconds"))
    elif t == ev.LIVE_SYNC_FAILED:
        card["detail"] = f"live update failed on {d.get('pod')}: {d.get('reason')}; rebuilding"
    elif t == ev.LIVE_REBUILD:
        card["state"], card["detail"] = BUILDING, f"full reload: {d.get('reason')}"
    elif t == ev.BUILD_STARTED:
        card["state"], card["detail"] = BUILDING, f"building {d.get('image')}"
    elif t == ev.BUILD_FINISHED:
        card["image"] = d.get("image")
        _phase(card, "build", d.get("seconds"))
    elif t == ev.BUILD_SKIPPED:
        if card["reload"] is not None:
            _phase(card, "build skipped", 0)
            card["image"] = d.get("image")
        elif not d.get("known_failed"):  # up to date (the start, a no-op save)
            card["state"], card["image"], card["detail"] = READY, d.get("image"), ""
        else:
            card["detail"] = str(d.get("reason", ""))
    elif t == ev.BUILD_FAILED:
        card["state"], card["detail"] = FAILED, f"build failed: {d.get('error')}"
    elif t == ev.DELIVER_FINISHED:
        _phase(card, "deliver", d.get("seconds"))
    elif t == ev.DEPLOY_PATCHED:
        workload = d.get("workload") or f"deployment/{d.get('deployment')}"
        card["state"], card["detail"] = DEPLOYING, f"patched {workload}"
        card["image"], card["live_ahead"] = d.get("image"), None
    elif t == ev.ROLLOUT_PROGRESS:
        card["state"], card["detail"] = DEPLOYING, str(d.get("message", ""))
    elif t == ev.ROLLOUT_READY:
        card["state"], card["detail"] = READY, ""
        _phase(card, "rollout", d.get("seconds"))
    elif t == ev.ROLLOUT_FAILED:
        crash = d.get("reason") == "CrashLoopBackOff"
        card["state"] = CRASHLOOP if crash else FAILED
        card["detail"] = f"{d.get('reason')}: {d.get('message')}"
    elif t == ev.RELOAD_FINISHED:
        _finish(card, event)
    elif t == ev.PROBLEM:
        text = f"{d.get('file')}:{d.get('line')}: {' '.join(str(d.get('message')).split())}"
        card["problem"] = {"file": d.get("file"), "line": d.get("line"),
                           "message": d.get("message"), "kind": d.get("kind"), "text": text,
                           "ts": event.ts, "resolved": False}
    elif t == ev.ERROR:
        card["detail"] = str(d.get("message", ""))
    elif t in (ev.SERVICE_PAUSED, ev.SERVICE_RESUMED):
        card["paused"] = t == ev.SERVICE_PAUSED
    elif t in FORWARD_EVENTS and d.get("url"):
        if d["url"] in card["urls"]:
            return False
        card["urls"] = [*card["urls"], d["url"]][-MAX_URLS:]
    elif t == ev.FORWARD_STOPPED and d.get("url") in card["urls"]:
        card["urls"] = [u for u in card["urls"] if u != d["url"]]
    else:
        return False
    return True


def _finish(card: dict[str, Any], event: ev.Event) -> None:
    d = event.data
    ok = bool(d.get("ok"))
    done = dict(card["reload"] or {"mode": None, "started": None, "phases": []})
    done.update(ok=ok, outcome=d.get("outcome"), reason=d.get("reason") or "",
                seconds=d.get("seconds"), finished=event.ts, image=d.get("image"))
    card["last_reload"], card["reload"] = done, None
    if ok:
        card["state"], card["detail"] = READY, ""
        if card["problem"] is not None:
            card["problem"] = {**card["problem"], "resolved": True}
    elif d.get("outcome") == "cancelled":
        card["state"] = IDLE
    elif card["state"] != CRASHLOOP:
        card["state"] = FAILED
        card["detail"] = card["detail"] or str(d.get("reason", ""))
