"""Tell the engine when a service's container starts with a new ID (for live update).

A container that restarts (crash, OOM kill, eviction, a liveness probe) comes back from its
image and loses every file devloop synced into it. One pod watch per service (devloop.k8s.podwatch)
reports each running container ID; the engine compares it with the IDs that hold the live state
(devloop.loop.rules.container_started) and re-syncs at once when it is not one of them. The watch
starts as soon as the service's workload exists (on a fresh cluster, after the first deploy).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from devloop.config.loader import ServiceConfig
from devloop.k8s.cluster import Cluster, new_api_client
from devloop.k8s.pods import Pod
from devloop.k8s.podwatch import PodWatch
from devloop.k8s.workloads import await_workload

_RETRY_S = 2.0  # how often to look for a Deployment that does not exist yet


class ContainerWatch:
    """Calls `on_started(service, pod, container_id)` for every running container it sees."""

    def __init__(self, cluster: Cluster, services: list[ServiceConfig],
                 on_started: Callable[[str, str, str], None],
                 on_error: Callable[[str, str], None]) -> None:
        self.cluster = cluster
        self.services = services
        self.on_started = on_started
        self.on_error = on_error
        self._stop = threading.Event()
        self._wake = threading.Event()  # ends a wait for the Deployment at stop()
        self._lock = threading.Lock()
        self._watches: list[PodWatch] = []

    def start(self) -> None:
        for svc in self.services:
            threading.Thread(target=self._begin, args=(svc,), daemon=True,
                             name=f"containers:{svc.name}").start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            watches = list(self._watches)
        for w in watches:
            w.stop()

    def _begin(self, svc: ServiceConfig) -> None:
        """Wait for the workload, then watch its pods."""
        workload = await_workload(self.cluster.api_client, self.cluster.namespace, svc.workload,
                                  self._stop, self._wake,
                                  lambda text: self.on_error(svc.name, text),
                                  f"containers of {svc.name}", _RETRY_S)
        if workload is None:
            return

        def seen(pod: Pod) -> None:
            cid = pod.running_id(svc.container)
            if cid and not pod.deleting:
                self.on_started(svc.name, pod.name, cid)

        watch = PodWatch(lambda: new_api_client(self.cluster), self.cluster.namespace,
                         workload.selector_query, on_pod=seen,
                         on_error=lambda text: self.on_error(svc.name, text),
                         label=f"containers of {svc.name}")
        with self._lock:
            if self._stop.is_set():
                return
            self._watches.append(watch)
        watch.start()
