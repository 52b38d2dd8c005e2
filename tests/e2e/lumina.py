"""Harness for the Lumina end-to-end scenarios: a copy of this repo's stack, a cluster, and real
`devloop` processes whose JSON-lines output is collected and queried."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.conftest import note_checkout
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "lumina"
SERVICES = ("backend", "chatbot", "frontend")
Event = dict[str, Any]


def settled(event: Event, service: str) -> bool:
    """The event says `service` is deployed and ready: rolled out now, or already current."""
    if event.get("service") != service:
        return False
    if event.get("type") == "build.skipped":  # "image exists" is not deployed yet
        return event.get("reason") != "image exists"
    return event.get("type") == "rollout.ready" or (
        event.get("type") == "reload.finished" and bool(event.get("ok")))


def replace_text(path: Path, old: str, new: str, count: int = -1) -> None:
    """Edit a file like an editor's atomic save (new inode, rename over): never writes through
    hard links into the real repository."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    tmp = path.with_name(path.name + ".e2e-tmp")
    tmp.write_text(text.replace(old, new, count))
    os.replace(tmp, path)


def copy_stack(dest: Path) -> Path:
    """services/, k8s/ and devloop.yaml copied (big dependency caches hard-linked: never
    edited) so tests can edit sources without touching the repository."""
    dest.mkdir(parents=True)
    skip = shutil.ignore_patterns("node_modules", ".next", "__pycache__", "*.tsbuildinfo",
                                  "wheels", "offline", "secrets.yaml")
    shutil.copytree(REPO / "services", dest / "services", ignore=skip)
    shutil.copytree(REPO / "k8s", dest / "k8s", ignore=skip)
    shutil.copy(REPO / "devloop.yaml", dest / "devloop.yaml")
    # the stack's forwards on free local ports: a copy in another test worker (or a developer's
    # watch) holds 127.0.0.1:8000 and :3000
    for remote in (8000, 3000):
        replace_text(dest / "devloop.yaml", f"port_forwards: [{remote}]",
                     f"port_forwards: ['{free_port()}:{remote}']", count=1)
    for cache in ("services/backend/wheels", "services/chatbot/wheels",
                  "services/frontend/offline"):
        shutil.rmtree(dest / cache, ignore_errors=True)
        subprocess.run(["cp", "-al", str(REPO / cache), str(dest / cache)], check=True)
    note_checkout(dest / "devloop.yaml")  # its images go when the test run ends
    return dest


@dataclass
class DevloopProcess:
    """A running devloop CLI with its JSON events collected by a reader thread."""

    proc: subprocess.Popen[str]
    events: list[Event] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"type": "unparsed", "service": None, "line": line})

    def mark(self) -> int:
        return len(self.events)

    def drain(self, timeout: float = 10) -> None:
        """After the process ended: wait until its last lines have been read."""
        self._reader.join(timeout)

    def since(self, mark: int, type: str) -> list[Event]:
        return [e for e in self.events[mark:] if e.get("type") == type]

    def events_of(self, type: str) -> list[Event]:
        return self.since(0, type)

    def wait(self, pred: Callable[[Event], bool], timeout: float, what: str,
             after: int = 0) -> Event:
        deadline = time.monotonic() + timeout
        seen = after
        while time.monotonic() < deadline:
            events = self.events
            for e in events[seen:]:
                if pred(e):
                    return e
            seen = len(events)
            if self.proc.poll() is not None and seen == len(self.events):
                break
            time.sleep(0.1)
        news = [e for e in self.events if e.get("type") not in ("build.output", "log")]
        tail = [f"{e.get('type')} {e.get('service')} "
                f"{e.get('message') or e.get('reason') or e.get('line') or ''}"[:200]
                for e in news[-25:]]
        raise AssertionError(f"timed out waiting for {what} ({timeout:.0f}s); last events:\n"
                             + "\n".join(tail))

    def settle(self, seconds: float, timeout: float = 300) -> None:
        """Until no reload is running and nothing but pod logs came for `seconds`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = len(self.events_of("reload.started"))
            finished = len(self.events_of("reload.finished"))
            count = self._count_non_logs()
            time.sleep(seconds)
            if started == finished and count == self._count_non_logs():
                return
        raise AssertionError("devloop did not settle")

    def _count_non_logs(self) -> int:
        return sum(1 for e in self.events if e.get("type") != "log")


@dataclass
class SyncResult:
    code: int
    seconds: float
    events: list[Event]
    text: str

    def of(self, type: str) -> list[Event]:
        return [e for e in self.events if e.get("type") == type]


class LuminaCluster:
    """The copied stack plus a cluster (kubeconfig + context) and helpers to look inside."""

    def __init__(self, repo: Path, kubeconfig: Path, context: str, env: dict[str, str],
                 docker_client: docker.DockerClient, standin: bool) -> None:
        self.standin = standin
        self.repo = repo
        self.kubeconfig = kubeconfig
        self.context = context
        self.env = env
        self.docker = docker_client
        self.watch: DevloopProcess | None = None  # type: ignore[assignment]
        self.outputs: list[DevloopProcess | SyncResult] = []
        self._traffic: tuple[bool, str] | None = None
        api = k8s_config.new_client_from_config(str(kubeconfig), context=context,
                                                persist_config=False)
        self._kubeconfig_ctx = (str(kubeconfig), context)
        self.core = k8s.CoreV1Api(api)
        self.apps = k8s.AppsV1Api(api)

    def devloop(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "devloop.cli", *args, "--context", self.context, "-o",
             "json"], cwd=self.repo, env=self.env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def start_watch(self) -> DevloopProcess:
        # the dashboard on a free port: other watches (tests, a developer's) may hold 10350
        self.watch = DevloopProcess(self.devloop("watch", "--ui-port", "0"))
        self.outputs.append(self.watch)
        return self.watch

    def watching(self) -> bool:
        return self.watch is not None and self.watch.proc.poll() is None

    def ensure_watch(self, timeout: float = 900) -> DevloopProcess:
        """A running `devloop watch` with every service deployed and ready: the current one,
        else a new one, waited for (so a scenario never depends on what ran before it)."""
        if self.watching():
            return self.watch
        watch = self.start_watch()
        for svc in SERVICES:
            watch.wait(lambda e, s=svc: settled(e, s), timeout=timeout, what=f"{svc} settled")
        self.wait_ready(SERVICES)
        return watch

    def wait_ready(self, services: tuple[str, ...], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not all(self.deployment_ready(s) for s in services):
            if time.monotonic() > deadline:
                raise AssertionError(f"not all of {services} ready after {timeout:.0f}s")
            time.sleep(0.5)

    def stop(self) -> int | None:
        """Ctrl-C the watch if it runs (it leaves the workloads running); its exit code."""
        if self.watch is None or self.watch.proc.poll() is not None:
            return None
        self.watch.proc.send_signal(2)
        try:
            return self.watch.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.watch.proc.kill()
            return self.watch.proc.wait(10)

    def traffic(self) -> tuple[bool, str]:
        """Whether pods run containers reachable through the API server (exec, logs, HTTP from
        inside): not on a control plane whose node is simulated. Why not, when not."""
        if self._traffic is None:
            if os.environ.get("DEVLOOP_E2E_NO_TRAFFIC") == "1":
                self._traffic = (False, "DEVLOOP_E2E_NO_TRAFFIC=1")
            elif self.standin:
                self._traffic = (True, "")
            else:
                try:
                    self.exec_in("backend", ["true"])
                    self._traffic = (True, "")
                except Exception as exc:
                    detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
                    self._traffic = (False, f"exec into the backend pod failed: {detail}")
        return self._traffic

    def needs_traffic(self, what: str = "") -> None:
        """Skip the calling test, saying why, when the pods run no containers (`what`: what
        the test would observe)."""
        serves, why = self.traffic()
        if not serves:
            pytest.skip(f"the pods of this cluster run no containers ({why})"
                        + (f": {what}" if what else ""))

    def all_output_lines(self) -> list[str]:
        out: list[str] = []
        for o in self.outputs:
            out += o.lines if isinstance(o, DevloopProcess) else o.text.splitlines()
        return [line for line in out if line.strip()]

    # --- looking inside the cluster --------------------------------------------------------------

    def reset_namespace(self, timeout: float = 300) -> None:
        """Delete namespace lumina if it exists and wait until it is gone, so the first
        scenario really is a first deploy (a real cluster may keep one from an earlier run)."""
        try:
            self.core.delete_namespace(NAMESPACE)
        except k8s.ApiException as exc:
            if exc.status == 404:
                return
            raise
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.core.read_namespace(NAMESPACE)
            except k8s.ApiException as exc:
                if exc.status == 404:
                    return
                raise
            time.sleep(1)
        raise AssertionError(f"namespace {NAMESPACE} still terminating after {timeout:.0f}s")

    def image(self, service: str) -> str:
        """The image of `service`'s container in its Deployment's pod template."""
        dep = self.apps.read_namespaced_deployment(service, NAMESPACE)
        (container,) = [c for c in dep.spec.template.spec.containers if c.name == service]
        return str(container.image)

    def pods(self, service: str) -> list[Any]:
        pods = self.core.list_namespaced_pod(
            NAMESPACE, label_selector=f"app.kubernetes.io/component={service}").items
        return [p for p in pods if p.metadata.deletion_timestamp is None]

    def pod_uids(self, service: str) -> set[str]:
        return {p.metadata.uid for p in self.pods(service)}

    def deployment_ready(self, service: str) -> bool:
        dep = self.apps.read_namespaced_deployment(service, NAMESPACE)
        st = dep.status
        return bool(st and st.ready_replicas == dep.spec.replicas
                    and st.updated_replicas == dep.spec.replicas
                    and (st.observed_generation or 0) >= dep.metadata.generation)

    def _ready_pod(self, service: str) -> Any:
        for pod in self.pods(service):
            for cond in pod.status.conditions or []:
                if cond.type == "Ready" and cond.status == "True":
                    return pod
        raise AssertionError(f"no ready {service} pod")

    def exec_in(self, service: str, cmd: list[str]) -> str:
        """Run a command in the ready pod's container: docker exec on the stand-in (pods have
        network none), the exec API on a real cluster."""
        pod = self._ready_pod(service)
        if not self.standin:
            from kubernetes.stream import stream

            api = k8s_config.new_client_from_config(*self._kubeconfig_ctx, persist_config=False)
            return stream(k8s.CoreV1Api(api).connect_get_namespaced_pod_exec, pod.metadata.name,
                          NAMESPACE, container=service, command=cmd, stderr=True, stdin=False,
                          stdout=True, tty=False, _request_timeout=30)
        containers = self.docker.containers.list(filters={"label": [
            f"io.devloop.standin.pod-uid={pod.metadata.uid}",
            f"io.devloop.standin.container={service}"]})
        assert containers, f"no running container for pod {pod.metadata.name}"
        code, out = containers[0].exec_run(cmd)
        text = out.decode(errors="replace")
        assert code == 0, f"{cmd} in {service} failed ({code}): {text}"
        return text

    def backend_call(self, method: str, path: str, token: str | None = None,
                     body: Any = None) -> Any:
        """An HTTP call to the backend from inside its own pod (loopback in its namespace)."""
        script = (
            "import json, sys, urllib.request\n"
            "m, p, t, b = sys.argv[1:5]\n"
            "req = urllib.request.Request('http://127.0.0.1:8000' + p, method=m,\n"
            "    data=b.encode() if b else None, headers={'Content-Type': 'application/json'})\n"
            "if t: req.add_header('Authorization', 'Bearer ' + t)\n"
            "try:\n"
            "    r = urllib.request.urlopen(req, timeout=20); print(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(json.dumps({'status': e.code, 'body': e.read().decode()}))\n"
        )
        out = self.exec_in("backend", ["python3", "-c", script, method, path, token or "",
                                       json.dumps(body) if body is not None else ""])
        return json.loads(out) if out.strip() else None

    def backend_login(self, email: str, password: str) -> str:
        reply = self.backend_call("POST", "/api/auth/login", None,
                                  {"email": email, "password": password})
        assert "access_token" in reply, reply
        return reply["access_token"]

    def backend_register_and_login(self, email: str, password: str) -> str:
        self.backend_call("POST", "/api/auth/register", None,
                          {"email": email, "password": password, "name": "Ada"})
        return self.backend_login(email, password)


_LIVE_OFF = "    live_update: false  # this run exercises the full reload path\n"


def set_live_update(repo: Path, enabled: bool) -> None:
    """Turn live update off for every service of the copied devloop.yaml (scenarios and
    benchmarks of the full reload path: build, patch, rollout), or back to the repo's own."""
    config = repo / "devloop.yaml"
    saved = repo / ".devloop.yaml.live"  # the original, kept while live update is off
    if enabled:
        if saved.exists():
            config.write_text(saved.read_text())
            saved.unlink()
        return
    if not saved.exists():
        saved.write_text(config.read_text())
    out: list[str] = []
    skipping = False
    for line in saved.read_text().splitlines(keepends=True):
        if skipping and (line.startswith("      ") or not line.strip()):
            continue  # the body of the live_update mapping being replaced
        skipping = False
        if line.startswith("    live_update:"):
            skipping = True
            continue
        out.append(line)
        if line.rstrip("\n") in {f"  {s}:" for s in SERVICES}:
            out.append(_LIVE_OFF)
    config.write_text("".join(out))


def run_sync(lumina: LuminaCluster, *args: str, timeout: float = 900,
             command: str = "sync") -> SyncResult:
    """`devloop sync` (or another one-shot command) to its end, its JSON lines parsed."""
    started = time.monotonic()
    proc = lumina.devloop(command, *args)
    out, _ = proc.communicate(timeout=timeout)
    seconds = time.monotonic() - started
    events = []
    for line in out.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            events.append({"type": "unparsed", "line": line})
    result = SyncResult(proc.returncode, seconds, events, out)
    lumina.outputs.append(result)
    return result


def stack_env(kubeconfig: Path, cache_dir: Path, offline: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "DEVLOOP_"))}
    env.update({
        "KUBECONFIG": str(kubeconfig),
        "XDG_CACHE_HOME": str(cache_dir),
        "DEVLOOP_HELM": str(REPO / ".tools/bin/helm"),
        "JWT_SECRET_KEY": f"e2e-{secrets.token_hex(16)}",
        "PYTHONPATH": str(REPO),
    })
    if offline:
        env["DEVLOOP_OFFLINE"] = "true"
    return env


def prepare_images(docker_client: docker.DockerClient) -> None:
    """Base images (pulled, or produced locally when no registry answers) and dependencies
    downloaded on the host, which builds then use (DEVLOOP_OFFLINE=true) with or without a
    registry, so the suite runs the same everywhere."""
    subprocess.run([str(REPO / "scripts/install-helm")], check=True, stdout=subprocess.DEVNULL)
    offline = False
    for base in ("python:3.11-slim-bookworm", "node:20-bookworm-slim"):
        try:
            docker_client.images.get(base)
            continue
        except docker.errors.ImageNotFound:
            pass
        try:
            docker_client.images.pull(base)
        except docker.errors.DockerException:
            offline = True
    if offline:
        subprocess.run([str(REPO / "scripts/base-images")], check=True)
    # dependencies downloaded on the host work with or without a registry: always use them
    subprocess.run([str(REPO / "scripts/offline-deps")], check=True)
