"""Live-update transfer (issue 12): ExecUpdater (Kubernetes exec) vs DockerUpdater (shared daemon).

    .venv/bin/python bench/bench_transfer.py [--rounds 20] [--image REF]

Starts the API stand-in (pods are containers of the local Docker Engine), runs one pod and copies
into it: 1 small file, 10 small files, one 1 MB file, 1 file + 1 delete (for Docker a prepare
exec every time). Each round runs both updaters back to back (alternating which goes first);
prints the median and p90 per case in ms and the exec/docker ratio.
The default image is a FROM-scratch busybox (built here); --image runs e.g. a Debian-slim image
(GNU tar) that has `sleep`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devloop.k8s.cluster import Cluster, connect, new_api_client  # noqa: E402
from devloop.live.updaters import (  # noqa: E402
    ContainerUpdater,
    DockerUpdater,
    ExecUpdater,
    Target,
)
from tests.kube_standin import StandIn  # noqa: E402


def busybox_image(client: docker.DockerClient, root: Path) -> str:
    ctx = root / "image"
    ctx.mkdir()
    shutil.copy(shutil.which("busybox") or "/bin/busybox", ctx / "busybox")
    (ctx / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        "RUN mkdir -p /tmp && chmod 1777 /tmp\n")
    tag = f"devloop-bench-transfer:{uuid.uuid4().hex[:8]}"
    client.images.build(path=str(ctx), tag=tag, rm=True)
    return tag


def cases(root: Path) -> dict[str, tuple[list[tuple[Path, str]], list[str]]]:
    """name -> (copies, deletes)."""
    src = root / "src"
    src.mkdir()
    small = []
    for i in range(10):
        path = src / f"mod{i}.py"
        path.write_text(f"def handler_{i}():\n    return {i}\n" * 20)
        small.append((path, f"/tmp/app/pkg/mod{i}.py"))
    big = src / "blob.bin"
    big.write_bytes(os.urandom(1024 * 1024))
    return {"1 small file": (small[:1], []), "10 small files": (small, []),
            "1 MB file": ([(big, "/tmp/app/blob.bin")], []),
            "1 file+1 delete": (small[:1], ["/tmp/app/pkg/old.py"])}


def start_pod(cluster: Cluster, image: str) -> Target:
    ns = cluster.namespace
    cluster.core.create_namespaced_pod(ns, {
        "metadata": {"name": "bench"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "app", "image": image, "imagePullPolicy": "IfNotPresent",
            "command": ["sleep", "1000000"]}]}})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for cs in cluster.core.read_namespaced_pod("bench", ns).status.container_statuses or []:
            if cs.state.running and cs.container_id:
                return Target(ns, "bench", "app", cs.container_id)
        time.sleep(0.2)
    raise SystemExit("bench pod did not start")


@contextlib.contextmanager
def pod_on_standin(root: Path, image: str) -> Iterator[tuple[Cluster, Target]]:
    """A fresh stand-in under `root` (pods are containers of the local Docker Engine) with one
    running pod of `image`; stopped afterwards."""
    standin = StandIn(root / "standin", volume_prefix=f"bench-{uuid.uuid4().hex[:6]}-pvc")
    standin.start()
    try:
        namespace = f"bench-{uuid.uuid4().hex[:6]}"
        cluster = connect(StandIn.context, namespace, str(standin.kubeconfig))
        cluster.core.create_namespace({"metadata": {"name": namespace}})
        yield cluster, start_pod(cluster, image)
    finally:
        standin.stop(remove_volumes=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--image", help="image with sh, tar, sleep (default: busybox, built)")
    args = parser.parse_args()
    client = docker.from_env()
    root = Path(tempfile.mkdtemp(prefix="bench-transfer-"))
    built = None if args.image else busybox_image(client, root)
    try:
        with pod_on_standin(root, args.image or built) as (cluster, target):
            run_cases(args, client, root, cluster, target)
    finally:
        if built:
            client.images.remove(built, force=True)
        shutil.rmtree(root, ignore_errors=True)


def run_cases(args: argparse.Namespace, client: docker.DockerClient, root: Path,
              cluster: Cluster, target: Target) -> None:
    updaters: list[ContainerUpdater] = [ExecUpdater(lambda: new_api_client(cluster)),
                                        DockerUpdater(client)]
    print(f"transfer into a running pod on the stand-in, {args.rounds} rounds, image "
          f"{args.image or 'busybox'}")
    print(f"{'case':<16}{'exec median':>13}{'p90':>8}{'docker median':>15}{'p90':>8}"
          f"{'exec/docker':>13}")
    for name, (copies, deletes) in cases(root).items():
        took: dict[str, list[float]] = {u.name: [] for u in updaters}
        for u in updaters:  # warm-up: first exec, first connection
            u.update(target, copies, deletes, [])
        for i in range(args.rounds):
            order = updaters if i % 2 == 0 else updaters[::-1]
            for u in order:
                began = time.perf_counter()
                u.update(target, copies, deletes, [])
                took[u.name].append((time.perf_counter() - began) * 1000)
        ex, dk = (statistics.median(took[n]) for n in ("exec", "docker"))
        p90 = {n: sorted(v)[int(len(v) * 0.9) - 1] for n, v in took.items()}
        print(f"{name:<16}{ex:>10.1f} ms{p90['exec']:>8.1f}{dk:>12.1f} ms"
              f"{p90['docker']:>8.1f}{ex / dk:>12.2f}x")
    print("exec: one exec through the API (rm + head|tar + run) per update; docker: one"
          " put_archive once the container was prepared (its first sync, deletes and new"
          " directories add an exec; `run` steps add an exec)")


if __name__ == "__main__":
    main()
