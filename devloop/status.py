"""`devloop status`: per service, what is deployed, whether local sources differ, pod states.

For editor status bars and scripts: reads the digest annotation devloop put on each Deployment
and compares it with the digest of the local inputs (using the persisted hash cache, so it is
quick), then lists the Deployment's pods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devloop import exitcodes
from devloop.cluster import ClusterUnreachable, check_reachable, connect
from devloop.digest import ServiceDigest
from devloop.patch import DIGEST_ANNOTATION

if TYPE_CHECKING:
    from devloop.app import App


def _pod_row(pod: Any) -> dict[str, Any]:
    statuses = pod.status.container_statuses or []
    reason = None
    for cs in statuses:
        if cs.state and cs.state.waiting and cs.state.waiting.reason:
            reason = cs.state.waiting.reason
        elif cs.state and cs.state.terminated and cs.state.terminated.reason:
            reason = cs.state.terminated.reason
    return {
        "name": pod.metadata.name,
        "phase": pod.status.phase,
        "ready": bool(statuses) and all(cs.ready for cs in statuses),
        "restarts": sum(cs.restart_count or 0 for cs in statuses),
        "reason": reason,
        "image": statuses[0].image if statuses else None,
    }


def collect_status(app: App) -> tuple[list[dict[str, Any]], int]:
    """Rows for every selected service, and the exit code (CLUSTER_UNREACHABLE when the API
    server does not answer; the local part is still reported)."""
    config = app.config
    cache = app.cache.load() if app.cache else {}
    names = app.services or sorted(config.services)
    rows: list[dict[str, Any]] = []
    for name in names:
        svc = config.services[name]
        digest = ServiceDigest(svc, cache)
        digest.scan()
        rows.append({"service": name, "deployment": svc.deployment, "namespace":
                     config.namespace, "local_digest": digest.digest()[:12],
                     "deployed_digest": None, "deployed_image": None, "stale": None,
                     "pods": [], "error": None})
    try:
        kubeconfig = str(config.kubeconfig) if config.kubeconfig else None
        cluster = connect(app.context or config.context, config.namespace, kubeconfig)
        check_reachable(cluster)
    except (ValueError, ClusterUnreachable) as exc:
        for row in rows:
            row["error"] = str(exc)
        return rows, exitcodes.CLUSTER_UNREACHABLE
    from kubernetes.client.exceptions import ApiException

    for row in rows:
        svc = config.services[row["service"]]
        try:
            dep = cluster.apps.read_namespaced_deployment(svc.deployment, config.namespace,
                                                          _request_timeout=(5, 15))
        except ApiException as exc:
            row["error"] = (f"deployment {config.namespace}/{svc.deployment} not found"
                            if exc.status == 404 else f"cannot read deployment: {exc.reason}")
            row["stale"] = True
            continue
        deployed = (dep.metadata.annotations or {}).get(DIGEST_ANNOTATION)
        row["deployed_digest"] = deployed[:12] if deployed else None
        row["stale"] = deployed is None or deployed[:12] != row["local_digest"]
        for c in dep.spec.template.spec.containers or []:
            if c.name == svc.container:
                row["deployed_image"] = c.image
        selector = ",".join(f"{k}={v}" for k, v in
                            sorted((dep.spec.selector.match_labels or {}).items()))
        pods = cluster.core.list_namespaced_pod(config.namespace, label_selector=selector,
                                                _request_timeout=(5, 15))
        row["pods"] = [_pod_row(p) for p in pods.items]
    return rows, exitcodes.OK


def render_status(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        if row["stale"] is None:
            state = "unknown"
        else:
            state = "local changes not deployed" if row["stale"] else "up to date"
        lines.append(f"{row['service']:<10} local {row['local_digest']}  deployed "
                     f"{row['deployed_digest'] or '-':<12}  {state}")
        for pod in row["pods"]:
            ready = "ready" if pod["ready"] else (pod["reason"] or "not ready")
            lines.append(f"    {pod['name']:<40} {pod['phase']:<9} {ready:<18} "
                         f"restarts {pod['restarts']}")
        if row["error"]:
            lines.append(f"    {row['error']}")
    return "\n".join(lines) + "\n"
