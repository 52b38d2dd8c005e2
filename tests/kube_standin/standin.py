"""StandIn: the whole fake cluster (HTTP API + controllers + Docker kubelet) behind one object."""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
from pathlib import Path
from typing import Any

import docker
import docker.errors

from .api import Api
from .control_loop import ControlLoop
from .cronjob_controller import CronJobController
from .daemonset_controller import DaemonSetController
from .deployment_controller import DeploymentController
from .docker_pods import LABEL_EPHEMERAL, LABEL_INSTANCE, LABEL_STATE_DIR, LABEL_VOLUME_KIND
from .faults import Faults
from .housekeeping import Housekeeping
from .http_server import NoLogs, Router, StandInHTTPServer
from .job_controller import JobController
from .kubeconfig import CONTEXT, write_kubeconfig
from .node_ports import NodePorts
from .pod_logs import PodLogs
from .pod_runner import PodRunner
from .pod_worker import RunnerOptions
from .remote import RemoteCommands
from .replicaset_controller import ReplicaSetController
from .resources import ResourceTable
from .schema import Schemas
from .statefulset_controller import StatefulSetController
from .store import Store
from .tls import ensure_certificate, server_context

log = logging.getLogger("kube_standin")

OBJECTS_FILE = "objects.json"
IDENTITY_FILE = "standin.json"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class StandIn:
    """A Kubernetes API stand-in on 127.0.0.1.

    `stop(keep_pods=True)` saves the objects and leaves the containers running; a later
    `start()` on the same state_dir reuses the port, token and objects and re-adopts the
    containers, which is how tests simulate an API server outage.
    """

    context = CONTEXT

    def __init__(
        self,
        state_dir: str | Path,
        docker_client: docker.DockerClient | None = None,
        pod_network: str = "none",
        *,
        port: int = 0,
        run_pods: bool = True,
        probe_time_scale: float = 0.1,
        backoff_base: float = 1.0,
        backoff_cap: float = 10.0,
        max_grace_seconds: float = 2.0,
        volume_prefix: str = "standin-pvc",
        watch_history: int = 5000,
        ephemeral_volumes: bool = False,
        node_docker: str | None = None,
    ) -> None:
        if pod_network not in ("none", "host"):
            raise ValueError(f"pod_network must be 'none' or 'host', not {pod_network!r}")
        self.state_dir = Path(state_dir)
        self.node_docker = node_docker  # a node on its own engine: images only by pulling
        self._docker = docker_client
        self._own_docker = docker_client is None
        self.pod_network = pod_network
        self._port = port
        self.run_pods = run_pods
        self.options = RunnerOptions(
            pod_network=pod_network,
            probe_time_scale=probe_time_scale,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            max_grace_seconds=max_grace_seconds,
            pulls_images=node_docker is not None,
        )
        self.volume_prefix = volume_prefix
        self.ephemeral_volumes = ephemeral_volumes
        self._watch_history = watch_history
        self.schemas = Schemas()
        self.table = ResourceTable()
        self.kubeconfig = self.state_dir / "kubeconfig"
        self.store: Store | None = None
        self.api: Api | None = None
        self.runner: PodRunner | None = None
        self._server: StandInHTTPServer | None = None
        self._router: Router | None = None
        self._loops: list[ControlLoop] = []
        self._serve_thread: threading.Thread | None = None
        self.token = ""
        self.instance_id = ""
        self._cert: tuple[Path, Path] | None = None
        self._node_ports: NodePorts | None = None
        self.faults = Faults()  # the fault switch (faults.py); kept across stop()/start()

    # -- identity ------------------------------------------------------------------------------

    def _load_identity(self) -> dict[str, Any]:
        path = self.state_dir / IDENTITY_FILE
        if path.exists():
            return json.loads(path.read_text())
        identity = {"instance_id": secrets.token_hex(6), "token": secrets.token_hex(24),
                    "port": 0}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(identity))
        path.chmod(0o600)
        return identity

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the stand-in is not running")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The kubeconfig's server: HTTPS when openssl could make a certificate."""
        scheme = "https" if self._cert else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        """The same API over plain HTTP (same port), handy for raw requests in tests."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca_cert(self) -> Path | None:
        return self._cert[0] if self._cert else None

    def docker(self) -> docker.DockerClient:
        if self._docker is None:
            self._docker = (docker.DockerClient(base_url=self.node_docker, max_pool_size=64)
                            if self.node_docker else docker.from_env(max_pool_size=64))
        return self._docker

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Path:
        """Serves the API and starts the controllers; returns the kubeconfig path."""
        if self._server is not None:
            raise RuntimeError("the stand-in is already running")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        identity = self._load_identity()
        self.instance_id, self.token = identity["instance_id"], identity["token"]
        store = Store(history=self._watch_history)
        objects = self.state_dir / OBJECTS_FILE
        resumed = objects.exists()
        if resumed:
            store.load(objects, self.table)
            objects.unlink()
        self.store = store
        pods_graceful = self.run_pods
        self.api = Api(store, self.table, self.schemas, pods_graceful=lambda: pods_graceful)
        if not resumed:
            self._bootstrap()
        port = self._port or (identity.get("port", 0) if resumed else 0)
        if self.run_pods:
            labels = {LABEL_STATE_DIR: str(self.state_dir.resolve())}
            if self.ephemeral_volumes:
                labels[LABEL_EPHEMERAL] = "1"
            self.runner = PodRunner(self.api, self.docker(), self.options, self.instance_id,
                                    self.state_dir, self.volume_prefix, labels)
            logs: Any = PodLogs(store, self.docker(), self.runner.worker_for)
        else:
            logs = NoLogs(self.api)
        self._router = Router(self.api, self.table, self.token, logs)
        if self.runner is not None:
            self._router.remote = RemoteCommands(store, self.docker(), self.runner.worker_for)
        self._cert = ensure_certificate(self.state_dir)
        tls = server_context(*self._cert) if self._cert else None
        self._router.faults = self.faults
        self._server = StandInHTTPServer(("127.0.0.1", port), self._router, tls)
        self.faults.cut_connections = self._server.close_connections
        self._router.server_address = f"127.0.0.1:{self.port}"
        identity["port"] = self.port
        (self.state_dir / IDENTITY_FILE).write_text(json.dumps(identity))
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
            name="standin-http", daemon=True)
        self._serve_thread.start()
        housekeeping = Housekeeping(
            self.api, self.runner.release_claim if self.runner else lambda ns, name: None,
            self.claim_volume_name)
        self._loops = [
            ControlLoop("deployments", store, DeploymentController(
                self.api, serialize_rollouts=self.pod_network == "host").reconcile),
            ControlLoop("replicasets", store, ReplicaSetController(self.api).reconcile),
            ControlLoop("statefulsets", store, StatefulSetController(self.api).reconcile),
            ControlLoop("daemonsets", store, DaemonSetController(self.api).reconcile),
            ControlLoop("jobs", store, JobController(self.api).reconcile),
            ControlLoop("cronjobs", store, CronJobController(
                self.api, time_scale=self.options.probe_time_scale).reconcile),
            ControlLoop("housekeeping", store, housekeeping.reconcile, period=2.0),
        ]
        if self.runner is not None:
            self.runner.start()
            self._loops.append(ControlLoop("kubelet", store, self.runner.reconcile, period=2.0))
        if self.pod_network == "host":
            self._node_ports = NodePorts(store)
            self._loops.append(ControlLoop("nodeports", store, self._node_ports.reconcile,
                                           period=5.0))
        for loop in self._loops:
            loop.start()
        write_kubeconfig(self.kubeconfig, self.url, self.token, self.ca_cert)
        log.info("stand-in serving %s (state %s, pods %s, network %s)", self.url,
                 self.state_dir, "on" if self.run_pods else "off", self.pod_network)
        return self.kubeconfig

    def _bootstrap(self) -> None:
        assert self.api is not None
        namespaces = self.table.by_plural("namespaces")
        for name in SYSTEM_NAMESPACES:
            self.api.create(namespaces, "", {"metadata": {"name": name}})
        self.api.create(self.table.by_plural("nodes"), "", {
            "metadata": {"name": self.options.node_name, "labels": {
                "kubernetes.io/hostname": self.options.node_name,
                "kubernetes.io/os": "linux",
                "node-role.kubernetes.io/control-plane": "",
            }},
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "stand-in kubelet is posting ready status"}],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                              {"type": "Hostname", "address": self.options.node_name}],
                "nodeInfo": {
                    "containerRuntimeVersion": "docker://20.10", "kubeletVersion": "v1.35.0",
                    "kubeProxyVersion": "v1.35.0", "operatingSystem": "linux",
                    "architecture": "amd64", "osImage": "devloop stand-in",
                    "kernelVersion": "", "machineID": "", "systemUUID": "", "bootID": "",
                },
            },
        })

    def stop(self, keep_pods: bool = False, remove_volumes: bool = False) -> None:
        """Stops serving. keep_pods=True keeps containers and objects for a later start().

        Called again on a stand-in stopped with keep_pods=True, it removes what was kept."""
        if self._server is None:
            if not keep_pods and self.instance_id:
                self._remove_kept(remove_volumes)
            return
        assert self._router is not None and self.store is not None
        self._router.stopping.set()
        for loop in self._loops:
            loop.stop()
        self.store.close()
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        for loop in self._loops:
            loop.join()
        if self._node_ports is not None:
            self._node_ports.close()
            self._node_ports = None
        if self.runner is not None:
            self.runner.stop(keep_pods=keep_pods)
            if remove_volumes:
                self.runner.remove_claim_volumes()
        if keep_pods:
            self.store.save(self.state_dir / OBJECTS_FILE)
        self._server = None
        self._loops = []
        self.runner = None
        if self._own_docker and self._docker is not None and not keep_pods:
            self._docker.close()
            self._docker = None
        log.info("stand-in stopped (keep_pods=%s)", keep_pods)

    def _remove_kept(self, remove_volumes: bool) -> None:
        (self.state_dir / OBJECTS_FILE).unlink(missing_ok=True)
        if not self.run_pods:
            return
        client = self.docker()
        label = f"{LABEL_INSTANCE}={self.instance_id}"
        for item in client.api.containers(all=True, filters={"label": label}):
            with contextlib.suppress(docker.errors.APIError):
                client.api.remove_container(item["Id"], v=True, force=True)
        for volume in client.volumes.list(filters={"label": label}):
            kind = (volume.attrs.get("Labels") or {}).get(LABEL_VOLUME_KIND)
            if kind == "emptydir" or remove_volumes:
                with contextlib.suppress(docker.errors.APIError):
                    volume.remove(force=True)

    # -- test helpers --------------------------------------------------------------------------

    def compact(self) -> None:
        """Drops the watch history: watches resuming from an older resourceVersion get 410."""
        assert self.store is not None
        self.store.compact()

    def claim_volume_name(self, namespace: str, claim: str) -> str:
        """The Docker volume that backs PVC `claim` in `namespace`."""
        return f"{self.volume_prefix}-{namespace}-{claim}"
