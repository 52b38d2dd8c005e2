"""A cluster that does not share devloop's Docker Engine (issue 20), on the Lumina stack.

    .venv/bin/python bench/bench_registry.py [--rounds 5] [--scaled-probes] [--only-node]
                                             [--push-only]

The node is a private dockerd that gets images only by pulling them from a real registry
(Debian's docker-registry on a loopback port); the stand-in runs the pods there on the host
network. Measured with real `devloop watch` processes:

1. save -> the new backend code answering through a Ready pod, for a one-line live update, on
   this topology (files through the Kubernetes exec API) against the shared-engine one (the
   Docker API shortcut), same change, same stack;
2. registry delivery: bytes and seconds of the first push of each image against the push after
   a one-line backend change (live update off, so it rebuilds): only the changed layer travels.
   `--push-only` measures just this, for the backend, without a cluster (`devloop sync
   --no-deploy` builds, RegistryDelivery pushes), so it runs beside other stacks.
The stack runs on the host network: ports 8000, 8001, 3000 and 30080 must be free.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import docker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_live import CHANGES, med, one_round  # noqa: E402

from devloop.deploy.delivery import RegistryDelivery  # noqa: E402
from tests.e2e.lumina import (  # noqa: E402
    LuminaCluster,
    copy_stack,
    prepare_images,
    set_live_update,
    stack_env,
)
from tests.kube_standin.kubeconfig import CONTEXT  # noqa: E402
from tests.kube_standin.standin import StandIn  # noqa: E402
from tests.registry.servers import PrivateEngine, Registry  # noqa: E402

BACKEND = next(c for c in CHANGES if c.service == "backend")


STACK_PORTS = (8000, 8001, 3000, 30080)


def busy_ports() -> list[int]:
    busy = []
    for port in STACK_PORTS:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(port)
    return busy


def build_backend(repo: Path, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "devloop.cli", "sync", "--no-deploy", "-s",
                           "backend", "-o", "json"], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=1800)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    tags = [e["image"] for e in events if e["type"] in ("build.finished", "build.skipped")
            and e.get("image")]
    if done.returncode != 0 or not tags:
        raise SystemExit(f"backend build failed: {done.stdout[-800:]} {done.stderr[-800:]}")
    return tags[-1]


def push_only(work: Path, registry: Registry) -> list[tuple[str, Any]]:
    """First push of the backend image, then the push after a one-line source change."""
    repo = copy_stack(work / "repo-push")
    env = stack_env(work / "no-kubeconfig", work / "cache-push", offline=False)
    delivery = RegistryDelivery(registry.host)
    rows = []
    for label in ("first push", "one-line backend change"):
        if label != "first push":
            path = repo / BACKEND.path
            path.write_text(path.read_text().replace(BACKEND.old, BACKEND.new(1), 1))
        tag = build_backend(repo, env)
        began = time.monotonic()
        delivery.deliver(tag)
        rows.append((label, delivery.last_push, time.monotonic() - began))
    return rows


def pushes(lumina: LuminaCluster, after: int = 0) -> list[dict[str, Any]]:
    assert lumina.watch is not None
    return [e for e in lumina.watch.since(after, "deliver.finished") if "bytes_pushed" in e]


def run_topology(work: Path, name: str, rounds: int, scale: float, client: docker.DockerClient,
                 node: PrivateEngine | None, registry: Registry | None
                 ) -> tuple[list[dict[str, float]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Live rounds on one topology; with a registry also the first pushes and the push of a
    one-line change rebuilt."""
    repo = copy_stack(work / f"repo-{name}")
    if registry is not None:
        with open(repo / "devloop.yaml", "a") as f:
            f.write(f"\ndelivery: registry\ndefault_repo: {registry.host}\n")
    node_client = docker.DockerClient(base_url=node.url) if node else client
    standin = StandIn(work / f"standin-{name}", docker_client=node_client, pod_network="host",
                      probe_time_scale=scale, node_docker=node.url if node else None,
                      volume_prefix=f"benchreg-{name}-{work.name[-6:]}-pvc")
    kubeconfig = standin.start()
    lumina = LuminaCluster(repo, kubeconfig, CONTEXT,
                           stack_env(kubeconfig, work / f"cache-{name}", offline=False),
                           node_client, standin=True)
    first: list[dict[str, Any]] = []
    change: list[dict[str, Any]] = []
    try:
        lumina.ensure_watch(timeout=1800)
        first = pushes(lumina)
        originals: dict[str, str] = {}
        live = [one_round(lumina, BACKEND, n, originals) for n in range(rounds)]
        if registry is not None:
            lumina.stop()
            set_live_update(repo, enabled=False)
            lumina.ensure_watch(timeout=1800)
            assert lumina.watch is not None
            mark = lumina.watch.mark()
            one_round(lumina, BACKEND, 1000, originals, 900)
            change = pushes(lumina, mark)
    finally:
        lumina.stop()
        standin.stop(keep_pods=False, remove_volumes=True)
        if node is not None:
            node_client.close()
    return live, first, change


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scaled-probes", action="store_true",
                        help="probes 10x faster than the chart says (default: real timings)")
    parser.add_argument("--only-node", action="store_true",
                        help="skip the shared-engine comparison")
    parser.add_argument("--push-only", action="store_true",
                        help="only the backend's pushes, no cluster")
    args = parser.parse_args()
    client = docker.from_env()
    prepare_images(client)
    work = Path(tempfile.mkdtemp(prefix="devloop-bench-registry-"))
    if args.push_only:
        registry = Registry(work / "registry").start()
        try:
            rows = push_only(work, registry)
        finally:
            registry.stop()
            shutil.rmtree(work, ignore_errors=True)
        print(f"# backend image pushed to docker-registry on 127.0.0.1"
              f" ({time.strftime('%Y-%m-%d %H:%M')})")
        print(f"{'push':<26} {'layers sent':>11} {'present':>8} {'bytes':>14} {'seconds':>8}")
        for label, pushed, seconds in rows:
            print(f"{label:<26} {pushed.layers_pushed:>11} {pushed.layers_present:>8}"
                  f" {pushed.bytes_pushed:>14,} {seconds:>8.2f}")
        return
    if busy_ports():
        raise SystemExit(f"ports {busy_ports()} are in use (another Lumina stack on the host"
                         " network?): stop it first, or use --push-only")
    scale = 0.1 if args.scaled_probes else 1.0
    node = PrivateEngine(Path(tempfile.mkdtemp(prefix="dl-node-"))).start()
    registry = Registry(work / "registry").start()
    shared: list[dict[str, float]] = []
    try:
        remote, first, change = run_topology(work, "node", args.rounds, scale, client, node,
                                             registry)
        if not args.only_node:
            shared, _, _ = run_topology(work, "shared", args.rounds, scale, client, None, None)
    finally:
        registry.stop()
        node.stop()
        shutil.rmtree(node.directory, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    probes = "scaled probes (0.1x)" if args.scaled_probes else "real probe timings"
    print(f"# backend one-line live update, save -> new code answering through a Ready pod;"
          f" medians of {args.rounds}; stand-in, {probes} ({time.strftime('%Y-%m-%d %H:%M')})")
    print(f"{'topology':<34} {'quiet':>9} {'decision':>9} {'transfer':>9} {'restart':>9}"
          f" {'TOTAL':>9}  live rounds")
    for label, rows in (("node on its own engine (exec)", remote),
                        ("shared engine (Docker API)", shared)):
        if rows:
            print(f"{label:<34} {med(rows, 'detected'):>9} {med(rows, 'decision'):>9} "
                  f"{med(rows, 'transfer'):>9} {med(rows, 'restart'):>9} "
                  f"{med(rows, 'total'):>9}  {int(sum(r['live'] for r in rows))}/{len(rows)}")
    print("target: backend < 1500 ms on the node topology")
    print("# registry delivery (docker push by the engine; bytes = layer bytes sent)")
    print(f"{'push':<34} {'layers sent':>11} {'present':>8} {'bytes':>14} {'seconds':>8}")
    for label, rows in (("first push", first), ("one-line backend change", change)):
        for e in rows:
            print(f"{label + ' ' + e.get('service', '?'):<34} {e['layers_pushed']:>11}"
                  f" {e['layers_present']:>8} {e['bytes_pushed']:>14,} {e['seconds']:>8.2f}")
    if remote:
        print(f"live total medians: node {statistics.median(r['total'] for r in remote):.3f} s"
              + (f", shared {statistics.median(r['total'] for r in shared):.3f} s"
                 if shared else ""))


if __name__ == "__main__":
    main()
