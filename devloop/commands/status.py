"""`devloop status`: per service, what runs, whether local sources differ, rollout and pod states.

For editor status bars and scripts: the deployed identity is the container image's `dl-` tag,
trusted when it agrees with the digest devloop recorded (see patch.Deployed), compared with the
digest of the local inputs (using the persisted hash cache, so it is quick); then the rollout's
health right now (the same rule `sync` uses) and the Deployment's pods.

Probe lines per pod (the ones the console folds) are counted here, from a bounded read of the
last PROBE_WINDOW_S of each pod's log, rather than kept by `watch`: status is a separate
process, so a count kept in watch would need a file or an annotation to reach it, and would be
missing whenever watch is not running. Reading the log is one request per pod and is true for
any pod, whoever started it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from devloop import exitcodes
from devloop.config.loader import Config, ServiceConfig
from devloop.config.logfilter import count_probe_lines, probe_matcher, probe_paths
from devloop.deploy.deployer import connect_config
from devloop.deploy.patch import Deployed, PatchError, deployed_of, workload_deployed
from devloop.deploy.registry import DOCKER_HUB, registry_host
from devloop.deploy.rollout import RolloutResult, rollout_health, workload_health
from devloop.inputs.digest import DigestCache, ServiceDigest
from devloop.k8s import timeouts
from devloop.k8s.cluster import Cluster, ClusterUnreachable, check_reachable
from devloop.k8s.errors import api_message, is_connection_error, one_line
from devloop.k8s.ownership import owned_secrets
from devloop.k8s.pods import Pod, list_pods
from devloop.k8s.selectors import selector_query
from devloop.k8s.workloads import WorkloadRef, fed_by, read_workload
from devloop.live.sync import pod_live
from devloop.manifests.render import RenderError, render

_TIMEOUT = timeouts.REQUEST
PROBE_WINDOW_S = 300
_PROBE_LOG_BYTES = 256 * 1024  # per pod; more in the window makes the count a lower bound


def collect_status(config: Config, cache: DigestCache | None = None,
                   services: list[str] | None = None, context: str | None = None,
                   cluster: Cluster | None = None, probes: bool = True,
                   secrets: Callable[[list[dict[str, Any]]], None] | None = None,
                   workloads: Callable[[ServiceConfig], list[ServiceConfig]] | None = None
                   ) -> tuple[list[dict[str, Any]], int]:
    """Rows for every selected service, and the exit code (CLUSTER_UNREACHABLE when the API
    server does not answer; the local part is still reported). A caller that is connected
    already (the dashboard, asked after every rollout) passes its `cluster`, and may skip the
    bounded log read behind each pod's `probe_lines` (`probes=False`). `secrets` is handed
    the Secret objects devloop created (redaction sources: status renders no chart).
    `workloads` says which workloads a service's image feeds (the deployer's cached answer);
    by default the manifests are rendered once to find them."""
    hashes = cache.load() if cache else {}
    rows: list[dict[str, Any]] = []
    for name in services or sorted(config.services):
        digest = ServiceDigest(config.services[name], hashes)
        digest.scan()
        rows.append({"service": name, "deployment": config.services[name].deployment,
                     "workload": str(config.services[name].workload),
                     "namespace": config.namespace, "local_digest": digest.digest()[:12],
                     "deployed_digest": None, "deployed_image": None, "stale": None,
                     "registry": None, "image_digest": None,
                     "state": "unknown", "healthy": None, "health": None, "log_tail": [],
                     "pods": [], "error": None})
    for name in sorted(n for n in config.resources if not services or n in services):
        rows.append({"service": name, "resource": True, "namespace": config.namespace,
                     "workload": str(config.resources[name].workload), "local_digest": None,
                     "deployed_digest": None, "deployed_image": None, "stale": None,
                     "state": "unknown", "healthy": None, "health": None, "log_tail": [],
                     "pods": [], "error": None})
    try:
        if cluster is None:
            cluster = connect_config(config, context)
        check_reachable(cluster)
    except (ValueError, ClusterUnreachable) as exc:
        for row in rows:
            row["error"] = str(exc)
        return rows, exitcodes.CLUSTER_UNREACHABLE
    if secrets is not None:
        secrets(owned_secrets(cluster))
    if workloads is None:
        workloads = _manifest_workloads(config)
    for row in rows:
        resource = bool(row.get("resource"))
        svc = config.resources[row["service"]] if resource else config.services[row["service"]]
        targets = [svc] if resource else workloads(svc)
        row["workloads"] = [str(t.workload) for t in targets]
        seen = [observed for t in targets
                if (observed := _observe_row(row, cluster, config.namespace, t, resource))]
        if len(seen) == len(targets):
            _fill(row, cluster, seen, probes)
    return rows, exitcodes.OK


def _manifest_workloads(config: Config) -> Callable[[ServiceConfig], list[ServiceConfig]]:
    """Every workload a service's image feeds (devloop.k8s.workloads.fed_by), from the manifests
    rendered once; the workload devloop.yaml names when there are none or they do not render."""
    if not config.deploy_format:
        return lambda svc: [svc]
    try:
        objects = [r.obj for r in render(config, config.namespace, os.environ)]
    except RenderError:
        return lambda svc: [svc]
    return lambda svc: fed_by(svc, objects, config.image_paths or None)


_Seen = tuple[Any, Deployed | None, RolloutResult, list[Pod]]


def _observe_row(row: dict[str, Any], cluster: Cluster, namespace: str, target: Any,
                 resource: bool) -> _Seen | None:
    """(target, what it runs, health, pods); None with the row's error set when it cannot say."""
    ref = target.workload
    ident = (f"deployment {namespace}/{ref.name}" if ref.kind.kind == "Deployment"
             else f"{ref} in namespace {namespace}")
    try:
        return (target, *_observe(cluster, namespace, ref, None if resource else target.container))
    except PatchError as exc:
        row.update(error=str(exc), stale=True, state="deployment does not match devloop.yaml")
    except ApiException as exc:
        missing = exc.status == 404
        row.update(error=f"{ident} not found" if missing
                   else f"cannot read {ident}: {api_message(exc)}", stale=True,
                   state="not deployed" if missing else "unknown")
    except Exception as exc:
        if not is_connection_error(exc):
            raise
        row["error"] = str(ClusterUnreachable.from_error(exc, cluster.server))
    return None


def _fill(row: dict[str, Any], cluster: Cluster, seen: list[_Seen], probes: bool) -> None:
    """The row from every workload of the service (or the resource): the first unhealthy one's
    health, all their pods, and what they run (stale when they do not all run one image)."""
    health = next((h for _, _, h, _ in seen if not h.ok), seen[0][2])
    pods = [(pod, target.container) for target, _, _, items in seen for pod in items]
    row.update(healthy=health.ok,
               health=None if health.ok else f"{health.reason}: {health.message}",
               log_tail=health.log_tail, pods=[p.row() for p, _ in pods])
    deployed = seen[0][1]
    if deployed is None:  # a resource: devloop does not build it
        row["state"] = "running" if health.ok else "not healthy"
        return
    row.update(_identity(deployed.digest, deployed.tag_digest, row["local_digest"]))
    row["deployed_image"] = deployed.image
    row.update(registry_identity(deployed.image))
    if len({d.digest for _, d, _, _ in seen if d is not None}) > 1:
        row.update(stale=True, state="its workloads run different images; `devloop sync`"
                   " deploys the local sources to all of them")
    _live(row, [pod_live(p, container) for p, container in pods if not p.deleting])
    for pod_row, (pod, container) in zip(row["pods"], pods, strict=True) if probes else ():
        pod_row["probe_lines"] = probe_lines(cluster.core, pod, container)


def registry_identity(image: str | None) -> dict[str, str | None]:
    """`registry` and `image_digest` of an image pinned by digest (registry delivery deploys
    `repo:dl-...@sha256:...`): which registry the nodes pull from and the exact manifest they
    run. Both None for a shared-engine image, which has no registry digest."""
    if not image or "@" not in image:
        return {"registry": None, "image_digest": None}
    name, _, digest = image.partition("@")
    return {"registry": registry_host(name) if "/" in name else DOCKER_HUB,
            "image_digest": digest}


def _observe(cluster: Cluster, namespace: str, ref: WorkloadRef, container: str | None
             ) -> tuple[Deployed | None, RolloutResult, list[Pod]]:
    """What the workload's template runs (for a container devloop feeds), its health right
    now and its pods, for a workload of any kind (ApiException 404 when it does not exist)."""
    if ref.kind.kind == "Deployment":
        dep = cluster.apps.read_namespaced_deployment(ref.name, namespace,
                                                      _request_timeout=_TIMEOUT)
        deployed = deployed_of(dep, namespace, container) if container else None
        pods = list_pods(cluster.core, namespace, selector_query(dep.spec.selector))
        return deployed, rollout_health(cluster.apps, cluster.core, dep), pods
    workload = read_workload(cluster.api_client, namespace, ref)
    deployed = workload_deployed(workload, container) if container else None
    result, text, _ = workload_health(cluster.core, workload, workload.generation)
    health = result or RolloutResult(False, "Progressing",
                                     one_line(f"{ref} in namespace {namespace}: {text}"))
    pods = [p for p in list_pods(cluster.core, namespace, workload.selector_query)
            if workload.owns(p)]
    return deployed, health, pods


def probe_lines(core: k8s.CoreV1Api, pod: Pod, container: str) -> dict[str, Any] | None:
    """`{count, window_s, complete}`: lines of the container's log in the last PROBE_WINDOW_S
    that are probe requests (logfilter's rule, the console's fold); complete is false when the
    window held more than the bounded read. None when the log cannot be read."""
    matcher = probe_matcher(probe_paths(pod.obj, container))
    try:
        text = core.read_namespaced_pod_log(
            pod.name, pod.namespace, container=container,
            since_seconds=PROBE_WINDOW_S, limit_bytes=_PROBE_LOG_BYTES, _request_timeout=_TIMEOUT)
    except ApiException:
        return None  # not started yet, or gone
    except Exception as exc:
        if not is_connection_error(exc):
            raise
        return None
    text = text or ""
    return {"count": count_probe_lines(text.splitlines(), matcher), "window_s": PROBE_WINDOW_S,
            "complete": len(text.encode()) < _PROBE_LOG_BYTES}


def _identity(verified: str | None, tag_hex: str | None, local: str) -> dict[str, Any]:
    """deployed_digest (what the running image's tag names), stale and the state text."""
    if tag_hex is None:
        return {"deployed_digest": None, "stale": True, "state": "not deployed by devloop"}
    if verified is None:
        return {"deployed_digest": tag_hex, "stale": True,
                "state": "image changed outside devloop (kubectl set image / rollout undo?);"
                         " `devloop sync` deploys the local sources"}
    stale = verified[:12] != local
    return {"deployed_digest": tag_hex, "stale": stale,
            "state": "local changes not deployed" if stale else "up to date"}


def _live(row: dict[str, Any], synced: list[dict[str, Any] | None]) -> None:
    """Live update: pods that run files synced on top of the image (`live`, None when every
    pod runs its image as built); up to date when they all run the local sources."""
    live = [s for s in synced if s is not None]
    if not live:
        row["live"] = None
        return
    ahead = max(s["files_ahead"] for s in live)
    row["live"] = {"pods": len(live), "of": len(synced), "files_ahead": ahead,
                   "digest": live[0]["digest"]}
    current = len(live) == len(synced) and all(s["digest"] == row["local_digest"] for s in live)
    unknown = sum(1 for s in live if s["unconfirmed"])
    row["live"]["unconfirmed"] = unknown
    if unknown and row["stale"] is not None and not row["error"]:
        row["stale"] = True
        row["state"] = (f"unknown: a live sync into {unknown} pod{'s' if unknown != 1 else ''}"
                        " did not finish (devloop stopped or the copy failed), so its files may"
                        " differ from both the image and the sources; `devloop watch` (copies"
                        " them again) or `devloop sync` (replaces the pod) makes it true")
    elif row["stale"] is not None and not row["error"]:
        row["stale"] = not current
        where = f"{len(live)}/{len(synced)} pods" if len(live) != len(synced) else "pods"
        row["state"] = (f"{'up to date' if current else 'local changes not synced'}: {where}"
                        f" run {ahead} file{'s' if ahead != 1 else ''} ahead of the image")


def render_status(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        if row.get("resource"):
            lines.append(f"{row['service']:<10} {row['workload']} (not built by devloop)  "
                         f"{row['state']}")
        else:
            lines.append(f"{row['service']:<10} local {row['local_digest']}  deployed "
                         f"{row['deployed_digest'] or '-':<12}  {row['state']}")
        if row.get("image_digest"):
            lines.append(f"    registry {row['registry']}  running {row['image_digest']}")
        if row["health"]:
            lines.append(f"    not healthy: {row['health']}")
            lines.extend(f"    | {line}" for line in row["log_tail"][-5:])
        for pod in row["pods"]:
            ready = "ready" if pod["ready"] else (pod["reason"] or "not ready")
            probes = pod.get("probe_lines")
            folded = "" if not probes else (
                f"  probe lines {probes['count']}{'' if probes['complete'] else '+'}"
                f" in {probes['window_s'] // 60} min")
            lines.append(f"    {pod['name']:<40} {pod['phase']:<9} {ready:<18} "
                         f"restarts {pod['restarts']}{folded}")
        if row["error"]:
            lines.append(f"    {row['error']}")
    return "\n".join(lines) + "\n"
