"""Image delivery: how an image built here becomes runnable in the cluster.

Chosen from the cluster, like Skaffold and Tilt do: a cluster that shares the local Docker daemon
(Docker Desktop, Rancher Desktop with moby, the test stand-in) needs nothing; minikube gets the
image built inside its own daemon (`minikube docker-env`), kind and k3d get it loaded into their
nodes, and any other cluster gets it pushed to `default_repo`. External tools run through an
injectable `run` so detection and command lines are testable without those tools.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from devloop.deploy.registry import (
    PushCancelled,
    PushResult,
    RegistryError,
    RegistryUnreachable,
    credentials,
    probe,
    push,
    registry_host,
)
from devloop.k8s.cluster import Cluster
from devloop.k8s.errors import is_connection_error, one_line

DELIVERY_NAMES = ("docker", "minikube", "kind", "k3d", "registry")

INSTALL_HINTS = {
    "minikube": "https://minikube.sigs.k8s.io/docs/start/",
    "kind": "https://kind.sigs.k8s.io/docs/user/quick-start/#installation",
    "k3d": "https://k3d.io/#installation",
}

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class DeliveryError(Exception):
    """One line: which tool is missing, or which command failed and the tail of its stderr."""


class DeliveryCancelled(DeliveryError):
    """The stop event was set while a delivery command ran; the command was killed."""


class DeliveryUnreachable(DeliveryError):
    """The registry did not answer: nothing was patched, and `watch` retries by itself."""


class Delivery(Protocol):
    name: str

    def docker_environment(self) -> dict[str, str] | None:
        """Environment for `docker.from_env(environment=...)`; None means the local daemon."""
        ...

    def deliver(self, image_ref: str, stop: threading.Event | None = None) -> str:
        """Make `image_ref` runnable in the cluster; return the ref the Deployment must use."""
        ...


def run_command(args: list[str], *, timeout: float | None = None,
                stop: threading.Event | None = None, **_: Any
                ) -> subprocess.CompletedProcess[str]:
    """`subprocess.run(args, capture_output=True, text=True)` that `stop` can interrupt.

    Raises FileNotFoundError when the program is missing (like subprocess.run) and
    subprocess.TimeoutExpired after `timeout`; a stop kills the child and returns code -9.
    """
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    result: dict[str, str] = {}

    def collect() -> None:
        out, err = proc.communicate()
        result["out"], result["err"] = out, err

    reader = threading.Thread(target=collect, name=f"run:{args[0]}", daemon=True)
    reader.start()
    waited = 0.0
    while reader.is_alive():
        reader.join(0.1)
        waited += 0.1
        if (stop is not None and stop.is_set()) or (timeout is not None and waited > timeout):
            proc.kill()
            reader.join()
            if stop is not None and stop.is_set():
                break
            raise subprocess.TimeoutExpired(args, timeout or 0, result.get("out"),
                                            result.get("err"))
    return subprocess.CompletedProcess(args, proc.returncode, result.get("out", ""),
                                       result.get("err", ""))


def _tail(text: str | None, lines: int = 3) -> str:
    kept = [ln.strip() for ln in (text or "").splitlines() if ln.strip()][-lines:]
    return " | ".join(kept) or "no output"


def _run_tool(run: Runner, tool: str, args: list[str], what: str, *, timeout: float,
              stop: threading.Event | None) -> subprocess.CompletedProcess[str]:
    """Run an external tool; every failure becomes a one-line DeliveryError."""
    try:
        done = run([tool, *args], capture_output=True, text=True, timeout=timeout, stop=stop)
    except FileNotFoundError as exc:
        hint = INSTALL_HINTS.get(tool, "")
        raise DeliveryError(
            f"{tool} is not installed or not on PATH; it is needed to {what}"
            + (f" (install: {hint})" if hint else "")
            + "; or set `delivery:` in devloop.yaml to docker or registry") from exc
    except subprocess.TimeoutExpired as exc:
        raise DeliveryError(f"`{tool} {' '.join(args)}` did not finish within {timeout:.0f}s"
                            f" while trying to {what}") from exc
    if stop is not None and stop.is_set():
        raise DeliveryCancelled(f"{what}: cancelled")
    if done.returncode != 0:
        raise DeliveryError(one_line(f"`{tool} {' '.join(args)}` failed (exit {done.returncode})"
                                     f": {_tail(done.stderr or done.stdout)}", 600))
    return done


@dataclass
class SharedDaemon:
    """The cluster runs images straight from the local Docker daemon."""

    name: str = "docker"

    def docker_environment(self) -> dict[str, str] | None:
        return None

    def deliver(self, image_ref: str, stop: threading.Event | None = None) -> str:
        return image_ref


@dataclass
class MinikubeDelivery:
    """Build inside minikube's Docker daemon; then there is nothing to copy.

    With the containerd/cri-o runtime `docker-env` is refused, so the image is built locally
    and copied with `minikube image load` (safe here: devloop tags are unique per content).
    """

    profile: str
    run: Runner = run_command
    timeout: float = 300
    name: str = "minikube"
    _env: dict[str, str] | None = field(default=None, init=False, repr=False)
    _use_load: bool = field(default=False, init=False, repr=False)

    def docker_environment(self) -> dict[str, str] | None:
        if self._env is not None or self._use_load:
            return self._env
        args = ["-p", self.profile, "docker-env", "-o", "json"]
        try:
            done = _run_tool(self.run, "minikube", args,
                             f"build inside minikube profile '{self.profile}'",
                             timeout=60, stop=None)
        except DeliveryError as exc:
            # "The docker-env command is only compatible with the "docker" runtime, ..."
            if "only compatible with" in str(exc):
                self._use_load = True
                return None
            raise
        try:
            env = json.loads(done.stdout)
        except ValueError as exc:
            raise DeliveryError(f"`minikube -p {self.profile} docker-env -o json` printed no JSON:"
                                f" {_tail(done.stdout)}") from exc
        if not isinstance(env, dict) or "DOCKER_HOST" not in env:
            raise DeliveryError(f"`minikube -p {self.profile} docker-env -o json` gave no"
                                " DOCKER_HOST; is the profile running? (`minikube status`)")
        self._env = {str(k): str(v) for k, v in env.items()}
        return self._env

    def deliver(self, image_ref: str, stop: threading.Event | None = None) -> str:
        if self._use_load:
            _run_tool(self.run, "minikube", ["-p", self.profile, "image", "load", image_ref],
                      f"load {image_ref} into minikube profile '{self.profile}'",
                      timeout=self.timeout, stop=stop)
        return image_ref


@dataclass
class KindDelivery:
    """Copy the image into every node of a kind cluster."""

    cluster_name: str
    run: Runner = run_command
    timeout: float = 300
    name: str = "kind"

    def docker_environment(self) -> dict[str, str] | None:
        return None

    def deliver(self, image_ref: str, stop: threading.Event | None = None) -> str:
        args = ["load", "docker-image", image_ref, "--name", self.cluster_name]
        _run_tool(self.run, "kind", args,
                  f"load {image_ref} into kind cluster '{self.cluster_name}'",
                  timeout=self.timeout, stop=stop)
        return image_ref


@dataclass
class K3dDelivery:
    """Import the image into the nodes of a k3d cluster."""

    cluster_name: str
    run: Runner = run_command
    timeout: float = 300
    name: str = "k3d"

    def docker_environment(self) -> dict[str, str] | None:
        return None

    def deliver(self, image_ref: str, stop: threading.Event | None = None) -> str:
        _run_tool(self.run, "k3d", ["image", "import", image_ref, "-c", self.cluster_name],
                  f"import {image_ref} into k3d cluster '{self.cluster_name}'",
                  timeout=self.timeout, stop=stop)
        return image_ref


def registry_ref(default_repo: str, image_ref: str) -> str:
    """`<default_repo>/<image>:<tag>`, dropping a registry host already present in `image_ref`."""
    parts = image_ref.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    return f"{default_repo.rstrip('/')}/{'/'.join(parts)}"


def _split_tag(ref: str) -> tuple[str, str]:
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return repo, tag


@dataclass
class RegistryDelivery:
    """Tag as `<default_repo>/<image>:dl-<digest>`, push (only missing layers: the engine's
    push), and hand the cluster `repo:dl-<digest>@sha256:...` so a node never runs a stale tag.

    Credentials are the user's Docker ones; a failure is one DeliveryError line naming the
    registry, and nothing is patched, so the running image stays. A registry that does not
    answer is DeliveryUnreachable: `watch` retries it with back-off, with no save needed."""

    default_repo: str
    docker_client_factory: Callable[[], Any] | None = None
    insecure_registries: tuple[str, ...] = ()
    name: str = "registry"
    pushes: dict[str, PushResult] = field(default_factory=dict, init=False, repr=False)

    @property
    def host(self) -> str:
        return registry_host(self.default_repo)

    def docker_environment(self) -> dict[str, str] | None:
        return None

    def deliver(self, image_ref: str, stop: threading.Event | None = None) -> str:
        import docker  # imported here: only registry delivery needs the SDK at this point

        target = registry_ref(self.default_repo, image_ref)
        repository, tag = _split_tag(target)
        try:
            probe(self.host, self.insecure_registries)
            auth = credentials(self.host)
            client = (self.docker_client_factory or docker.from_env)()
        except RegistryUnreachable as exc:
            raise DeliveryUnreachable(str(exc)) from None
        except RegistryError as exc:
            raise DeliveryError(str(exc)) from None
        except docker.errors.DockerException as exc:
            raise DeliveryError(one_line(f"cannot reach the Docker Engine to push to registry"
                                         f" {self.host}: {exc}")) from None
        try:
            client.images.get(image_ref).tag(repository, tag)
            pushed = push(client, repository, tag, auth, stop, self.insecure_registries)
        except PushCancelled as exc:
            raise DeliveryCancelled(str(exc)) from None
        except RegistryUnreachable as exc:
            raise DeliveryUnreachable(str(exc)) from None
        except RegistryError as exc:
            raise DeliveryError(str(exc)) from None
        except docker.errors.ImageNotFound as exc:
            raise DeliveryError(f"image {image_ref} is not in the local Docker daemon") from exc
        except docker.errors.APIError as exc:
            raise DeliveryError(one_line(f"tagging {image_ref} as {target} failed:"
                                         f" {exc.explanation or exc}")) from exc
        finally:
            client.close()
        self.pushes[pushed.ref] = pushed  # by ref: services deliver from parallel workers
        while len(self.pushes) > 64:
            self.pushes.pop(next(iter(self.pushes)))
        return pushed.ref

    @property
    def last_push(self) -> PushResult | None:
        return next(reversed(self.pushes.values()), None)


def pushed_fields(delivery: Delivery, ref: str) -> dict[str, Any]:
    """The deliver.finished fields of a registry push (registry, digest, layers and bytes
    sent); none for the other deliveries."""
    pushed = delivery.pushes.get(ref) if isinstance(delivery, RegistryDelivery) else None
    if pushed is None:
        return {}
    return {"registry": delivery.host, "digest": pushed.digest,
            "layers_pushed": pushed.layers_pushed, "layers_present": pushed.layers_present,
            "bytes_pushed": pushed.bytes_pushed}


_NAME_RE = re.compile(r"^(k3d|kind)-(.+)$")
_K3D_NODE_RE = re.compile(r"^k3d-(.+)-(server|agent)-\d+$")
SHARED_DAEMON_CONTEXTS = {"docker-desktop", "docker-for-desktop", "desktop-linux",
                          "rancher-desktop", "orbstack", "colima"}


def _node_hint(cluster: Cluster) -> tuple[str, str] | None:
    """(delivery, cluster name) from node labels/providerID; None when nodes say nothing."""
    try:
        nodes = cluster.core.list_node(_request_timeout=(5, 10)).items
    except ApiException:
        return None  # not allowed to list nodes, or the server does not serve them
    except Exception as exc:
        if is_connection_error(exc):
            return None
        raise
    for node in nodes:
        labels = node.metadata.labels or {}
        name = node.metadata.name or ""
        if labels.get("minikube.k8s.io/name"):
            return "minikube", labels["minikube.k8s.io/name"]
        provider = (node.spec.provider_id if node.spec else None) or ""
        if provider.startswith("kind://"):
            # kind://docker/<cluster>/<node>
            parts = provider.split("/")
            return "kind", parts[3] if len(parts) > 4 else name.rsplit("-control-plane", 1)[0]
        match = _K3D_NODE_RE.match(name)
        if match and any(k.startswith("k3s.io/") for k in labels):
            return "k3d", match.group(1)
    return None


def detect_delivery(cluster: Cluster, override: str | None, default_repo: str | None,
                    run: Runner = run_command, *, probe_nodes: bool = True,
                    insecure_registries: tuple[str, ...] = ()) -> Delivery:
    """Pick the delivery: explicit override, else default_repo, else context name, else nodes.

    Context names: docker-desktop (and similar) -> shared daemon; `minikube` or a context whose
    nodes carry minikube.k8s.io/name -> minikube; kind-<name> -> kind; k3d-<name> -> k3d.
    Anything unrecognised shares the local daemon, which is right for Docker Desktop-like setups.
    """
    if override is not None and override not in DELIVERY_NAMES:
        raise ValueError(f"delivery '{override}' is unknown; use one of"
                         f" {', '.join(DELIVERY_NAMES)}")
    context = cluster.context
    by_name: tuple[str, str] | None = None
    match = _NAME_RE.match(context)
    if match:
        by_name = match.group(1), match.group(2)
    elif context == "minikube":
        by_name = "minikube", "minikube"
    elif context in SHARED_DAEMON_CONTEXTS:
        by_name = "docker", context

    def hint() -> tuple[str, str] | None:
        return by_name or (_node_hint(cluster) if probe_nodes else None)

    kind = override
    if kind is None:
        if default_repo:
            kind = "registry"
        else:
            found = hint()
            kind = found[0] if found else "docker"
    if kind == "docker":
        return SharedDaemon()
    if kind == "registry":
        if not default_repo:
            raise ValueError("delivery 'registry' needs `default_repo` in devloop.yaml"
                             " (e.g. localhost:5000)")
        return RegistryDelivery(default_repo, insecure_registries=insecure_registries)
    found = hint()
    name = found[1] if found and found[0] == kind else context.removeprefix(f"{kind}-")
    if kind == "minikube":
        return MinikubeDelivery(profile=name, run=run)
    if kind == "kind":
        return KindDelivery(cluster_name=name, run=run)
    return K3dDelivery(cluster_name=name, run=run)
