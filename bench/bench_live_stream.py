"""Live-update archive streaming (issue 17): memory and time of copying one large file into a
running pod, through ExecUpdater (Kubernetes exec) and DockerUpdater (shared daemon).

    .venv/bin/python bench/bench_live_stream.py [--mb 40] [--rounds 3]

Starts the API stand-in (pods are containers of the local Docker Engine) and one pod, then
copies a file of --mb MB into it. Prints, per updater, the median time and the peak of Python
memory allocated during one copy (tracemalloc, a separate round so tracing does not slow the
timed ones): an archive built in memory costs at least the file's size, a streamed one a few
chunks.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_transfer import busybox_image, pod_on_standin  # noqa: E402
from devloop.k8s.cluster import new_api_client  # noqa: E402
from devloop.live.updaters import (  # noqa: E402
    ContainerUpdater,
    DockerUpdater,
    ExecUpdater,
    Target,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    client = docker.from_env()
    root = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    built = busybox_image(client, root)
    try:
        with pod_on_standin(root, built) as (cluster, target):
            big = root / "blob.bin"
            big.write_bytes(os.urandom(args.mb * 1024 * 1024))
            measure(args, [(big, "/tmp/app/blob.bin")], target,
                    [ExecUpdater(lambda: new_api_client(cluster)), DockerUpdater(client)])
    finally:
        client.images.remove(built, force=True)
        shutil.rmtree(root, ignore_errors=True)


def measure(args: argparse.Namespace, copies: list[tuple[Path, str]], target: Target,
            updaters: list[ContainerUpdater]) -> None:
    print(f"one {args.mb} MB file into a running pod on the stand-in, {args.rounds} rounds")
    print(f"{'updater':<10}{'median':>12}{'peak Python memory during a copy':>36}")
    for u in updaters:
        u.update(target, copies, [], [])  # warm-up: first exec, prepare
        took = []
        for _ in range(args.rounds):
            began = time.perf_counter()
            u.update(target, copies, [], [])
            took.append(time.perf_counter() - began)
        tracemalloc.start()
        u.update(target, copies, [], [])
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"{u.name:<10}{statistics.median(took) * 1000:>9.0f} ms"
              f"{peak / 1048576:>33.1f} MB")


if __name__ == "__main__":
    main()
