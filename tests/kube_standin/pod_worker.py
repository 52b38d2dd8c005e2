"""One pod's kubelet: runs its containers in Docker, restarts them with back-off, runs probes,
and writes the pod status the way the kubelet reports it."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import docker
import docker.errors

from . import errors
from .clock import parse_time, rfc3339
from .docker_pods import (
    LABEL,
    LABEL_ATTEMPT,
    LABEL_CONTAINER,
    LABEL_EPHEMERAL,
    LABEL_INIT,
    LABEL_INSTANCE,
    LABEL_NAMESPACE,
    LABEL_POD,
    LABEL_POD_UID,
    ConfigError,
    Placement,
    check_non_root,
    container_name,
    create_kwargs,
    resolve_env,
    security,
)
from .pod_volumes import ClaimPending, PodVolumes, Source
from .probes import run_probe
from .resources import ResourceTable
from .store import Obj, Store

log = logging.getLogger("kube_standin.kubelet")

PULL_BACKOFF_REASONS = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull")


@dataclass
class RunnerOptions:
    """Knobs that trade realism for test speed."""

    pod_network: str = "none"  # "none" or "host"
    probe_time_scale: float = 0.1  # multiplies initialDelaySeconds and periodSeconds
    min_probe_period: float = 0.25
    backoff_base: float = 1.0  # first CrashLoopBackOff delay (kubelet: 10 s)
    backoff_cap: float = 10.0  # longest delay (kubelet: 300 s)
    max_grace_seconds: float = 2.0  # cap on terminationGracePeriodSeconds
    node_name: str = "devloop-standin"
    pulls_images: bool = False  # the node's engine is not the test's: images come by pulling


@dataclass
class ProbeTrack:
    next_due: float
    successes: int = 0
    failures: int = 0


@dataclass
class Slot:
    """One container of the pod across its restarts."""

    name: str
    init: bool
    attempt: int = 0  # Docker containers created so far
    current: str | None = None
    previous: str | None = None
    image: str = ""
    image_id: str = ""
    started_at: str | None = None
    exited: Obj | None = None  # terminated state of `current`
    last_state: Obj | None = None
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    will_restart: bool = False
    backoff_until: float = 0.0
    backoff_delay: float = 0.0
    streak: int = 0
    pull_streak: int = 0
    restart_now: bool = False
    ready: bool = False
    started: bool = False
    succeeded: bool = False
    pid: int = 0
    probes: dict[str, ProbeTrack] = field(default_factory=dict)

    @property
    def restart_count(self) -> int:
        return max(self.attempt - 1, 0)

    @property
    def running(self) -> bool:
        return self.current is not None and self.exited is None and self.waiting is None


@dataclass
class KubeletContext:
    """What every pod worker shares."""

    store: Store
    table: ResourceTable
    docker: docker.DockerClient
    volumes: PodVolumes
    options: RunnerOptions
    instance_id: str
    placement: Callable[[str], Placement]  # namespace -> placement for new containers
    record_event: Callable[[Obj, str, str, str, str | None], None]
    extra_labels: dict[str, str] = field(default_factory=dict)


def next_sync_delay(slots: Iterable[Slot], now: float) -> float:
    """Seconds until the pod worker must look again: a back-off ending, a waiting container,
    a probe coming due, else 2 s. Only the probes that run count (the startup probe until it
    succeeds, liveness and readiness after): a succeeded startup probe stays due forever, and
    counting it made every worker of a pod with one inspect its container 20 times a second."""
    due = [2.0]
    for slot in slots:
        if slot.backoff_until > now:
            due.append(slot.backoff_until - now)
        elif slot.waiting and slot.waiting[0] not in ("PodInitializing",):
            due.append(1.0)
        if slot.running:
            due.extend(track.next_due - now for kind, track in slot.probes.items()
                       if (kind == "startupProbe") != slot.started)
    return max(min(due), 0.05)


class PodWorker:
    def __init__(self, ctx: KubeletContext, pod: Obj) -> None:
        self.ctx = ctx
        self.uid = pod["metadata"]["uid"]
        self.namespace = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.slots: dict[tuple[bool, str], Slot] = {}
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._start_time: str | None = None
        self._volumes: dict[str, Source] | None = None
        self.finished = False
        self._thread = threading.Thread(
            target=self._run, name=f"standin-pod-{self.name}", daemon=True)

    # -- control -------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def halt(self) -> None:
        """Stops supervising without touching the containers (stand-in shutdown)."""
        self._halt.set()
        self._wake.set()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def container_ids(self, name: str) -> tuple[Slot | None, str | None, str | None]:
        """(slot, current id, previous id) for logs."""
        with self._lock:
            slot = self.slots.get((False, name)) or self.slots.get((True, name))
            if slot is None:
                return None, None, None
            return slot, slot.current, slot.previous

    # -- main loop -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._adopt()
        except docker.errors.DockerException:
            log.exception("pod %s/%s: adopting containers failed", self.namespace, self.name)
        while not self._halt.is_set():
            self._wake.clear()
            pod = self.ctx.store.get("pods", self.namespace, self.name)
            if pod is None or pod["metadata"]["uid"] != self.uid:
                self._teardown(0)
                return
            if pod["metadata"].get("deletionTimestamp"):
                self._terminate(pod)
                return
            try:
                delay = self._sync(pod)
            except docker.errors.DockerException as exc:
                log.warning("pod %s/%s: docker error: %s", self.namespace, self.name, exc)
                delay = 1.0
            except errors.ApiError as exc:
                if exc.code != 404:
                    log.warning("pod %s/%s: %s", self.namespace, self.name, exc.message)
                delay = 0.5
            except Exception:
                log.exception("pod %s/%s: sync failed", self.namespace, self.name)
                delay = 1.0
            self._wake.wait(max(delay, 0.05))

    def _lookup(self, plural: str, namespace: str, name: str) -> Obj | None:
        return self.ctx.store.get(plural, namespace, name)

    def _sync(self, pod: Obj) -> float:
        spec = pod["spec"]
        for vol in spec.get("volumes") or []:
            claim = vol.get("persistentVolumeClaim")
            missing = claim and self._lookup("persistentvolumeclaims", self.namespace,
                                             claim["claimName"]) is None
            if missing and not spec.get("nodeName"):
                self._write_unschedulable(
                    pod, f'persistentvolumeclaim "{claim["claimName"]}" not found')
                return 1.0
        if not spec.get("nodeName"):
            self._schedule()
            return 0.0
        if self._start_time is None:
            self._start_time = (pod.get("status") or {}).get("startTime") or rfc3339()
        volume_error: ConfigError | None = None
        try:
            self._volumes = self.ctx.volumes.prepare(pod, self._lookup)
        except ConfigError as exc:
            volume_error = exc
        except ClaimPending as exc:
            volume_error = ConfigError("ContainerCreating", str(exc))
        now = time.monotonic()
        init_done = True
        for container in spec.get("initContainers") or []:
            slot = self._slot(True, container["name"])
            if slot.succeeded:
                continue
            init_done = False
            self._step(pod, container, slot, volume_error, now)
            if not slot.succeeded:
                break
            init_done = True
        for container in spec.get("containers") or []:
            slot = self._slot(False, container["name"])
            if not init_done:
                slot.waiting = ("PodInitializing", "")
                continue
            self._step(pod, container, slot, volume_error, now)
            self._probe(pod, container, slot)
        self._write_status(pod, init_done, volume_error is None)
        return self._next_delay()

    def _slot(self, init: bool, name: str) -> Slot:
        with self._lock:
            return self.slots.setdefault((init, name), Slot(name, init))

    def _next_delay(self) -> float:
        return next_sync_delay(self.slots.values(), time.monotonic())

    # -- one container -------------------------------------------------------------------------

    def _step(self, pod: Obj, container: Obj, slot: Slot, volume_error: ConfigError | None,
              now: float) -> None:
        if slot.current is not None and not self._check_current(pod, container, slot, now):
            return
        if slot.exited is not None and not slot.will_restart:
            return
        if now < slot.backoff_until:
            return
        if volume_error is not None:
            slot.waiting = (volume_error.reason, volume_error.message)
            slot.backoff_until = now + 1.0
            return
        self._create(pod, container, slot, now)

    def _check_current(self, pod: Obj, container: Obj, slot: Slot, now: float) -> bool:
        """Refreshes `slot` from Docker; True when a new container should be created."""
        try:
            info = self.ctx.docker.api.inspect_container(slot.current)
        except docker.errors.NotFound:
            info = None
        state = (info or {}).get("State") or {}
        if info is not None and state.get("Running"):
            slot.pid = state.get("Pid", 0)
            slot.waiting = None
            slot.exited = None
            if not slot.init and container["image"] != slot.image:
                self.ctx.record_event(pod, "Killing", f"Container {slot.name} definition "
                                      "changed, will be restarted", "Normal", slot.name)
                slot.restart_now = True
                self._stop_container(slot.current, pod)
                return False
            return False
        if slot.exited is None:
            self._on_exit(pod, slot, info, state, now)
        if not slot.will_restart:
            return False
        if now < slot.backoff_until:
            slot.waiting = (
                "CrashLoopBackOff",
                f"back-off {math.ceil(slot.backoff_delay)}s restarting failed container="
                f"{slot.name} pod={self.name}_{self.namespace}({self.uid})",
            ) if slot.backoff_delay > 0 else ("ContainerCreating", "")
            return False
        return True

    def _on_exit(self, pod: Obj, slot: Slot, info: Obj | None, state: Obj, now: float) -> None:
        if info is None:
            terminated = {"exitCode": 137, "reason": "ContainerStatusUnknown",
                          "message": "The container could not be located when the pod was "
                                     "terminated"}
        else:
            code = int(state.get("ExitCode", 0))
            reason = "Completed" if code == 0 else "Error"
            if state.get("OOMKilled"):
                reason = "OOMKilled"
            if state.get("Status") == "created" or (state.get("Error") and not
                                                    _real_time(state.get("StartedAt"))):
                reason, code = "StartError", code or 128
            terminated = {"exitCode": code, "reason": reason}
            if state.get("Error"):
                terminated["message"] = state["Error"]
            started = _real_time(state.get("StartedAt"))
            finished = _real_time(state.get("FinishedAt"))
            if started:
                terminated["startedAt"] = rfc3339(parse_time(started))
            if finished:
                terminated["finishedAt"] = rfc3339(parse_time(finished))
        terminated["containerID"] = f"docker://{slot.current}"
        slot.exited = terminated
        slot.ready = False
        slot.started = False
        slot.probes.clear()
        code = terminated["exitCode"]
        policy = pod["spec"].get("restartPolicy", "Always")
        if slot.init:
            slot.succeeded = code == 0
            slot.will_restart = code != 0 and policy != "Never"
        else:
            slot.will_restart = policy == "Always" or (policy == "OnFailure" and code != 0)
        if not slot.will_restart:
            return
        slot.last_state = terminated
        if slot.restart_now:
            slot.restart_now = False
            slot.backoff_delay = 0.0
        else:
            ran = _seconds_between(terminated.get("startedAt"), terminated.get("finishedAt"))
            if ran is not None and ran > 10 * self.ctx.options.backoff_cap:
                slot.streak = 0
            slot.backoff_delay = min(self.ctx.options.backoff_base * (2 ** slot.streak),
                                     self.ctx.options.backoff_cap)
            slot.streak += 1
            self.ctx.record_event(pod, "BackOff", "Back-off restarting failed container "
                                  f"{slot.name} in pod {self.name}_{self.namespace}"
                                  f"({self.uid})", "Warning", slot.name)
        slot.backoff_until = now + slot.backoff_delay

    def _image_id(self, pod: Obj, container: Obj, slot: Slot, now: float) -> str | None:
        image = container["image"]
        policy = container.get("imagePullPolicy", "IfNotPresent")
        present = self._present(image)
        pulling = self.ctx.options.pulls_images and (
            policy == "Always" or (present is None and policy == "IfNotPresent"))
        if present is not None and not pulling:
            return present
        pull_error = ""
        if pulling and not (slot.waiting and slot.waiting[0] == "ErrImagePull"):
            pull_error = self._pull(image, self._pull_auth(pod, image))
            if not pull_error:
                return self._present(image)
        if policy == "Never":
            reason = "ErrImageNeverPull"
            message = f'Container image "{image}" is not present with pull policy of Never'
            delay = 1.0
        elif slot.waiting and slot.waiting[0] == "ErrImagePull":
            reason, message = "ImagePullBackOff", f'Back-off pulling image "{image}"'
            delay = min(self.ctx.options.backoff_base * (2 ** slot.pull_streak),
                        self.ctx.options.backoff_cap)
            slot.pull_streak += 1
        elif pull_error:  # the kubelet's words (dockershim/cri-dockerd) with the engine's reason
            reason = "ErrImagePull"
            message = (f'Failed to pull image "{image}": rpc error: code = Unknown desc ='
                       f" Error response from daemon: {pull_error}")
            delay = 0.5
        else:
            reason = "ErrImagePull"
            message = (f'failed to pull image "{image}": the stand-in never pulls images '
                       "(build or tag it in the local Docker daemon)")
            delay = 0.5
        if not slot.waiting or slot.waiting[0] != reason:
            self.ctx.record_event(pod, reason if reason != "ImagePullBackOff" else "BackOff",
                                  message, "Warning", slot.name)
        slot.waiting = (reason, message)
        slot.backoff_until = now + delay
        return None

    def _present(self, image: str) -> str | None:
        try:
            return self.ctx.docker.images.get(image).id
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            if exc.status_code != 404:
                raise
            return None

    def _pull_auth(self, pod: Obj, image: str) -> dict[str, str] | None:
        """Credentials for `image`'s registry from the pod's imagePullSecrets
        (kubernetes.io/dockerconfigjson), as the kubelet finds them; None: anonymous."""
        first = image.split("/", 1)[0]
        host = first if "/" in image and ("." in first or ":" in first
                                          or first == "localhost") else "docker.io"
        for ref in pod["spec"].get("imagePullSecrets") or []:
            secret = self._lookup("secrets", self.namespace, ref.get("name", ""))
            raw = ((secret or {}).get("data") or {}).get(".dockerconfigjson")
            if not raw:
                continue
            try:
                entry = json.loads(base64.b64decode(raw)).get("auths", {}).get(host)
            except ValueError:
                continue
            if not entry:
                continue
            if entry.get("auth"):
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                return {"username": user, "password": password}
            return {"username": entry.get("username", ""),
                    "password": entry.get("password", "")}
        return None

    def _pull(self, image: str, auth: dict[str, str] | None = None) -> str:
        """Pull `image` into the node's engine (a private one: --node-docker-host); "" or the
        engine's reason, as a kubelet would report it."""
        try:
            # {} rather than None: docker-py would send this machine's ~/.docker credentials,
            # which a kubelet never has
            self.ctx.docker.images.pull(image, auth_config=auth or {})
        except docker.errors.APIError as exc:
            return str(exc.explanation or exc)
        return ""

    def _create(self, pod: Obj, container: Obj, slot: Slot, now: float) -> None:
        image_id = self._image_id(pod, container, slot, now)
        if image_id is None:
            return
        slot.pull_streak = 0
        try:
            image_user = self.ctx.docker.images.get(container["image"]).attrs.get(
                "Config", {}).get("User") or ""
            check_non_root(security(pod, container), image_user, self.name, slot.name)
            env = resolve_env(pod, container, self._lookup)
        except ConfigError as exc:
            if not slot.waiting or slot.waiting[1] != exc.message:
                self.ctx.record_event(pod, "Failed", f"Error: {exc.message}", "Warning",
                                      slot.name)
            slot.waiting = (exc.reason, exc.message)
            slot.backoff_until = now + 1.0
            return
        sources = self._volumes or {}
        labels = {
            **{k: v for k, v in self.ctx.extra_labels.items() if k != LABEL_EPHEMERAL},
            LABEL: "1",
            LABEL_INSTANCE: self.ctx.instance_id,
            LABEL_POD_UID: self.uid,
            LABEL_NAMESPACE: self.namespace,
            LABEL_POD: self.name,
            LABEL_CONTAINER: slot.name,
            LABEL_ATTEMPT: str(slot.attempt),
            LABEL_INIT: "1" if slot.init else "0",
        }
        name = container_name(self.namespace, self.name, slot.name, self.uid, slot.attempt)
        try:
            mounts = self.ctx.volumes.mounts(container, sources)
            kwargs = create_kwargs(pod, container, env, mounts,
                                   self.ctx.placement(self.namespace), name, labels)
            created = self.ctx.docker.containers.create(**kwargs)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # a leftover from a crashed run: make room
                self._remove(name)
            message = str(exc.explanation or exc)
            slot.waiting = ("CreateContainerError", message)
            slot.backoff_until = now + 1.0
            self.ctx.record_event(pod, "Failed", f"Error: {message}", "Warning", slot.name)
            return
        self.ctx.volumes.apply_fs_group(pod, sources)
        with self._lock:
            if slot.previous:
                self._remove(slot.previous)
            slot.previous = slot.current
            slot.current = created.id
            slot.attempt += 1
        slot.image = container["image"]
        slot.image_id = image_id
        slot.exited = None
        slot.will_restart = False
        slot.ready = False
        slot.started = False
        try:
            self.ctx.docker.api.start(created.id)
        except docker.errors.APIError as exc:
            log.info("pod %s/%s: container %s failed to start: %s", self.namespace, self.name,
                     slot.name, exc.explanation)
            self._check_current(pod, container, slot, time.monotonic())
            return
        self.ctx.record_event(pod, "Started", f"Started container {slot.name}", "Normal",
                              slot.name)
        started = time.monotonic()
        slot.started_at = rfc3339()
        slot.waiting = None
        slot.probes = {}
        scale = self.ctx.options.probe_time_scale
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = container.get(kind)
            if probe:
                slot.probes[kind] = ProbeTrack(started + probe.get("initialDelaySeconds", 0)
                                               * scale)
        slot.started = "startupProbe" not in slot.probes
        slot.ready = slot.started and "readinessProbe" not in slot.probes
        info = self.ctx.docker.api.inspect_container(created.id)
        slot.pid = info["State"].get("Pid", 0)

    # -- probes --------------------------------------------------------------------------------

    def _probe(self, pod: Obj, container: Obj, slot: Slot) -> None:
        if not slot.running or slot.pid <= 0:
            return
        options = self.ctx.options
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            track = slot.probes.get(kind)
            if track is None or time.monotonic() < track.next_due:
                continue
            if kind != "startupProbe" and not slot.started:
                continue
            if kind == "startupProbe" and slot.started:
                continue
            probe = container[kind]
            outcome = run_probe(probe, container, slot.pid, self.ctx.docker, slot.current or "")
            period = max(probe.get("periodSeconds", 10) * options.probe_time_scale,
                         options.min_probe_period)
            track.next_due = time.monotonic() + period
            if outcome.ok:
                track.successes += 1
                track.failures = 0
            else:
                track.failures += 1
                track.successes = 0
                label = {"startupProbe": "Startup", "livenessProbe": "Liveness",
                         "readinessProbe": "Readiness"}[kind]
                self.ctx.record_event(pod, "Unhealthy", f"{label} probe failed: "
                                      f"{outcome.message}", "Warning", slot.name)
            threshold_ok = track.successes >= probe.get("successThreshold", 1)
            threshold_fail = track.failures >= probe.get("failureThreshold", 3)
            if kind == "readinessProbe":
                if threshold_ok:
                    slot.ready = True
                elif threshold_fail or (not outcome.ok and not slot.ready):
                    slot.ready = False
            elif kind == "startupProbe" and threshold_ok:
                slot.started = True
                slot.ready = "readinessProbe" not in slot.probes
            elif threshold_fail:
                what = "liveness" if kind == "livenessProbe" else "startup"
                self.ctx.record_event(pod, "Killing", f"Container {slot.name} failed {what} "
                                      "probe, will be restarted", "Normal", slot.name)
                self._stop_container(slot.current, pod)
                return

    # -- status --------------------------------------------------------------------------------

    def _container_status(self, container: Obj, slot: Slot) -> Obj:
        status: Obj = {
            "name": slot.name,
            "image": slot.image or container["image"],
            "imageID": f"docker://{slot.image_id}" if slot.image_id else "",
            "ready": slot.ready and slot.running,
            "restartCount": slot.restart_count,
            "started": slot.started and slot.running,
        }
        if slot.current:
            status["containerID"] = f"docker://{slot.current}"
        if slot.waiting is not None:
            waiting = {"reason": slot.waiting[0]}
            if slot.waiting[1]:
                waiting["message"] = slot.waiting[1]
            status["state"] = {"waiting": waiting}
        elif slot.exited is not None:
            status["state"] = {"terminated": slot.exited}
        else:
            status["state"] = {"running": {"startedAt": slot.started_at}}
        status["lastState"] = {"terminated": slot.last_state} if slot.last_state else {}
        return status

    def _write_status(self, pod: Obj, init_done: bool, volumes_ready: bool) -> None:
        spec = pod["spec"]
        mains = [(c, self._slot(False, c["name"])) for c in spec.get("containers") or []]
        inits = [(c, self._slot(True, c["name"])) for c in spec.get("initContainers") or []]
        policy = spec.get("restartPolicy", "Always")
        init_failed = any(s.exited and s.exited["exitCode"] != 0 and not s.will_restart
                          for _, s in inits)
        if init_failed:
            phase = "Failed"
        elif not init_done:
            phase = "Pending"
        elif all(s.exited is not None and not s.will_restart for _, s in mains) and \
                policy != "Always":
            phase = "Succeeded" if all(s.exited and s.exited["exitCode"] == 0
                                       for _, s in mains) else "Failed"
        elif any(s.attempt > 0 for _, s in mains):
            phase = "Running"
        else:
            phase = "Pending"
        unready = [s.name for _, s in mains if not (s.ready and s.running)]
        old = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
        conditions = [
            _cond(old, "PodReadyToStartContainers", volumes_ready),
            _cond(old, "Initialized", init_done, None if init_done else
                  "ContainersNotInitialized",
                  None if init_done else "containers with incomplete status: "
                  f"[{' '.join(s.name for _, s in inits if not s.succeeded)}]"),
            _cond(old, "Ready", not unready, None if not unready else "ContainersNotReady",
                  None if not unready else f"containers with unready status: "
                  f"[{' '.join(unready)}]"),
            _cond(old, "ContainersReady", not unready, None if not unready else
                  "ContainersNotReady", None if not unready else
                  f"containers with unready status: [{' '.join(unready)}]"),
            _cond(old, "PodScheduled", True),
        ]
        status: Obj = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "startTime": self._start_time,
            "qosClass": (pod.get("status") or {}).get("qosClass", _qos_class(spec)),
            "containerStatuses": [self._container_status(c, s) for c, s in mains],
        }
        if self.ctx.options.pod_network == "host":
            status["podIP"] = "127.0.0.1"
            status["podIPs"] = [{"ip": "127.0.0.1"}]
        if inits:
            status["initContainerStatuses"] = [self._container_status(c, s) for c, s in inits]
        if phase in ("Succeeded", "Failed"):
            for _, slot in mains:
                slot.ready = False
        self._update_status(status)

    def _update_status(self, status: Obj) -> None:
        uid = self.uid

        def change(obj: Obj) -> Obj | None:
            if obj["metadata"]["uid"] != uid or obj.get("status") == status:
                return None
            obj["status"] = status
            return obj

        self.ctx.store.update(self.ctx.table.by_plural("pods"), self.namespace, self.name,
                              change)

    def _write_unschedulable(self, pod: Obj, message: str) -> None:
        old = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
        status = {
            "phase": "Pending",
            "qosClass": (pod.get("status") or {}).get("qosClass", _qos_class(pod["spec"])),
            "conditions": [_cond(old, "PodScheduled", False, "Unschedulable",
                                 f"0/1 nodes are available: {message}.")],
        }
        self._update_status(status)

    def _schedule(self) -> None:
        node = self.ctx.options.node_name
        uid = self.uid

        def bind(obj: Obj) -> Obj | None:
            if obj["metadata"]["uid"] != uid:
                return None
            obj["spec"]["nodeName"] = node
            return obj

        self.ctx.store.update(self.ctx.table.by_plural("pods"), self.namespace, self.name, bind)
        pod = self.ctx.store.get("pods", self.namespace, self.name)
        if pod is not None:
            self.ctx.record_event(pod, "Scheduled", f"Successfully assigned {self.namespace}/"
                                  f"{self.name} to {node}", "Normal", None)

    # -- stopping ------------------------------------------------------------------------------

    def _stop_container(self, container_id: str | None, pod: Obj | None, grace: float = -1) \
            -> None:
        if not container_id:
            return
        if grace < 0:
            spec_grace = ((pod or {}).get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            grace = min(spec_grace, self.ctx.options.max_grace_seconds)
        try:
            self.ctx.docker.api.stop(container_id, timeout=max(math.ceil(grace), 0))
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            log.warning("stopping %s: %s", container_id[:12], exc)

    def _remove(self, container_id: str) -> None:
        try:
            self.ctx.docker.api.remove_container(container_id, v=True, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            log.warning("removing %s: %s", container_id[:12], exc)

    def _terminate(self, pod: Obj) -> None:
        """Graceful deletion: stop the containers, clean up, then let the pod object go."""
        grace = pod["metadata"].get("deletionGracePeriodSeconds")
        if grace is None:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        grace = min(float(grace), self.ctx.options.max_grace_seconds)
        running = [s for s in self.slots.values() if s.running]
        if running:
            self.ctx.record_event(pod, "Killing", "Stopping container "
                                  f"{', '.join(s.name for s in running)}", "Normal", None)
        self._teardown(grace)
        with contextlib.suppress(errors.ApiError):
            self.ctx.store.remove(self.ctx.table.by_plural("pods"), self.namespace, self.name,
                                  uid=self.uid)

    def _teardown(self, grace: float) -> None:
        threads = []
        for slot in list(self.slots.values()):
            if slot.running:
                thread = threading.Thread(
                    target=self._stop_container, args=(slot.current, None, grace), daemon=True)
                thread.start()
                threads.append(thread)
        for thread in threads:
            thread.join(grace + 10)
        try:
            leftovers = self.ctx.docker.api.containers(
                all=True, filters={"label": f"{LABEL_POD_UID}={self.uid}"})
        except docker.errors.DockerException:
            leftovers = []
        for item in leftovers:
            self._remove(item["Id"])
        self.ctx.volumes.release(self.uid)
        self.finished = True

    # -- adoption after a stand-in restart -----------------------------------------------------

    def _adopt(self) -> None:
        found = self.ctx.docker.api.containers(
            all=True, filters={"label": f"{LABEL_POD_UID}={self.uid}"})
        if not found:
            return
        pod = self.ctx.store.get("pods", self.namespace, self.name) or {}
        statuses = {
            (False, s["name"]): s for s in (pod.get("status") or {}).get("containerStatuses") or []
        }
        statuses.update({
            (True, s["name"]): s
            for s in (pod.get("status") or {}).get("initContainerStatuses") or []
        })
        self._start_time = (pod.get("status") or {}).get("startTime")
        groups: dict[tuple[bool, str], list[Obj]] = {}
        for item in found:
            labels = item.get("Labels") or {}
            key = (labels.get(LABEL_INIT) == "1", labels.get(LABEL_CONTAINER, ""))
            groups.setdefault(key, []).append(item)
        for key, items in groups.items():
            items.sort(key=lambda i: int((i.get("Labels") or {}).get(LABEL_ATTEMPT, "0")))
            for stale in items[:-2]:
                self._remove(stale["Id"])
            slot = self._slot(*key)
            newest = items[-1]
            slot.current = newest["Id"]
            slot.previous = items[-2]["Id"] if len(items) > 1 else None
            slot.attempt = int((newest.get("Labels") or {}).get(LABEL_ATTEMPT, "0")) + 1
            info = self.ctx.docker.api.inspect_container(slot.current)
            slot.image = info["Config"]["Image"]
            slot.image_id = info["Image"]
            started = _real_time(info["State"].get("StartedAt"))
            slot.started_at = rfc3339(parse_time(started)) if started else rfc3339()
            saved = statuses.get(key) or {}
            last = (saved.get("lastState") or {}).get("terminated")
            slot.last_state = last
            slot.streak = min(slot.restart_count, 5)
            if info["State"].get("Running"):
                slot.waiting = None
                slot.pid = info["State"].get("Pid", 0)
                slot.ready = bool(saved.get("ready"))
                slot.started = bool(saved.get("started", True))
                now = time.monotonic()
                containers = (pod.get("spec") or {}).get(
                    "initContainers" if key[0] else "containers") or []
                spec = next((c for c in containers if c["name"] == key[1]), {})
                for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                    if spec.get(kind):
                        slot.probes[kind] = ProbeTrack(now)
            elif key[0] and info["State"].get("ExitCode") == 0:
                slot.succeeded = True
                slot.waiting = None
                slot.exited = {"exitCode": 0, "reason": "Completed",
                               "containerID": f"docker://{slot.current}"}
        log.info("pod %s/%s: adopted %d container(s)", self.namespace, self.name, len(found))


def _real_time(text: str | None) -> str | None:
    if not text or text.startswith("0001-01-01"):
        return None
    return text


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (parse_time(end) - parse_time(start)).total_seconds()


def _cond(old: dict[str, Obj], kind: str, value: bool, reason: str | None = None,
          message: str | None = None) -> Obj:
    text = "True" if value else "False"
    previous = old.get(kind)
    cond: Obj = {
        "type": kind,
        "status": text,
        "lastProbeTime": None,
        "lastTransitionTime": previous["lastTransitionTime"]
        if previous and previous.get("status") == text else rfc3339(),
    }
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def _qos_class(spec: Obj) -> str:
    containers = spec.get("containers") or []
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    for res in resources:
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        if not all(k in limits for k in ("cpu", "memory")):
            return "Burstable"
        if any(requests.get(k, limits[k]) != limits[k] for k in ("cpu", "memory")):
            return "Burstable"
    return "Guaranteed"
