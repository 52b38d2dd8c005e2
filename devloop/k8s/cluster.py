"""Connection to one cluster through a kube context, with its own ApiClient.

`kubernetes.config.load_kube_config` writes a process-wide default configuration; devloop keeps
one `ApiClient` per `Cluster` instead, so nothing else in the process (tests, a second context)
can be redirected by accident. Connecting does no network I/O: reachability is checked
separately so `watch` can retry it with backoff while `sync` fails fast.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from devloop.k8s import timeouts
from devloop.k8s.errors import api_message, connection_detail, is_connection_error, one_line


class ClusterUnreachable(Exception):
    """The API server cannot be used; str() is one line naming context, URL and what to check."""

    def __init__(self, context: str | None, server: str, detail: str, *, status: int | None = None):
        self.context = context
        self.server = server
        self.detail = detail
        self.status = status
        super().__init__(self._render())

    def _render(self) -> str:
        ctx = f"context '{self.context}'" if self.context else "the cluster"
        kubectl = f"kubectl --context {self.context}" if self.context else "kubectl"
        if self.status in (401, 403):
            hint = (
                "the credentials were rejected: the token or client certificate may have expired;"
                f" refresh them (e.g. `{kubectl} get ns` re-runs the auth plugin) or log in again"
            )
        elif self.status is not None and (self.status == 429 or self.status >= 500):
            hint = ("the API server is overloaded or restarting; devloop retries by itself"
                    f" (if it lasts, check `{kubectl} get --raw /readyz?verbose`)")
        else:
            hint = (
                f"check `{kubectl} cluster-info`"
                " and that the cluster is running (minikube status, Docker Desktop, kind/k3d)"
            )
        return one_line(f"cannot use the Kubernetes API of {ctx} at {self.server}: "
                        f"{self.detail}; {hint}", 600)

    @classmethod
    def from_error(cls, exc: BaseException, server: str, context: str | None = None
                   ) -> ClusterUnreachable:
        """Wrap a client failure; callers decide first whether it is a reachability problem."""
        if isinstance(exc, ApiException) and exc.status not in (0, None):
            return cls(context, server, api_message(exc), status=exc.status)
        return cls(context, server, connection_detail(exc))


@dataclass(frozen=True)
class Cluster:
    """A kube context resolved to an ApiClient, plus the namespace devloop works in."""

    api_client: k8s.ApiClient
    context: str
    server: str
    namespace: str

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api_client)

    @property
    def apps(self) -> k8s.AppsV1Api:
        return k8s.AppsV1Api(self.api_client)

    def unreachable(self, exc: BaseException) -> ClusterUnreachable:
        return ClusterUnreachable.from_error(exc, self.server, self.context)


def kubeconfig_paths(kubeconfig: str | None) -> list[Path]:
    """The files kubectl reads: the argument, else $KUBECONFIG (path list), else ~/.kube/config."""
    raw = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p]


def _merged_kubeconfig(paths: list[Path]) -> dict[str, Any]:
    """kubectl's merge rule, reduced to what devloop needs: the first definition of a name wins."""
    merged: dict[str, Any] = {"contexts": {}, "clusters": {}, "current-context": None}
    for path in paths:
        if not path.is_file():
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(one_line(f"kubeconfig {path} cannot be read: {exc}")) from exc
        if not isinstance(data, dict):
            raise ValueError(f"kubeconfig {path} is not a kubeconfig mapping")
        if not merged["current-context"] and data.get("current-context"):
            merged["current-context"] = data["current-context"]
        for section in ("contexts", "clusters"):
            for item in data.get(section) or []:
                if isinstance(item, dict) and item.get("name"):
                    merged[section].setdefault(item["name"], item.get(section[:-1]) or {})
    return merged


def connect(context: str | None, namespace: str, kubeconfig: str | None = None) -> Cluster:
    """Resolve `context` (None: the kubeconfig's current context) without touching the network.

    Raises ValueError naming the kubeconfig or the context when they do not exist.
    """
    paths = kubeconfig_paths(kubeconfig)
    shown = os.pathsep.join(str(p) for p in paths)
    if not any(p.is_file() for p in paths):
        raise ValueError(f"kubeconfig {shown} does not exist: point --kubeconfig or KUBECONFIG"
                         " at one, or create it with your cluster tool (minikube start, kind ...)")
    merged = _merged_kubeconfig(paths)
    name = context or merged["current-context"]
    if not name:
        raise ValueError(f"kubeconfig {shown} has no current context: set `context:` in"
                         " devloop.yaml, pass --context, or run `kubectl config use-context`")
    if name not in merged["contexts"]:
        known = ", ".join(sorted(merged["contexts"])) or "none"
        raise ValueError(f"kube context '{name}' is not in {shown} (contexts: {known})")
    try:
        api_client = k8s_config.new_client_from_config(
            config_file=shown, context=name, persist_config=False)
    except (k8s_config.ConfigException, OSError, KeyError, ValueError) as exc:
        raise ValueError(one_line(f"kube context '{name}' in {shown} is unusable: {exc}")) from exc
    server = str(api_client.configuration.host)
    if api_client.configuration.verify_ssl is False:
        _warn_insecure(name, server, shown)
    return Cluster(api_client=api_client, context=name, server=server, namespace=namespace)


class InsecureClusterWarning(UserWarning):
    """The kube context skips TLS verification (said once per context, not per request)."""


def _warn_insecure(context: str, server: str, kubeconfig: str) -> None:
    """One devloop warning naming the context, instead of urllib3's InsecureRequestWarning on
    every request (urllib3 sets that one to "always": hundreds of lines per minute of watch)."""
    warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
    warnings.warn(InsecureClusterWarning(
        f"kube context '{context}' skips TLS verification (insecure-skip-tls-verify in"
        f" {kubeconfig}): the identity of {server} is not checked; set the cluster's"
        " certificate-authority-data instead"), stacklevel=3)


def check_reachable(cluster: Cluster, timeout: float = timeouts.CONNECT_S) -> str:
    """GET /version and return the server's gitVersion; ClusterUnreachable otherwise.

    /version is allowed to anonymous users on most clusters, so an expired token is reported
    here only when the cluster says so; later calls raise the same error with status 401/403.
    """
    try:
        info = k8s.VersionApi(cluster.api_client).get_code(_request_timeout=(timeout, timeout))
    except ApiException as exc:
        raise cluster.unreachable(exc) from exc
    except Exception as exc:
        if is_connection_error(exc):
            raise cluster.unreachable(exc) from exc
        raise
    return str(info.git_version)


def new_api_client(cluster: Cluster) -> k8s.ApiClient:
    """A separate ApiClient for a long-lived stream or watch thread.

    It shares the Configuration (so refreshed credentials reach it) but not the connection pool,
    and `kubernetes.stream` may patch it without affecting the cluster's main client.
    """
    return k8s.ApiClient(configuration=cluster.api_client.configuration)
