"""The loop that owns the state: the engine (one thread, messages in), the pure rules it applies,
the reload plan (skip, live or build, and why), and the reload pipeline its workers run through
three seams (image builder, live update, deployer; fakes of each in devloop.loop.fakes).

What other packages use is re-exported here; each module says why it exists.
"""

from devloop.loop.engine import ContainerStarted, Engine, SetPaused, TriggerReload
from devloop.loop.plan import ReloadFacts, ReloadPlan, plan_reload
from devloop.loop.seams import Deployer, ImageBuilder, LiveUpdate

__all__ = [
    "ContainerStarted",
    "Deployer",
    "Engine",
    "ImageBuilder",
    "LiveUpdate",
    "ReloadFacts",
    "ReloadPlan",
    "SetPaused",
    "TriggerReload",
    "plan_reload",
]
