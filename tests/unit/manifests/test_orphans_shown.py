"""Orphaned objects reach the dashboard (its snapshot) and the console, and clear again."""

from __future__ import annotations

import io

from devloop import events as ev
from devloop.redact import Redactor
from devloop.ui.console import ConsoleRenderer
from devloop.ui.dashboard.state import DashboardState


def _orphaned(objects: list[str], prune: bool = False) -> ev.Event:
    return ev.Event(ev.MANIFESTS_ORPHANED, None, {"objects": objects, "prune": prune})


def test_the_dashboard_snapshot_lists_orphans_until_they_are_gone():
    state = DashboardState(["web"])
    assert state.snapshot()[1]["orphaned"] == []
    state.apply(_orphaned(["Deployment/old", "PersistentVolumeClaim/data"]), None)
    assert state.snapshot()[1]["orphaned"] == ["Deployment/old", "PersistentVolumeClaim/data"]
    state.apply(_orphaned([]), None)
    assert state.snapshot()[1]["orphaned"] == []


def test_the_console_says_what_is_orphaned_and_how_to_delete_it():
    out = io.StringIO()
    console = ConsoleRenderer(out, Redactor())
    console(_orphaned(["Deployment/old"]))
    console(ev.Event(ev.MANIFESTS_APPLIED, None, {
        "objects": ["ConfigMap/cfg", "Deployment/web"], "created": [], "unchanged": 3,
        "rolls": {"Deployment/web": ["ConfigMap/cfg"]}, "seconds": 0.05}))
    text = out.getvalue()
    assert "orphaned (no longer in the manifests): Deployment/old" in text
    assert "set prune: true in devloop.yaml" in text
    assert "applied ConfigMap/cfg, Deployment/web (3 unchanged)" in text
    assert "Deployment/web rolls: ConfigMap/cfg changed" in text
