"""Port-forward switch time (issue 13): how long after a new pod is Ready the forward on the same
local port serves from it.

    .venv/bin/python bench/bench_forward.py [--rounds 7]

Real devloop ForwardManager (in this process), the Kubernetes API stand-in with pods as Docker
containers on network `none` (reachable only through the port-forward), a busybox httpd
Deployment with a tcpSocket readiness probe and RollingUpdate (maxSurge 1, maxUnavailable 0),
so the old pod keeps serving until the new one is Ready. Each round changes the pod template
(an env var the page shows), and a client asks the local port in a loop. Printed per round and
as medians:

  ready -> moved     the new pod's Ready seen by an independent pod watch -> forward.moved
  ready -> served    ... -> first answer from the new pod through the local port
  failed requests    requests that got no answer during the switch (no request may hang)
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devloop import events as ev  # noqa: E402
from devloop.config.loader import PortForward, ServiceConfig  # noqa: E402
from devloop.follow.forwards import ForwardManager  # noqa: E402
from devloop.k8s.cluster import connect, new_api_client  # noqa: E402
from devloop.k8s.pods import Pod  # noqa: E402
from devloop.k8s.podwatch import PodWatch  # noqa: E402
from tests.kube_standin.kubeconfig import CONTEXT  # noqa: E402
from tests.kube_standin.standin import StandIn  # noqa: E402

NS = "bench"
SERVE = ("mkdir -p /tmp/w && echo round-$ROUND > /tmp/w/index.html"
         " && exec httpd -f -p 8080 -h /tmp/w")


def build_image(client: docker.DockerClient, tag: str) -> None:
    with tempfile.TemporaryDirectory() as context:
        shutil.copy("/bin/busybox", Path(context) / "busybox")
        (Path(context) / "Dockerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
            'RUN ["/bin/mkdir", "-m", "1777", "/tmp"]\n')
        client.images.build(path=context, tag=tag, rm=True, forcerm=True)


def deployment(image: str, round_no: int) -> dict:
    container = {"name": "web", "image": image, "command": ["sh", "-c", SERVE],
                 "env": [{"name": "ROUND", "value": str(round_no)}],
                 "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [container]}}}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Asker:
    """Asks the local port in a loop; records (time, answer or None, seconds taken)."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/index.html"
        self.answers: list[tuple[float, str | None, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.time()
            try:
                with urllib.request.urlopen(self.url, timeout=15) as resp:
                    answer: str | None = resp.read().decode().strip()
            except (OSError, http.client.HTTPException):  # cut at the switch
                answer = None
            self.answers.append((began, answer, time.time() - began))
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(20)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    client = docker.from_env()
    work = Path(tempfile.mkdtemp(prefix="devloop-bench-forward-"))
    image = f"benchforward-{work.name[-6:]}:1"
    build_image(client, image)
    standin = StandIn(work / "standin", docker_client=client, pod_network="none",
                      volume_prefix=f"benchforward-{work.name[-6:]}-pvc")
    kubeconfig = standin.start()
    recorder = ev.Recorder()
    bus = ev.EventBus()
    bus.subscribe(recorder)
    ready_at: dict[str, float] = {}
    manager = watch = asker = None
    try:
        cluster = connect(CONTEXT, NS, str(kubeconfig))
        cluster.core.create_namespace({"metadata": {"name": NS}})
        cluster.apps.create_namespaced_deployment(NS, deployment(image, 0))
        port = free_port()
        service = ServiceConfig(name="web", context=work, dockerfile=work / "Dockerfile",
                                image="web", deployment="web", container="web",
                                port_forwards=(PortForward(port, 8080),))

        def seen(pod: Pod) -> None:
            if pod.serving:
                ready_at.setdefault(pod.name, time.time())

        watch = PodWatch(lambda: new_api_client(cluster), NS, "app=web", on_pod=seen)
        watch.start()
        manager = ForwardManager(cluster, [service], bus)
        manager.start()
        if recorder.wait_for(lambda e: e.type == ev.FORWARD_READY, 120) is None:
            raise SystemExit("the forward never became ready")
        asker = Asker(port)
        rows = []
        for n in range(1, args.rounds + 1):
            mark = len(recorder.events)
            began = time.time()
            cluster.apps.replace_namespaced_deployment("web", NS, deployment(image, n))
            moved = recorder.wait_for(lambda e, m=mark: e.type == ev.FORWARD_MOVED
                                      and recorder.events.index(e) >= m, 120)
            if moved is None:
                raise SystemExit(f"round {n}: the forward did not move")
            pod = moved.data["pod"]
            deadline = time.time() + 30
            while time.time() < deadline and not any(
                    a == f"round-{n}" for t, a, _d in asker.answers if t >= began):
                time.sleep(0.02)
            served = min((t + d for t, a, d in asker.answers if a == f"round-{n}"),
                         default=float("nan"))
            during = [(a, d) for t, a, d in asker.answers if began <= t <= served]
            ready = ready_at.get(pod, float("nan"))
            rows.append({"moved": moved.ts - ready, "served": served - ready,
                         "failed": sum(1 for a, _ in during if a is None),
                         "old_after_move": sum(1 for t, a, _ in asker.answers
                                               if t > moved.ts + 0.05 and a is not None
                                               and a != f"round-{n}" and t < served + 5),
                         "slowest": max((d for _, d in during), default=0.0)})
            r = rows[-1]
            print(f"round {n}: ready -> moved {r['moved'] * 1000:.0f} ms, ready -> served "
                  f"{r['served'] * 1000:.0f} ms, {r['failed']} failed, slowest request "
                  f"{r['slowest'] * 1000:.0f} ms, old pod answers after the move "
                  f"{r['old_after_move']}", flush=True)
            time.sleep(1.0)  # let the old pod go
        print(f"median over {len(rows)} rounds: ready -> moved "
              f"{statistics.median(r['moved'] for r in rows) * 1000:.0f} ms, ready -> served "
              f"{statistics.median(r['served'] for r in rows) * 1000:.0f} ms, failed requests "
              f"{statistics.median(r['failed'] for r in rows):.0f}, slowest request "
              f"{max(r['slowest'] for r in rows) * 1000:.0f} ms, old pod answers after a move "
              f"{sum(r['old_after_move'] for r in rows)}")
    finally:
        if asker is not None:
            asker.stop()
        if manager is not None:
            manager.stop()
        if watch is not None:
            watch.stop()
        standin.stop(remove_volumes=True)
        client.images.remove(image, force=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
