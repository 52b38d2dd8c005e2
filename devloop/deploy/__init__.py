"""Getting a built image running: delivery (shared engine or registry), the manifests applied with
server-side apply, the image patched into its workloads, the rollout waited for, and the guard that
keeps all of it off a cluster that is not known to be local.

What other packages use is re-exported here; each module says why it exists.
"""

from devloop.deploy.contextguard import check_config
from devloop.deploy.deployer import ClusterDeployer, ContextRefused, connect_config, find_helm
from devloop.deploy.manifest_session import find_orphans
from devloop.deploy.patch import (
    DIGEST_ANNOTATION,
    Deployed,
    PatchError,
    deployed_of,
    workload_deployed,
)
from devloop.deploy.registry import DOCKER_HUB, registry_host
from devloop.deploy.rollout import RolloutResult, rollout_health, workload_health

__all__ = [
    "DIGEST_ANNOTATION",
    "DOCKER_HUB",
    "ClusterDeployer",
    "ContextRefused",
    "Deployed",
    "PatchError",
    "RolloutResult",
    "check_config",
    "connect_config",
    "deployed_of",
    "find_helm",
    "find_orphans",
    "registry_host",
    "rollout_health",
    "workload_deployed",
    "workload_health",
]
