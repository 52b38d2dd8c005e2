"""The browser dashboard `devloop watch` serves (issue 14): one page, a small JSON API, SSE.

`start()` is what App.watch calls; everything else lives in state (what is shown, derived from
events), statuscache (`GET /api/status`) and server (HTTP, token and Host checks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devloop import events as ev
from devloop.redact import Redactor
from devloop.ui.dashboard.server import Dashboard, is_loopback
from devloop.ui.dashboard.state import LOG_LINES_PER_POD

DASHBOARD_READY = ev.DASHBOARD_READY
DEFAULT_PORT = 10350

__all__ = ["DASHBOARD_READY", "DEFAULT_PORT", "LOG_LINES_PER_POD", "Dashboard", "UiOptions",
           "start"]


@dataclass(frozen=True)
class UiOptions:
    port: int = DEFAULT_PORT
    address: str = "127.0.0.1"


def start(bus: ev.EventBus, redactor: Redactor, post: Callable[[object], None],
          status: Callable[[], list[dict[str, Any]]], services: list[str],
          options: UiOptions, only: list[str] | None = None) -> Dashboard | None:
    """Serve the dashboard and announce its address; a port that cannot be bound is a warning
    (watch runs on without the page) rather than a reason to stop the dev loop."""
    if not is_loopback(options.address):
        bus.publish(ev.WARNING, None, message=(
            f"dashboard: listening on {options.address}, not loopback: reachable from the "
            "network, protected only by its token, which travels in clear HTTP"))
    dashboard = Dashboard(bus, redactor, post, status, services, options.address, options.port,
                          only)
    try:
        dashboard.start()
    except OSError as exc:
        bus.publish(ev.WARNING, None, message=(
            f"dashboard: cannot listen on {options.address}:{options.port} "
            f"({exc.strerror or exc}); watching without it (choose a port with --ui-port, "
            "or --no-ui)"))
        return None
    bus.publish(DASHBOARD_READY, None, url=dashboard.url, open=dashboard.open_url)
    return dashboard
