"""Live update: the plan from the Dockerfile's COPY lines, the image's file records, and
the container updaters (exec through the API, or the Docker API when the container is provably
local).

What other packages use is re-exported here; each module says why it exists.
"""

from devloop.live.image_files import SnapshotStore
from devloop.live.sync import LiveSyncer, pod_live
from devloop.live.updaters import DockerUpdater, ExecUpdater, SourcesChanged, exec_transient

__all__ = [
    "DockerUpdater",
    "ExecUpdater",
    "LiveSyncer",
    "SnapshotStore",
    "SourcesChanged",
    "exec_transient",
    "pod_live",
]
