"""The loop that owns the state: the engine (one thread, messages in), the pure rules it applies,
and the reload pipeline its workers run.

What other packages use is re-exported here; each module says why it exists.
"""

from devloop.loop.engine import ContainerStarted, Engine, SetPaused, TriggerReload

__all__ = ["ContainerStarted", "Engine", "SetPaused", "TriggerReload"]
