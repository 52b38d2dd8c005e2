"""The stand-in's kubelet: one PodWorker per pod, woken by Docker events and store changes."""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Any

import docker
import docker.errors

from . import errors
from .api import Api
from .clock import random_suffix, rfc3339
from .docker_pods import LABEL_INSTANCE, LABEL_POD_UID, LABEL_VOLUME_KIND, Placement
from .pod_volumes import PodVolumes
from .pod_worker import KubeletContext, PodWorker, RunnerOptions
from .store import Obj

log = logging.getLogger("kube_standin.kubelet")


class PodRunner:
    def __init__(
        self,
        api: Api,
        client: docker.DockerClient,
        options: RunnerOptions,
        instance_id: str,
        state_dir: Path,
        volume_prefix: str,
        extra_labels: dict[str, str] | None = None,
    ) -> None:
        self._api = api
        self._docker = client
        self.options = options
        self.instance_id = instance_id
        self._volume_prefix = volume_prefix
        self.volumes = PodVolumes(client, instance_id, state_dir, self.claim_volume_name,
                                  extra_labels)
        self._ctx = KubeletContext(
            store=api.store,
            table=api.table,
            docker=client,
            volumes=self.volumes,
            options=options,
            instance_id=instance_id,
            placement=self._placement,
            record_event=self._record_event,
            extra_labels=dict(extra_labels or {}),
        )
        self._workers: dict[str, PodWorker] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._events_stream: Any = None
        self._events_thread = threading.Thread(
            target=self._docker_events, name="standin-docker-events", daemon=True)
        self._seen_rv: dict[str, str] = {}
        self._event_names: dict[tuple[str, str, str], str] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._remove_orphans()
        self._events_thread.start()

    def stop(self, keep_pods: bool) -> None:
        self._stop.set()
        stream = self._events_stream
        if stream is not None:
            with contextlib.suppress(Exception):  # it may already be closed by the daemon
                stream.close()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.halt()
        for worker in workers:
            worker.join(10)
        if not keep_pods:
            self.remove_all_containers()

    def remove_all_containers(self) -> None:
        for item in self._docker.api.containers(
                all=True, filters={"label": f"{LABEL_INSTANCE}={self.instance_id}"}):
            with contextlib.suppress(docker.errors.APIError):
                self._docker.api.remove_container(item["Id"], v=True, force=True)
        for volume in self._docker.volumes.list(
                filters={"label": [f"{LABEL_INSTANCE}={self.instance_id}",
                                   f"{LABEL_VOLUME_KIND}=emptydir"]}):
            with contextlib.suppress(docker.errors.APIError):
                volume.remove(force=True)

    def remove_claim_volumes(self) -> None:
        for volume in self._docker.volumes.list(
                filters={"label": [f"{LABEL_INSTANCE}={self.instance_id}",
                                   f"{LABEL_VOLUME_KIND}=pvc"]}):
            try:
                volume.remove(force=True)
            except docker.errors.APIError as exc:
                log.warning("could not remove volume %s: %s", volume.name, exc)

    def _remove_orphans(self) -> None:
        """Containers of this instance whose pod no longer exists (e.g. deleted while down)."""
        pods, _ = self._api.store.list_raw("pods")
        uids = {p["metadata"]["uid"] for p in pods}
        for item in self._docker.api.containers(
                all=True, filters={"label": f"{LABEL_INSTANCE}={self.instance_id}"}):
            if (item.get("Labels") or {}).get(LABEL_POD_UID) not in uids:
                with contextlib.suppress(docker.errors.APIError):
                    self._docker.api.remove_container(item["Id"], v=True, force=True)

    # -- reconcile -----------------------------------------------------------------------------

    def reconcile(self) -> None:
        if self._stop.is_set():
            return
        pods, _ = self._api.store.list_raw("pods")
        present = set()
        with self._lock:
            for pod in pods:
                uid = pod["metadata"]["uid"]
                present.add(uid)
                worker = self._workers.get(uid)
                if worker is None:
                    worker = PodWorker(self._ctx, pod)
                    self._workers[uid] = worker
                    self._seen_rv[uid] = pod["metadata"]["resourceVersion"]
                    worker.start()
                elif self._seen_rv.get(uid) != pod["metadata"]["resourceVersion"]:
                    self._seen_rv[uid] = pod["metadata"]["resourceVersion"]
                    worker.wake()
            for uid, worker in list(self._workers.items()):
                if uid not in present:
                    worker.wake()
                    if worker.finished:
                        del self._workers[uid]
                        self._seen_rv.pop(uid, None)
        # Config changes (ConfigMaps, Secrets, Services, PVCs) can unblock waiting pods.
        for worker in list(self._workers.values()):
            if any(s.waiting and s.waiting[0] in ("CreateContainerConfigError",
                                                  "ContainerCreating")
                   for s in worker.slots.values()):
                worker.wake()

    def worker_for(self, uid: str) -> PodWorker | None:
        with self._lock:
            return self._workers.get(uid)

    def _docker_events(self) -> None:
        while not self._stop.is_set():
            try:
                self._events_stream = self._docker.events(
                    decode=True,
                    filters={"type": "container", "label": f"{LABEL_INSTANCE}={self.instance_id}"},
                )
                for event in self._events_stream:
                    if self._stop.is_set():
                        return
                    attrs = (event.get("Actor") or {}).get("Attributes") or {}
                    worker = self.worker_for(attrs.get(LABEL_POD_UID, ""))
                    if worker is not None and event.get("status") in (
                            "die", "start", "oom", "kill", "destroy"):
                        worker.wake()
            except Exception as exc:  # the daemon connection dropped: reconnect
                if self._stop.is_set():
                    return
                log.warning("docker events stream failed (%s); reconnecting", exc)
                self._stop.wait(1.0)

    # -- helpers for workers -------------------------------------------------------------------

    def claim_volume_name(self, namespace: str, claim: str) -> str:
        return f"{self._volume_prefix}-{namespace}-{claim}"

    def release_claim(self, namespace: str, claim: str) -> None:
        """The PVC was deleted: its Docker volume goes too (the only way the stand-in removes
        one)."""
        name = self.claim_volume_name(namespace, claim)
        try:
            self._docker.volumes.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            log.warning("could not remove volume %s of deleted claim %s/%s: %s", name,
                        namespace, claim, exc)

    def _placement(self, namespace: str) -> Placement:
        if self.options.pod_network != "host":
            return Placement("none", {})
        hosts: dict[str, str] = {}
        services, _ = self._api.store.list_raw("services")
        for svc in services:
            name, ns = svc["metadata"]["name"], svc["metadata"]["namespace"]
            names = [f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"]
            if ns == namespace:
                names.append(name)
            for host in names:
                hosts[host] = "127.0.0.1"
        return Placement("host", hosts)

    def _record_event(self, pod: Obj, reason: str, message: str, kind: str,
                      container: str | None) -> None:
        """A core/v1 Event about the pod; repeats bump `count` like the kubelet's recorder."""
        meta = pod["metadata"]
        key = (meta["uid"], reason, message)
        res = self._api.table.by_plural("events")
        stamp = rfc3339()
        existing = self._event_names.get(key)
        try:
            if existing:
                def bump(obj: Obj) -> Obj:
                    obj["count"] = obj.get("count", 1) + 1
                    obj["lastTimestamp"] = stamp
                    return obj

                self._api.store.update(res, meta["namespace"], existing, bump)
                return
            name = f"{meta['name']}.{random_suffix(10)}"
            involved: Obj = {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"],
                             "uid": meta["uid"], "apiVersion": "v1",
                             "resourceVersion": meta.get("resourceVersion", "")}
            if container:
                involved["fieldPath"] = f"spec.containers{{{container}}}"
            self._api.store.create(res, {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": meta["namespace"]},
                "involvedObject": involved,
                "reason": reason, "message": message, "type": kind,
                "source": {"component": "kubelet", "host": self.options.node_name},
                "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
                "reportingComponent": "kubelet", "reportingInstance": self.options.node_name,
            })
            if len(self._event_names) > 2000:
                self._event_names.clear()
            self._event_names[key] = name
        except errors.ApiError:
            self._event_names.pop(key, None)
