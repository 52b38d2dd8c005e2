"""DaemonSet controller: one pod per node (the stand-in has one node), replaced when the template
changes (RollingUpdate) or only when deleted (OnDelete), with the status fields
`kubectl rollout status` reads."""

from __future__ import annotations

import logging

from .api import Api
from .pod_state import Obj, is_active, is_available, is_ready, is_terminating
from .workloads import (
    REVISION_LABEL,
    pod_from_template,
    pods_by_controller,
    revision,
    sync_each,
    write_status,
)

log = logging.getLogger("kube_standin.daemonsets")


class DaemonSetController:
    def __init__(self, api: Api) -> None:
        self._api = api
        self._ds = api.table.by_plural("daemonsets")
        self._pods = api.table.by_plural("pods")

    def reconcile(self) -> None:
        owned = pods_by_controller(self._api)
        nodes = [n["metadata"]["name"] for n in self._api.store.list_raw("nodes")[0]]
        sync_each(self._api, "daemonsets",
                  lambda ds: self._sync(ds, owned.get(ds["metadata"]["uid"], []), nodes), log)

    def _sync(self, ds: Obj, pods: list[Obj], nodes: list[str]) -> None:
        ns, spec = ds["metadata"]["namespace"], ds["spec"]
        update = revision(ds, spec.get("template"))
        rolling = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == \
            "RollingUpdate"
        for node in nodes:
            on_node = [p for p in pods if (p.get("spec") or {}).get("nodeName") == node
                       or not (p.get("spec") or {}).get("nodeName")]
            live = [p for p in on_node if not is_terminating(p)]
            for pod in live:
                stale = (pod["metadata"].get("labels") or {}).get(REVISION_LABEL) != update
                if not is_active(pod) or (rolling and stale):
                    self._api.delete(self._pods, ns, pod["metadata"]["name"])
            if not on_node:
                pod = pod_from_template(ds, spec.get("template"), labels={
                    REVISION_LABEL: update,
                    "pod-template-generation": str(ds["metadata"].get("generation", 1))})
                pod["spec"]["nodeName"] = node
                self._api.create(self._pods, ns, pod)
        live = [p for p in pods if not is_terminating(p)]
        updated = [p for p in live if (p["metadata"].get("labels") or {}).get(REVISION_LABEL)
                   == update]
        min_ready = spec.get("minReadySeconds", 0)
        available = sum(1 for p in live if is_available(p, min_ready))
        status = {
            "currentNumberScheduled": len(live),
            "desiredNumberScheduled": len(nodes),
            "numberMisscheduled": 0,
            "numberReady": sum(1 for p in live if is_ready(p)),
            "updatedNumberScheduled": len(updated),
            "numberAvailable": available,
            "numberUnavailable": len(nodes) - available,
            "observedGeneration": ds["metadata"].get("generation", 1),
        }
        for key in ("updatedNumberScheduled", "numberAvailable", "numberUnavailable"):
            if not status[key]:
                del status[key]
        write_status(self._api, self._ds, ds, status)
