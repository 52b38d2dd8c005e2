"""Following what runs: pod logs, port forwards, container restarts and crash tracebacks.

What other packages use is re-exported here; each module says why it exists.
"""

from devloop.follow.forwards import ForwardManager
from devloop.follow.logs import LogFollower
from devloop.follow.restarts import ContainerWatch
from devloop.follow.tracebacks import CrashWatch

__all__ = ["ContainerWatch", "CrashWatch", "ForwardManager", "LogFollower"]
