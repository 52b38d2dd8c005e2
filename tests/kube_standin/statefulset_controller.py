"""StatefulSet controller: pods `<name>-0..n-1` created in order (OrderedReady) or all at once
(Parallel), a PVC `<template>-<name>-<ordinal>` per volumeClaimTemplate that outlives the pods,
rolling updates from the highest ordinal down to the partition (or only on delete), and the
status `kubectl rollout status` reads."""

from __future__ import annotations

import logging

from .api import Api
from .pod_state import Obj, is_active, is_ready, is_terminating
from .workloads import (
    REVISION_LABEL,
    pod_from_template,
    pods_by_controller,
    revision,
    sync_each,
    write_status,
)

log = logging.getLogger("kube_standin.statefulsets")


def ordinal(pod: Obj, name: str) -> int | None:
    suffix = pod["metadata"]["name"][len(name) + 1:]
    return int(suffix) if pod["metadata"]["name"].startswith(f"{name}-") and suffix.isdigit() \
        else None


class StatefulSetController:
    def __init__(self, api: Api) -> None:
        self._api = api
        self._sts = api.table.by_plural("statefulsets")
        self._pods = api.table.by_plural("pods")
        self._claims = api.table.by_plural("persistentvolumeclaims")

    def reconcile(self) -> None:
        owned = pods_by_controller(self._api)
        sync_each(self._api, "statefulsets",
                  lambda sts: self._sync(sts, owned.get(sts["metadata"]["uid"], [])), log)

    def _sync(self, sts: Obj, pods: list[Obj]) -> None:
        spec = sts["spec"]
        wanted = spec.get("replicas", 1)
        update = revision(sts, spec.get("template"))
        by_ordinal = {o: p for p in pods if (o := ordinal(p, sts["metadata"]["name"])) is not None}
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        self._act(sts, by_ordinal, wanted, update, ordered)
        self._status(sts, list(by_ordinal.values()), wanted, update)

    def _act(self, sts: Obj, pods: dict[int, Obj], wanted: int, update: str,
             ordered: bool) -> None:
        """One step towards the wanted pods: in OrderedReady mode a step waits for every lower
        ordinal to be Running and Ready, as the real controller does."""
        ns = sts["metadata"]["namespace"]
        for index in range(wanted):
            pod = pods.get(index)
            if pod is None:
                self._create(sts, index, update)
                if ordered:
                    return
                continue
            if not is_active(pod) and not is_terminating(pod):
                self._api.delete(self._pods, ns, pod["metadata"]["name"])  # failed: replace
                return
            if ordered and (is_terminating(pod) or not is_ready(pod)):
                return
        extra = sorted((o for o in pods if o >= wanted), reverse=True)
        for index in extra:
            if not is_terminating(pods[index]):
                self._api.delete(self._pods, ns, pods[index]["metadata"]["name"])
            if ordered:
                return
        strategy = sts["spec"].get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate" or extra:
            return
        partition = (strategy.get("rollingUpdate") or {}).get("partition", 0)
        if any(is_terminating(p) or not is_ready(p) for p in pods.values()):
            return  # one pod at a time, and only while every pod is ready
        for index in range(wanted - 1, partition - 1, -1):
            pod = pods.get(index)
            if pod and (pod["metadata"].get("labels") or {}).get(REVISION_LABEL) != update:
                self._api.delete(self._pods, ns, pod["metadata"]["name"])
                return

    def _create(self, sts: Obj, index: int, update: str) -> None:
        meta, spec = sts["metadata"], sts["spec"]
        pod_name = f"{meta['name']}-{index}"
        pod = pod_from_template(sts, spec.get("template"), pod_name, {
            REVISION_LABEL: update,
            "statefulset.kubernetes.io/pod-name": pod_name,
            "apps.kubernetes.io/pod-index": str(index),
        })
        pod["spec"]["hostname"] = pod_name
        if spec.get("serviceName"):
            pod["spec"]["subdomain"] = spec["serviceName"]
        volumes = pod["spec"].setdefault("volumes", [])
        for template in spec.get("volumeClaimTemplates") or []:
            claim = f"{template['metadata']['name']}-{meta['name']}-{index}"
            self._claim(sts, template, claim)
            volumes[:] = [v for v in volumes if v.get("name") != template["metadata"]["name"]]
            volumes.append({"name": template["metadata"]["name"],
                            "persistentVolumeClaim": {"claimName": claim}})
        self._api.create(self._pods, meta["namespace"], pod)

    def _claim(self, sts: Obj, template: Obj, name: str) -> None:
        """The PVC of one ordinal; created once and never deleted (retention policy Retain)."""
        ns = sts["metadata"]["namespace"]
        if self._api.store.get("persistentvolumeclaims", ns, name) is not None:
            return
        labels = ((sts["spec"].get("selector") or {}).get("matchLabels") or {})
        self._api.create(self._claims, ns, {
            "metadata": {"name": name,
                         "labels": {**(template["metadata"].get("labels") or {}), **labels}},
            "spec": template.get("spec") or {},
        })

    def _status(self, sts: Obj, pods: list[Obj], wanted: int, update: str) -> None:
        current_status = sts.get("status") or {}
        live = [p for p in pods if not is_terminating(p)]
        updated = [p for p in live if (p["metadata"].get("labels") or {}).get(REVISION_LABEL)
                   == update]
        current = current_status.get("currentRevision") or update
        if len(updated) == wanted and len(live) == wanted:
            current = update
        ready = sum(1 for p in live if is_ready(p))
        status: Obj = {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": len(live),
            "readyReplicas": ready,
            "currentReplicas": sum(1 for p in live if (p["metadata"].get("labels") or {}).get(
                REVISION_LABEL) == current),
            "updatedReplicas": len(updated),
            "availableReplicas": ready,
            "currentRevision": current,
            "updateRevision": update,
            "collisionCount": 0,
        }
        write_status(self._api, self._sts, sts, {k: v for k, v in status.items()
                                                 if v or k in ("replicas", "availableReplicas")})
