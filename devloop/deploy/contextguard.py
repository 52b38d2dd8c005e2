"""Deploy only to a cluster known to be local, or one devloop.yaml allows by name.

devloop creates namespaces, applies manifests, execs into pods and deletes them; pointed at a
shared or production cluster by a stray `kubectl config use-context`, that is damage. So, like
Tilt's `allow_k8s_contexts`, a context must be known to be local, by the names local cluster
tools give their contexts or by an API server on a loopback address, or be listed in
`allow_contexts:`. The check reads only the kubeconfig: it runs before any request is made to
the cluster. Pure functions of (context name, server URL, allowed names).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from devloop.config.loader import Config

# Context names local cluster tools create (Tilt's clusterid list, plus exact names).
LOCAL_PREFIXES = ("kind-", "k3d-", "minikube", "colima", "microk8s", "docker-for-desktop",
                  "rancher-desktop")
LOCAL_NAMES = frozenset({"kind", "docker-desktop", "docker-for-desktop", "desktop-linux",
                         "orbstack", "rancher-desktop"})
# Of those, the ones whose nodes run containers from the Docker Engine on this machine (or get
# images loaded by devloop: minikube docker-env, kind load, k3d import).
_DELIVERABLE_PREFIXES = ("kind-", "k3d-", "minikube")
_SHARED_ENGINE = frozenset({"docker-desktop", "docker-for-desktop", "desktop-linux",
                            "rancher-desktop", "orbstack", "colima"})


def is_loopback_server(server: str) -> bool:
    """True when the API server URL's host is a loopback address (or `localhost`). Names are
    not resolved: a DNS name proves nothing about where it points."""
    host = urlsplit(server if "://" in server else f"https://{server}").hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_local_name(context: str) -> bool:
    """A context name a local cluster tool gives (kind-*, minikube*, k3d-*, docker-desktop...)."""
    return context in LOCAL_NAMES or context.startswith(LOCAL_PREFIXES)


def refusal(context: str, server: str, allowed: Iterable[str]) -> str | None:
    """None when devloop may deploy to `context`; else the one-line reason, naming the context
    and how to allow it."""
    if context in set(allowed) or is_local_name(context) or is_loopback_server(server):
        return None
    return (f"kube context '{context}' (API server {server}) is not known to be a local cluster;"
            f" devloop deploys only to local clusters (kind, minikube, k3d, docker-desktop, ...,"
            f" or an API server on a loopback address): if '{context}' is meant for development,"
            f" add it to allow_contexts: in devloop.yaml (allow_contexts: [{context}]),"
            " or pick another one with --context")


def shares_docker(context: str, server: str) -> bool:
    """Whether images devloop builds can run in this cluster without a registry: its name says
    which local tool made it (devloop then loads images into it), or its API server is on this
    machine."""
    return (context in _SHARED_ENGINE or context.startswith(_DELIVERABLE_PREFIXES)
            or context.startswith("colima") or is_loopback_server(server))


def registry_refusal(context: str, server: str) -> str:
    """The one line saying why a cluster without a shared Docker Engine needs `default_repo`."""
    return (f"kube context '{context}' (API server {server}) does not run the images of this"
            " machine's Docker Engine, and devloop.yaml has no default_repo: set `default_repo:"
            " REGISTRY` (e.g. default_repo: registry.example.com/me) so built images are pushed"
            " where the cluster can pull them, or `delivery: docker` if its nodes do use this"
            " Docker Engine")


def check_config(config: Config, context: str | None = None) -> str | None:
    """The refusal for the context devloop would use (`context`, else devloop.yaml's, else the
    kubeconfig's current one), read from the kubeconfig alone: no request is made. None when
    allowed, or when the kubeconfig cannot say (connecting reports that later)."""
    from devloop.k8s.cluster import connect

    kubeconfig = str(config.kubeconfig) if config.kubeconfig else None
    try:
        cluster = connect(context or config.context, config.namespace, kubeconfig)
    except ValueError:
        return None
    return refusal(cluster.context, cluster.server, config.allow_contexts)
