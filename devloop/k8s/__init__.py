"""Talking to Kubernetes: the connection, API errors and retries, the kind table, workloads and
their pods, pod watching, image injection into pod templates, and what devloop owns.

What other packages use is re-exported here; each module says why it exists.
"""

from devloop.k8s.cluster import (
    Cluster,
    ClusterUnreachable,
    check_reachable,
    connect,
    new_api_client,
)
from devloop.k8s.discovery import (
    DiscoveryIncomplete,
    Kind,
    Unreachable,
    list_objects,
    namespaced_kinds,
)
from devloop.k8s.errors import api_message, connection_detail, is_connection_error, one_line
from devloop.k8s.inject import inject, same_repository, users
from devloop.k8s.kinds import (
    KINDS,
    PathError,
    client_method,
    find_kind,
    group_of,
    kind_of,
    parse_path,
    pod_specs,
    pod_template,
)
from devloop.k8s.ownership import (
    MANAGED_LABEL,
    MANAGED_VALUE,
    is_devloop_owned,
    mark,
    owned_secrets,
    unmark,
)
from devloop.k8s.pods import (
    ContainerState,
    Pod,
    list_pods,
    pod_view,
    read_pod,
    split_container_id,
)
from devloop.k8s.podwatch import PodWatch, close_client, iter_lines, shutdown_response
from devloop.k8s.selectors import selector_query
from devloop.k8s.workloads import (
    REPLACED_KINDS,
    Workload,
    WorkloadError,
    WorkloadRef,
    await_workload,
    current_pods,
    fed_by,
    read_workload,
    replace_workload,
    rollout_progress,
)

__all__ = [
    "KINDS",
    "MANAGED_LABEL",
    "MANAGED_VALUE",
    "REPLACED_KINDS",
    "Cluster",
    "ClusterUnreachable",
    "ContainerState",
    "DiscoveryIncomplete",
    "Kind",
    "PathError",
    "Pod",
    "PodWatch",
    "Unreachable",
    "Workload",
    "WorkloadError",
    "WorkloadRef",
    "api_message",
    "await_workload",
    "check_reachable",
    "client_method",
    "close_client",
    "connect",
    "connection_detail",
    "current_pods",
    "fed_by",
    "find_kind",
    "group_of",
    "inject",
    "is_connection_error",
    "is_devloop_owned",
    "iter_lines",
    "kind_of",
    "list_objects",
    "list_pods",
    "mark",
    "namespaced_kinds",
    "new_api_client",
    "one_line",
    "owned_secrets",
    "parse_path",
    "pod_specs",
    "pod_template",
    "pod_view",
    "read_pod",
    "read_workload",
    "replace_workload",
    "rollout_progress",
    "same_repository",
    "selector_query",
    "shutdown_response",
    "split_container_id",
    "unmark",
    "users",
]
