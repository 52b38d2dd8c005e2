"""Deployment controller: one ReplicaSet per pod template, Recreate and RollingUpdate rollouts,
and the status/conditions that `kubectl rollout status` and devloop read."""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections import defaultdict
from typing import Any

from . import errors
from .api import Api
from .clock import now, parse_time, rfc3339, template_hash
from .pod_state import Obj, controller_uid, is_active, is_available, is_ready, owner_reference

log = logging.getLogger("kube_standin.deployments")

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"


def _int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        scaled = int(text[:-1]) * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(text)


def surge_and_unavailable(deployment: Obj, serialize: bool) -> tuple[int, int]:
    """maxSurge (rounded up) and maxUnavailable (rounded down), as kube resolves them.

    `serialize` (host networking: two pods of one Deployment would fight over the same ports)
    forces maxSurge 0 so the old pod is stopped before the new one starts.
    """
    spec = deployment["spec"]
    desired = spec.get("replicas", 1)
    strategy = spec.get("strategy") or {}
    if strategy.get("type") != "RollingUpdate":
        return 0, 0
    rolling = strategy.get("rollingUpdate") or {}
    surge = _int_or_percent(rolling.get("maxSurge", "25%"), desired, True)
    unavailable = _int_or_percent(rolling.get("maxUnavailable", "25%"), desired, False)
    if serialize:
        surge, unavailable = 0, max(unavailable, 1)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


class DeploymentController:
    def __init__(self, api: Api, serialize_rollouts: bool = False) -> None:
        self._api = api
        self._serialize = serialize_rollouts
        self._deploy = api.table.by_plural("deployments")
        self._rs = api.table.by_plural("replicasets")

    def reconcile(self) -> None:
        store = self._api.store
        deployments, _ = store.list_raw("deployments")
        replicasets, _ = store.list_raw("replicasets")
        pods, _ = store.list_raw("pods")
        rs_by_owner: dict[str, list[Obj]] = defaultdict(list)
        for rs in replicasets:
            uid = controller_uid(rs)
            if uid and not rs["metadata"].get("deletionTimestamp"):
                rs_by_owner[uid].append(rs)
        pods_by_owner: dict[str, list[Obj]] = defaultdict(list)
        for pod in pods:
            uid = controller_uid(pod)
            if uid:
                pods_by_owner[uid].append(pod)
        for deployment in deployments:
            if deployment["metadata"].get("deletionTimestamp"):
                continue
            owned = rs_by_owner.get(deployment["metadata"]["uid"], [])
            try:
                self._sync(deployment, owned, pods_by_owner)
            except errors.ApiError as exc:
                if exc.code not in (404, 409):
                    log.warning("deployment %s/%s: %s", deployment["metadata"]["namespace"],
                                deployment["metadata"]["name"], exc.message)

    # -- one deployment ------------------------------------------------------------------------

    def _sync(self, d: Obj, owned: list[Obj], pods_by_owner: dict[str, list[Obj]]) -> None:
        spec = d["spec"]
        desired = spec.get("replicas", 1)
        digest = template_hash(spec["template"])
        new_rs = next((rs for rs in owned
                       if rs["spec"]["template"]["metadata"].get("labels", {}).get(HASH_LABEL)
                       == digest), None)
        old = [rs for rs in owned if rs is not new_rs]
        revisions = [int(rs["metadata"].get("annotations", {}).get(REVISION, "0")) for rs in owned]
        created = False
        if not spec.get("paused"):
            recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
            if recreate:
                if any(rs["spec"].get("replicas", 0) > 0 for rs in old):
                    for rs in old:
                        self._scale(rs, 0)
                    return
                if any(pods_by_owner.get(rs["metadata"]["uid"]) for rs in old):
                    self._write_status(d, new_rs, old, pods_by_owner, False)
                    return  # wait until every old container is gone
                if new_rs is None:
                    new_rs = self._create_rs(d, digest, desired, max(revisions, default=0) + 1)
                    created = True
                elif new_rs["spec"].get("replicas") != desired:
                    new_rs = self._scale(new_rs, desired)
            else:
                if new_rs is None:
                    new_rs = self._create_rs(d, digest, 0, max(revisions, default=0) + 1)
                    created = True
                new_rs = self._roll(d, new_rs, old, pods_by_owner)
            current = int((new_rs or {}).get("metadata", {}).get("annotations", {}).get(
                REVISION, "0"))
            if new_rs is not None and revisions and current < max(revisions):
                new_rs = self._set_revision(new_rs, max(revisions) + 1)
            self._cleanup(d, old, pods_by_owner)
        self._write_status(d, new_rs, old, pods_by_owner, created)

    def _roll(self, d: Obj, new_rs: Obj, old: list[Obj],
              pods_by_owner: dict[str, list[Obj]]) -> Obj:
        desired = d["spec"].get("replicas", 1)
        surge, unavailable = surge_and_unavailable(d, self._serialize)
        min_ready = d["spec"].get("minReadySeconds", 0)
        all_rs = [new_rs, *old]

        def spec_replicas(rs: Obj) -> int:
            return rs["spec"].get("replicas", 0)

        def available(rs: Obj) -> int:
            return sum(1 for p in pods_by_owner.get(rs["metadata"]["uid"], [])
                       if is_active(p) and is_available(p, min_ready))

        # Scale up the new ReplicaSet within maxSurge.
        total = sum(spec_replicas(rs) for rs in all_rs)
        target = spec_replicas(new_rs)
        if target > desired:
            target = desired
        elif total < desired + surge and target < desired:
            target = min(desired, target + desired + surge - total)
        if not old:
            target = desired
        if self._serialize and target > spec_replicas(new_rs) and any(
                pods_by_owner.get(rs["metadata"]["uid"]) for rs in old):
            # host network: a new pod started beside a terminating one could not bind its ports,
            # and its probes would reach the old pod's server; wait until the old ones are gone
            target = spec_replicas(new_rs)
        if target != spec_replicas(new_rs):
            new_rs = self._scale(new_rs, target)
            return new_rs

        # Scale down old ReplicaSets while keeping desired - maxUnavailable available.
        min_available = desired - unavailable
        all_pods = sum(spec_replicas(rs) for rs in all_rs)
        new_unavailable = max(spec_replicas(new_rs) - available(new_rs), 0)
        budget = all_pods - min_available - new_unavailable
        if budget <= 0:
            return new_rs
        old_sorted = sorted(old, key=lambda rs: rs["metadata"]["creationTimestamp"])
        # First unhealthy old replicas (they do not count toward availability anyway).
        for rs in old_sorted:
            if budget <= 0:
                break
            unhealthy = spec_replicas(rs) - available(rs)
            if unhealthy > 0:
                down = min(unhealthy, budget)
                self._scale(rs, spec_replicas(rs) - down)
                rs["spec"]["replicas"] = spec_replicas(rs) - down
                budget -= down
        available_total = sum(available(rs) for rs in all_rs)
        excess = min(available_total - min_available, budget)
        for rs in old_sorted:
            if excess <= 0:
                break
            down = min(spec_replicas(rs), excess)
            if down > 0:
                self._scale(rs, spec_replicas(rs) - down)
                excess -= down
        return new_rs

    # -- replica sets --------------------------------------------------------------------------

    def _create_rs(self, d: Obj, digest: str, replicas: int, revision: int) -> Obj:
        template = copy.deepcopy(d["spec"]["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = digest
        selector = copy.deepcopy(d["spec"]["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = digest
        annotations = {
            k: v for k, v in (d["metadata"].get("annotations") or {}).items()
            if not k.startswith("kubectl.kubernetes.io/last-applied")
        }
        annotations[REVISION] = str(revision)
        annotations["deployment.kubernetes.io/desired-replicas"] = str(d["spec"].get("replicas", 1))
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{d['metadata']['name']}-{digest}",
                "namespace": d["metadata"]["namespace"],
                "labels": dict(template["metadata"]["labels"]),
                "annotations": annotations,
                "ownerReferences": [owner_reference(d)],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": d["spec"].get("minReadySeconds", 0),
                "selector": selector,
                "template": template,
            },
        }
        try:
            return self._api.create(self._rs, d["metadata"]["namespace"], rs)
        except errors.ApiError as exc:
            if exc.code != 409:
                raise
            existing = self._api.get(self._rs, d["metadata"]["namespace"], rs["metadata"]["name"])
            return existing

    def _scale(self, rs: Obj, replicas: int) -> Obj:
        def change(obj: Obj) -> Obj:
            obj["spec"]["replicas"] = replicas
            return obj

        return self._api.store.update(self._rs, rs["metadata"]["namespace"],
                                      rs["metadata"]["name"], change)

    def _set_revision(self, rs: Obj, revision: int) -> Obj:
        def change(obj: Obj) -> Obj:
            obj["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
            return obj

        return self._api.store.update(self._rs, rs["metadata"]["namespace"],
                                      rs["metadata"]["name"], change)

    def _cleanup(self, d: Obj, old: list[Obj], pods_by_owner: dict[str, list[Obj]]) -> None:
        """Deletes old, empty ReplicaSets beyond spec.revisionHistoryLimit."""
        limit = d["spec"].get("revisionHistoryLimit", 10)
        idle = [rs for rs in old if rs["spec"].get("replicas", 0) == 0
                and not pods_by_owner.get(rs["metadata"]["uid"])]
        idle.sort(key=lambda rs: int(rs["metadata"].get("annotations", {}).get(REVISION, "0")))
        for rs in idle[: max(len(idle) - limit, 0)]:
            with contextlib.suppress(errors.ApiError):
                self._api.store.remove(self._rs, rs["metadata"]["namespace"],
                                       rs["metadata"]["name"])

    # -- status --------------------------------------------------------------------------------

    def _write_status(self, d: Obj, new_rs: Obj | None, old: list[Obj],
                      pods_by_owner: dict[str, list[Obj]], created: bool) -> None:
        spec = d["spec"]
        desired = spec.get("replicas", 1)
        min_ready = spec.get("minReadySeconds", 0)
        all_rs = ([new_rs] if new_rs else []) + old
        active = [p for rs in all_rs for p in pods_by_owner.get(rs["metadata"]["uid"], [])
                  if is_active(p)]
        new_pods = [p for p in pods_by_owner.get(new_rs["metadata"]["uid"], [])
                    if is_active(p)] if new_rs else []
        available = sum(1 for p in active if is_available(p, min_ready))
        status: Obj = {
            "observedGeneration": d["metadata"].get("generation", 1),
            "replicas": len(active),
            "updatedReplicas": len(new_pods),
            "readyReplicas": sum(1 for p in active if is_ready(p)),
            "availableReplicas": available,
            "unavailableReplicas": max(desired - available, 0),
        }
        for key in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas",
                    "unavailableReplicas"):
            if status[key] == 0:
                del status[key]
        previous = d.get("status") or {}
        conditions = {c["type"]: c for c in previous.get("conditions") or []}
        _, unavailable = surge_and_unavailable(d, False)
        min_available = desired - unavailable
        stamp = rfc3339()
        conditions["Available"] = _condition(
            conditions.get("Available"), "Available",
            available >= min_available,
            "MinimumReplicasAvailable" if available >= min_available
            else "MinimumReplicasUnavailable",
            "Deployment has minimum availability." if available >= min_available
            else "Deployment does not have minimum availability.", stamp, progress=False)
        rs_name = new_rs["metadata"]["name"] if new_rs else d["metadata"]["name"]
        complete = (
            new_rs is not None
            and len(new_pods) == desired
            and len(active) == desired
            and available == desired
        )
        old_prog = conditions.get("Progressing")
        progressed = created or any(
            status.get(key, 0) > previous.get(key, 0)
            for key in ("updatedReplicas", "readyReplicas", "availableReplicas")
        ) or status.get("replicas", 0) < previous.get("replicas", 0) or (
            previous.get("observedGeneration") != status["observedGeneration"])
        if spec.get("paused"):
            conditions["Progressing"] = _condition(
                old_prog, "Progressing", None, "DeploymentPaused", "Deployment is paused",
                stamp, progress=True)
        elif complete:
            conditions["Progressing"] = _condition(
                old_prog, "Progressing", True, "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.', stamp,
                progress=not old_prog or old_prog.get("reason") != "NewReplicaSetAvailable")
        elif created:
            conditions["Progressing"] = _condition(
                old_prog, "Progressing", True, "NewReplicaSetCreated",
                f'Created new replica set "{rs_name}"', stamp, progress=True)
        elif progressed or old_prog is None or old_prog.get("reason") == "NewReplicaSetAvailable":
            conditions["Progressing"] = _condition(
                old_prog, "Progressing", True, "ReplicaSetUpdated",
                f'ReplicaSet "{rs_name}" is progressing.', stamp, progress=True)
        elif old_prog.get("reason") != "ProgressDeadlineExceeded":
            deadline = spec.get("progressDeadlineSeconds", 600)
            last = parse_time(old_prog.get("lastUpdateTime") or stamp)
            if (now() - last).total_seconds() > deadline:
                conditions["Progressing"] = _condition(
                    old_prog, "Progressing", False, "ProgressDeadlineExceeded",
                    f'ReplicaSet "{rs_name}" has timed out progressing.', stamp, progress=True)
        order = [c for c in ("Available", "Progressing") if c in conditions]
        status["conditions"] = [conditions[c] for c in order]
        revision = (new_rs or {}).get("metadata", {}).get("annotations", {}).get(REVISION)
        if status == previous and (not revision or
                                   d["metadata"].get("annotations", {}).get(REVISION) == revision):
            return

        def write(obj: Obj) -> Obj:
            obj["status"] = status
            if revision:
                obj["metadata"].setdefault("annotations", {})[REVISION] = revision
            return obj

        self._api.store.update(self._deploy, d["metadata"]["namespace"], d["metadata"]["name"],
                               write)


def _condition(old: Obj | None, kind: str, value: bool | None, reason: str, message: str,
               stamp: str, progress: bool) -> Obj:
    text = "Unknown" if value is None else ("True" if value else "False")
    same = old is not None and old.get("status") == text
    changed = old is None or old.get("reason") != reason or old.get("message") != message
    return {
        "type": kind,
        "status": text,
        "lastUpdateTime": stamp if (progress or changed or old is None)
        else old.get("lastUpdateTime", stamp),
        "lastTransitionTime": old.get("lastTransitionTime", stamp) if same else stamp,
        "reason": reason,
        "message": message,
    }
