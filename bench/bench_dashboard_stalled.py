"""Stalled dashboard clients (issue 17.5): the memory of a real `devloop watch` while 10 clients
hold the event stream open without reading a byte and a pod pours out log lines for 60 s.

    .venv/bin/python bench/bench_dashboard_stalled.py [--clients 10] [--seconds 60]

A real `devloop watch -o json` on the Kubernetes API stand-in (pods are Docker containers) with
one busybox service that, once told (a file created by exec), prints numbered lines (`--width`
characters of padding) as fast as it can. The clients are raw sockets that send
`GET /api/events?cards=1` with the token and a 4 KiB receive buffer, then never read (a frozen
tab). Printed: the watch's RSS (VmRSS) idle with the clients connected, its peak and its value at
the end of the firehose (target: within 20 MB of idle), the log events per second devloop
published (its JSON output, counted here), and whether the dashboard still answers a normal
request at the end (the positive control).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import docker  # noqa: E402
from bench_dashboard import NS, make_project, remove_bench_images, rss_mb  # noqa: E402
from kubernetes import client as k8s  # noqa: E402
from kubernetes import config as k8s_config  # noqa: E402
from kubernetes.stream import stream as k8s_stream  # noqa: E402

from tests.dashboard.dashboard_page import remember, request  # noqa: E402
from tests.kube_standin.kubeconfig import CONTEXT  # noqa: E402
from tests.kube_standin.standin import StandIn  # noqa: E402
from tests.watchproc import Watch  # noqa: E402


class CountingWatch(Watch):
    """Keeps every event but the log lines, which it only counts (a firehose would fill this
    process's memory, not devloop's)."""

    log_events = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if '"type":"log"' in line[:100]:  # JsonRenderer's compact separators
                self.log_events += 1
                continue
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"type": "unparsed", "line": line})


def stalled_client(port: int, token: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET /api/events?cards=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 f"X-Devloop-Token: {token}\r\n\r\n".encode())
    return sock  # never read from


def run(work: Path, clients: int, seconds: float, width: int) -> None:
    standin = StandIn(work / "standin", docker_client=docker.from_env(),
                      volume_prefix=f"dlbench-{work.name[-6:]}-pvc")
    kubeconfig = standin.start()
    # 10**9 lines: the firehose never runs dry within the run
    root = make_project(work, kubeconfig, 10**9, width)
    watch = CountingWatch(root, kubeconfig, args=("--ui-port", "0"))
    socks: list[socket.socket] = []
    try:
        ready = watch.wait("dashboard.ready", timeout=60)
        url = remember(ready) if "open" in ready else ready["url"]  # (before 17.5: no token)
        port, token = int(url.rsplit(":", 1)[1]), ready.get("open", "").partition("?token=")[2]
        watch.wait("rollout.ready", timeout=300)
        deadline = time.monotonic() + 60
        while not watch.log_events and time.monotonic() < deadline:  # its "started" line
            time.sleep(0.1)
        pid = watch.proc.pid
        socks = [stalled_client(port, token) for _ in range(clients)]
        time.sleep(5)
        idle = rss_mb(pid)
        api = k8s_config.new_client_from_config(str(kubeconfig), context=CONTEXT,
                                                persist_config=False)
        core = k8s.CoreV1Api(api)
        pod = core.list_namespaced_pod(NS, label_selector="app=chatty").items[0].metadata.name
        before = watch.log_events
        k8s_stream(core.connect_get_namespaced_pod_exec, pod, NS, command=["touch", "/go"],
                   stderr=True, stdin=False, stdout=True, tty=False)
        t0 = time.monotonic()
        peak, samples = idle, []
        while time.monotonic() - t0 < seconds:
            time.sleep(1)
            rss = rss_mb(pid)
            peak = max(peak, rss)
            samples.append(rss)
        took = time.monotonic() - t0
        published = watch.log_events - before
        end = rss_mb(pid)
        t1 = time.monotonic()
        code, doc = request(url + "/api/services")
        answered = time.monotonic() - t1
        print(f"# `devloop watch` (pid {pid}), {clients} stalled event-stream clients, "
              f"log firehose ({width + 20}-character lines) for {took:.0f} s "
              f"({time.strftime('%Y-%m-%d %H:%M')})")
        print(f"RSS idle (clients connected) {idle:.1f} MB; peak {peak:.1f} MB "
              f"({peak - idle:+.1f}); end {end:.1f} MB ({end - idle:+.1f}); target within 20 MB")
        print(f"log events published: {published:,} ({published / took:,.0f}/s)")
        print(f"GET /api/services at the end: {code} in {answered * 1000:.0f} ms "
              f"({len(doc.get('services', [])) if isinstance(doc, dict) else 0} card)")
        print("RSS per 10 s: " + ", ".join(f"{s:.1f}" for s in samples[9::10]))
    finally:
        for sock in socks:
            sock.close()
        watch.stop()
        standin.stop(keep_pods=False, remove_volumes=True)
        remove_bench_images()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--width", type=int, default=500, help="characters per log line")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="devloop-bench-stalled-"))
    try:
        run(work, args.clients, args.seconds, args.width)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
