"""Fixtures for the fault suite: the stand-in (one per test, so a fault injected into it or an
outage disturbs no other test), and `box`: one small service with data on a PVC, deployed by
a real `devloop watch`, with everything a scenario checks from outside (`devloop status`, the
pods' images, the PVC's UID, the data on the volume)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import busybox_context, devloop_env
from tests.kube_standin.fixtures import StandInHandle, wait_for
from tests.ports import free_port
from tests.watchproc import Watch

NS = "faults"
# Appends its message to the PVC at start (the data that must survive), serves it on 8080
# (for port forwards) and logs "<message> <n>" every 0.2 s (for log following).
BOX_CMD = ('["/bin/sh","-c","m=$(cat /app/index.html); echo \\"$m\\" >> /data/history; '
           'httpd -p 8080 -h /app; i=0; while true; do echo \\"$m $i\\"; i=$((i+1)); '
           'sleep 0.2; done"]')


def wait_event(watch: Watch, type: str, after: int = 0, timeout: float = 120,
               **match: Any) -> dict[str, Any]:
    """Watch.wait, but a failure lists the events that are not log lines (what devloop did)."""
    try:
        return watch.wait(type, after=after, timeout=timeout, **match)
    except AssertionError as exc:
        said = [(e.get("type"), e.get("message") or e.get("reason") or e.get("outcome"))
                for e in watch.events[after:] if e.get("type") not in ("log", "build.output")]
        raise AssertionError(f"{exc}; since then devloop said: {said[-30:]}") from None


def first_reload(watch: Watch, after: int = 0, timeout: float = 240) -> dict[str, Any]:
    """The end of box's next reload: reload.finished, or build.skipped when the cluster
    already runs the current sources (then it has also waited for the rollout's health)."""
    def found() -> dict[str, Any] | None:
        return next((e for e in watch.events[after:] if e.get("service") == "box"
                     and e.get("type") in ("reload.finished", "build.skipped")), None)
    return wait_for(found, timeout, what="box's reload to end")


@dataclass
class Box:
    """The `box` service of a project on `standin`: its sources and its cluster objects."""

    root: Path
    standin: StandInHandle
    port: int  # local end of its port forward

    @property
    def source(self) -> Path:
        return self.root / "services/box/src/index.html"

    def save(self, message: str) -> None:
        self.source.write_text(f"{message}\n")

    def pods(self) -> list[Any]:
        return [p for p in self.standin.core().list_namespaced_pod(
            NS, label_selector="app=box").items if p.metadata.deletion_timestamp is None]

    def pod_images(self) -> set[str]:
        return {c.image for p in self.pods() for c in p.spec.containers}

    def template_image(self) -> str:
        dep = self.standin.apps().read_namespaced_deployment("box", NS)
        return dep.spec.template.spec.containers[0].image

    def pvc_uid(self) -> str:
        return self.standin.core().read_namespaced_persistent_volume_claim("box-data",
                                                                           NS).metadata.uid

    def history(self) -> list[str]:
        """The messages every box container ever started with, read from the PVC's volume."""
        volume = self.standin.claim_volume_name(NS, "box-data")
        image = next(iter(self.pod_images()))  # any box image has busybox's cat
        out = self.standin.docker.containers.run(
            image, ["cat", "/data/history"], volumes={volume: {"bind": "/data", "mode": "ro"}},
            remove=True, network_mode="none")
        return out.decode().split()

    def status(self) -> dict[str, Any]:
        """`devloop status -o json`'s row for box, as a person's script would read it."""
        done = subprocess.run(
            [sys.executable, "-m", "devloop.cli", "status", "-o", "json"], cwd=self.root,
            env=devloop_env(KUBECONFIG=str(self.standin.kubeconfig),
                            XDG_CACHE_HOME=str(self.root.parent / "cache"),
                            HOME=str(self.root.parent)),
            capture_output=True, text=True, timeout=120)
        try:
            rows = json.loads(done.stdout)["services"]
        except (ValueError, KeyError) as exc:
            raise AssertionError(f"devloop status: {done.stdout!r} {done.stderr!r}") from exc
        found = [r for r in rows if r.get("service") == "box"]
        assert found, f"devloop status printed no row for box: {done.stdout!r} {done.stderr!r}"
        return found[0]

    def watch(self, forward: bool = True) -> Watch:
        """A `devloop watch` that has finished its first reload (and opened the forward)."""
        watch = Watch(self.root, self.standin.kubeconfig)
        try:
            first = first_reload(watch)
            assert first.get("outcome", "ok") == "ok", first
            if forward:
                watch.wait("forward.ready", timeout=60, service="box")
        except BaseException:
            watch.stop()
            raise
        return watch

    def get(self, timeout: float = 3) -> str | None:
        """The page through the port forward, None when nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/index.html",
                                        timeout=timeout) as resp:
                return resp.read().decode()
        except OSError:
            return None


def assert_converged(box: Box, pvc_uid: str, history: list[str]) -> None:
    """What `devloop status` says is what the cluster runs, and nothing was lost."""
    row = box.status()
    assert row["state"] == "up to date" and row["stale"] is False and row["healthy"], row
    image = box.template_image()
    assert image.endswith(f":dl-{row['local_digest']}"), (image, row)
    assert box.pod_images() == {image}
    assert box.pvc_uid() == pvc_uid
    assert box.history()[-len(history):] == history


@pytest.fixture
def box(standin: StandInHandle, tmp_path: Path, image_prefix: str) -> Box:
    """A project with one service, box (live update off: these scenarios are about the full
    reload path), whose Deployment (Recreate, a ReadWriteOnce PVC at /data) exists in the
    stand-in before devloop starts."""
    root = tmp_path / "repo"
    port = free_port()
    busybox_context(root / "services/box", {"src/index.html": "v1\n"}, cmd=BOX_CMD)
    (root / "devloop.yaml").write_text(
        f"version: 1\nnamespace: {NS}\nrollout_timeout_s: 120\nquiet_period_ms: 50\n"
        f"services:\n  box:\n    context: services/box\n    image: {image_prefix}-box\n"
        f"    live_update: false\n    port_forwards: [\"{port}:8080\"]\n")
    standin.create_namespace(NS)
    standin.core().create_namespaced_persistent_volume_claim(NS, {
        "metadata": {"name": "box-data"},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "10Mi"}}}})
    standin.apps().create_namespaced_deployment(NS, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "box"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "box"}},
                 "strategy": {"type": "Recreate"},
                 "template": {"metadata": {"labels": {"app": "box"}}, "spec": {
                     "containers": [{
                         "name": "box", "image": "box:none",
                         # Ready 3 s after start (the stand-in runs probes 10x faster), so
                         # a rollout lasts long enough for a fault to land in its middle
                         "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1,
                                            "initialDelaySeconds": 30},
                         "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                     "volumes": [{"name": "data",
                                  "persistentVolumeClaim": {"claimName": "box-data"}}]}}}})
    return Box(root, standin, port)
