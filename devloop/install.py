"""First deploy: render the chart with `helm template` and create only what is missing.

Why not `helm upgrade --install`: devloop renders with `helm template` and creates only the
missing objects through the Kubernetes client, so it can guarantee that nothing is ever deleted
or modified (the SQLite PersistentVolumeClaim included) whatever the chart or the cluster state;
it needs no Helm release storage (no release Secrets to drift from what devloop patched); and
afterwards it patches only the images that changed. `helm upgrade` would instead reconcile every
object back to the chart, undoing devloop's image patches and possibly re-creating resources.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from devloop import retry
from devloop.cluster import Cluster, ClusterUnreachable
from devloop.errors_k8s import api_message, is_connection_error, one_line
from devloop.ownership import mark

HELM_INSTALL_HINT = ("install helm 3 or 4 (https://helm.sh/docs/intro/install/, or"
                     " scripts/install-helm in this repo) or point devloop at it")

# Environment variables with a fixed meaning for the Lumina chart. Anything else can be given as
# DEVLOOP_SET_<dotted.path with __ for dots>, e.g. DEVLOOP_SET_backend__secrets__jwtSecretKey.
SECRET_ENV_MAP: dict[str, str] = {
    "JWT_SECRET_KEY": "backend.secrets.jwtSecretKey",
    "SMTP_USER": "backend.secrets.smtpUser",
    "SMTP_PASS": "backend.secrets.smtpPass",
    "OPENROUTER_API_KEY": "chatbot.secrets.openrouterApiKey",
}
SET_PREFIX = "DEVLOOP_SET_"

# Creation order: what others refer to comes first (the namespace, then config and storage,
# then the Services, and the Deployments last so their pods find everything on start).
CREATE_ORDER = ("Namespace", "ServiceAccount", "ConfigMap", "Secret", "PersistentVolumeClaim",
                "Service", "Deployment", "StatefulSet")


class InstallError(Exception):
    """One line naming the chart or the object that could not be rendered or created."""


RELEASE_ANNOTATION = "meta.helm.sh/release-name"  # helm's; devloop sets it on what it creates


@dataclass(frozen=True)
class _KindApi:
    group: str  # "core" or "apps"
    snake: str  # e.g. "config_map": used to find read_/create_ methods
    namespaced: bool = True


KINDS: dict[str, _KindApi] = {
    "Namespace": _KindApi("core", "namespace", namespaced=False),
    "ServiceAccount": _KindApi("core", "service_account"),
    "ConfigMap": _KindApi("core", "config_map"),
    "Secret": _KindApi("core", "secret"),
    "PersistentVolumeClaim": _KindApi("core", "persistent_volume_claim"),
    "Service": _KindApi("core", "service"),
    "Deployment": _KindApi("apps", "deployment"),
    "StatefulSet": _KindApi("apps", "stateful_set"),
}


def _nested(dotted: Mapping[str, str]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for key, value in dotted.items():
        node = root
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InstallError(f"value {key} conflicts with another value set on {part}")
        node[leaf] = value
    return root


def render_chart(chart_dir: Path, release: str, namespace: str, values_files: list[Path],
                 set_values: dict[str, str], helm: str = "helm",
                 run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
                 timeout: float = 120) -> list[dict[str, Any]]:
    """`helm template` the chart and return its objects as dicts.

    set_values go to helm through a private temporary values file, never the command line, so
    secrets do not show up in `ps`; they are strings (like --set-string).
    """
    chart_dir = Path(chart_dir)
    if not (chart_dir / "Chart.yaml").is_file():
        raise InstallError(f"chart directory {chart_dir} has no Chart.yaml")
    for values in values_files:
        if not Path(values).is_file():
            raise InstallError(f"values file {values} does not exist")
    args = [helm, "template", release, str(chart_dir), "--namespace", namespace]
    for values in values_files:
        args += ["--values", str(values)]
    fd, secret_file = tempfile.mkstemp(prefix="devloop-values-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp: mode 0600
            yaml.safe_dump(_nested(set_values), handle)
        if set_values:
            args += ["--values", secret_file]
        try:
            done = run(args, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError as exc:
            raise InstallError(f"helm is not installed ('{helm}' not found); it renders the chart"
                               f" {chart_dir} for the first deploy: {HELM_INSTALL_HINT}") from exc
        except subprocess.TimeoutExpired as exc:
            raise InstallError(f"helm template {chart_dir} did not finish in {timeout:.0f}s"
                               ) from exc
    finally:
        os.unlink(secret_file)
    if done.returncode != 0:
        message = _helm_error(done.stderr)
        env_names = [env for env, path in SECRET_ENV_MAP.items() if path in message]
        if env_names:
            message += f" (devloop reads it from the environment variable {env_names[0]})"
        raise InstallError(one_line(f"helm template {chart_dir} failed: {message}", 700))
    try:
        docs = list(yaml.safe_load_all(done.stdout))
    except yaml.YAMLError as exc:
        raise InstallError(one_line(f"helm template {chart_dir} printed invalid YAML: {exc}")
                           ) from exc
    return [d for d in docs if isinstance(d, dict) and d.get("kind")]


def _helm_error(stderr: str) -> str:
    """The `Error: ...` line helm prints (a chart's `fail` message ends up there)."""
    lines = [ln.strip() for ln in (stderr or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error:")]
    chosen = errors[-1] if errors else (lines[-1] if lines else "no error output")
    return chosen.removeprefix("Error:").strip()


def secret_values_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """Chart values for secrets, taken from the environment (never from git).

    Fixed names: JWT_SECRET_KEY -> backend.secrets.jwtSecretKey, SMTP_USER ->
    backend.secrets.smtpUser, SMTP_PASS -> backend.secrets.smtpPass, OPENROUTER_API_KEY ->
    chatbot.secrets.openrouterApiKey. Any value: DEVLOOP_SET_<path, `__` between keys>, e.g.
    DEVLOOP_SET_backend__secrets__jwtSecretKey; those win over the fixed names. Empty variables
    are ignored so an exported-but-empty variable does not blank a values file entry.
    """
    values: dict[str, str] = {}
    for name, path in SECRET_ENV_MAP.items():
        if env.get(name):
            values[path] = env[name]
    for name, value in env.items():
        if name.startswith(SET_PREFIX) and len(name) > len(SET_PREFIX) and value:
            values[name[len(SET_PREFIX):].replace("__", ".")] = value
    return values


def kind_name(obj: Mapping[str, Any]) -> str:
    """"Kind/name" of a manifest object (how devloop names objects in messages and plans)."""
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def _spec(obj: Mapping[str, Any]) -> _KindApi:
    spec = KINDS.get(str(obj.get("kind")))
    if spec is None:
        raise InstallError(f"the chart renders {kind_name(obj)}, a kind devloop does not create"
                           f" (it creates {', '.join(KINDS)}); install the chart with helm once")
    if not (obj.get("metadata") or {}).get("name"):
        raise InstallError(f"the chart renders a {obj.get('kind')} without metadata.name")
    return spec


def _api_for(api_client: k8s.ApiClient, obj: Mapping[str, Any]) -> tuple[Any, _KindApi]:
    spec = _spec(obj)
    api = k8s.CoreV1Api(api_client) if spec.group == "core" else k8s.AppsV1Api(api_client)
    return api, spec


def _with_namespaces(objects: list[dict[str, Any]], default_ns: str) -> list[dict[str, Any]]:
    """Copies with metadata.namespace filled in, plus a Namespace object for every namespace used
    that the chart does not render itself (helm template leaves both to the installer)."""
    out: list[dict[str, Any]] = []
    used: list[str] = []
    rendered_ns = {o["metadata"]["name"] for o in objects if o.get("kind") == "Namespace"}
    for obj in objects:
        spec = _spec(obj)
        copy = dict(obj)
        meta = dict(copy.get("metadata") or {})
        if spec.namespaced:
            meta.setdefault("namespace", default_ns)
            if meta["namespace"] not in used:
                used.append(meta["namespace"])
        copy["metadata"] = meta
        out.append(copy)
    extra = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
             for ns in used if ns not in rendered_ns]
    return extra + out


def _exists(api_client: k8s.ApiClient, obj: Mapping[str, Any]) -> bool:
    api, spec = _api_for(api_client, obj)
    meta = obj["metadata"]
    read = getattr(api, f"read_{'namespaced_' if spec.namespaced else ''}{spec.snake}")
    args = [meta["name"], meta["namespace"]] if spec.namespaced else [meta["name"]]
    try:
        resp = retry.call(lambda: read(*args, _preload_content=False,
                                       _request_timeout=retry.REQUEST_TIMEOUT),
                          what=f"read {kind_name(obj)}")
    except ApiException as exc:
        if exc.status == 404:
            return False
        if retry.is_transient(exc):  # still overloaded after the retries: the engine retries
            raise ClusterUnreachable.from_error(exc, str(api_client.configuration.host)) from exc
        raise InstallError(one_line(f"cannot read {kind_name(obj)}: {api_message(exc)}")) from exc
    except Exception as exc:
        if is_connection_error(exc):
            raise ClusterUnreachable.from_error(exc, str(api_client.configuration.host)) from exc
        raise
    resp.drain_conn()  # read the rest: an unread body would poison the pooled connection
    resp.release_conn()
    return True


def missing_objects(cluster: Cluster, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects (namespaces filled in, plus needed Namespaces) that do not exist yet."""
    try:
        return [o for o in _with_namespaces(objects, cluster.namespace)
                if not _exists(cluster.api_client, o)]
    except ClusterUnreachable as exc:
        raise cluster.unreachable(exc.__cause__ or exc) from exc


def _adoptable(obj: dict[str, Any], release: str) -> dict[str, Any]:
    """Helm's ownership annotations, so a later `helm upgrade --install` of the same release
    adopts these objects instead of refusing to touch them."""
    meta = dict(obj["metadata"])
    annotations = dict(meta.get("annotations") or {})
    annotations.setdefault(RELEASE_ANNOTATION, release)
    annotations.setdefault("meta.helm.sh/release-namespace", meta.get("namespace") or "")
    meta["annotations"] = annotations
    meta["labels"] = {**(meta.get("labels") or {}), "app.kubernetes.io/managed-by": "Helm"}
    return {**obj, "metadata": meta}


def install_missing(cluster: Cluster, objects: list[dict[str, Any]],
                    release: str | None = None) -> list[str]:
    """CREATE the missing objects in dependency order and return "Kind/name" for each created.

    Existing objects are never replaced, patched or deleted, so a PVC holding data, a Secret
    edited by hand or a Deployment devloop already patched stays exactly as it is. Created
    objects carry devloop's mark (ownership.mark); with `release`, also Helm's ownership
    metadata for that release name.
    """
    api_client = cluster.api_client
    todo = sorted(missing_objects(cluster, objects), key=lambda o: CREATE_ORDER.index(o["kind"]))
    if release:
        todo = [_adoptable(o, release) if o["kind"] != "Namespace" else o for o in todo]
    todo = [mark(o, release) for o in todo]  # devloop's own mark: what `down` may delete
    created: list[str] = []
    for obj in todo:
        api, spec = _api_for(api_client, obj)
        meta = obj["metadata"]
        create = getattr(api, f"create_{'namespaced_' if spec.namespaced else ''}{spec.snake}")
        args = [meta["namespace"], obj] if spec.namespaced else [obj]
        try:
            # a create whose answer was lost is retried and meets 409: skipped below
            resp = retry.call(lambda create=create, args=args: create(
                *args, _preload_content=False, _request_timeout=retry.REQUEST_TIMEOUT),
                what=f"create {kind_name(obj)}")
        except ApiException as exc:
            if exc.status == 409:
                continue  # created meanwhile by someone else: leave theirs alone
            if retry.is_transient(exc):
                raise cluster.unreachable(exc) from exc
            raise InstallError(one_line(f"cannot create {kind_name(obj)} in namespace"
                                        f" {meta.get('namespace', '-')}: {api_message(exc)}")
                               ) from exc
        except Exception as exc:
            if is_connection_error(exc):
                raise cluster.unreachable(exc) from exc
            raise
        resp.drain_conn()  # read the rest: an unread body would poison the pooled connection
        resp.release_conn()
        created.append(kind_name(obj))
    return created
