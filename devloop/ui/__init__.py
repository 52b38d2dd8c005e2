"""Renderers that subscribe to events: the console (text or JSON lines) and the dashboard.

What other packages use is re-exported here; each module says why it exists.
"""

from devloop.ui.console import ConsoleRenderer, JsonRenderer, route_stdlib_logging, route_warnings

__all__ = ["ConsoleRenderer", "JsonRenderer", "route_stdlib_logging", "route_warnings"]
