"""Images: reading Dockerfiles, building (BuildKit CLI or the legacy API), build slots, and build
errors mapped to file:line problems.

What other packages use is re-exported here; each module says why it exists.
"""

from devloop.image.build import (
    Builder,
    BuildFailed,
    DiskFull,
    DockerUnreachable,
    InputsChanged,
    checkout_id,
    docker_address,
)
from devloop.image.buildslots import BuildSlots, default_limit, limit_for
from devloop.image.dockerfile import (
    CopyArgs,
    Instruction,
    Stage,
    join_workdir,
    mount_flags,
    parse,
    parse_copy,
    stages,
)
from devloop.image.errors import docker_lost_detail, is_docker_lost
from devloop.image.problems import build_problem, is_traceback_end, traceback_problem

__all__ = [
    "BuildFailed",
    "BuildSlots",
    "Builder",
    "CopyArgs",
    "DiskFull",
    "DockerUnreachable",
    "InputsChanged",
    "Instruction",
    "Stage",
    "build_problem",
    "checkout_id",
    "default_limit",
    "docker_address",
    "docker_lost_detail",
    "is_docker_lost",
    "is_traceback_end",
    "join_workdir",
    "limit_for",
    "mount_flags",
    "parse",
    "parse_copy",
    "stages",
    "traceback_problem",
]
