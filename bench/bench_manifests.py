"""A values edit to a Ready pod running it (issue 19). Real devloop watch, the Lumina chart, the
Kubernetes API stand-in (tests/kube_standin) with pods as Docker containers. Prints figures.

    .venv/bin/python bench/bench_manifests.py [--rounds 5] [--real-time]

Each round saves k8s/values.yaml with a new `backend.config.environment` (an editor's atomic
save) and measures, from the save: devloop's `manifests.applied` (render + plan + server-side
apply of the ConfigMap and the Deployment), its `rollout.ready` for the backend, and the first
moment a Ready backend pod runs the new value (`printenv ENVIRONMENT` in its container).
`--real-time` runs the chart's probes at their real delays and periods (a real cluster's
timing); without it the stand-in runs them 10x faster.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.lumina import (  # noqa: E402
    NAMESPACE,
    SERVICES,
    LuminaCluster,
    copy_stack,
    prepare_images,
    replace_text,
    settled,
    stack_env,
)
from tests.kube_standin.kubeconfig import CONTEXT  # noqa: E402
from tests.kube_standin.standin import StandIn  # noqa: E402


def _running(lumina: LuminaCluster, value: str) -> bool:
    """A Ready backend pod runs `value` (its container's environment)."""
    try:
        return lumina.exec_in("backend", ["printenv", "ENVIRONMENT"]).strip() == value
    except AssertionError:  # no Ready pod at this moment (the old one is going)
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--real-time", action="store_true",
                        help="the chart's real probe timings (default: 10x faster)")
    args = parser.parse_args()

    docker_client = docker.from_env()
    prepare_images(docker_client)
    work = Path(tempfile.mkdtemp(prefix="devloop-bench-manifests-"))
    repo = copy_stack(work / "repo")
    server = StandIn(work / "standin", docker_client=docker_client,
                     probe_time_scale=1.0 if args.real_time else 0.1,
                     volume_prefix=f"bm-{work.name[-6:]}-pvc")
    kubeconfig = server.start()
    lumina = LuminaCluster(repo, kubeconfig, CONTEXT,
                           stack_env(kubeconfig, work / "cache", offline=True), docker_client,
                           standin=True)
    applied_s: list[float] = []
    ready_s: list[float] = []
    running_s: list[float] = []
    try:
        started = time.monotonic()
        watch = lumina.start_watch()
        for svc in SERVICES:
            watch.wait(lambda e, s=svc: settled(e, s), timeout=1800, what=f"{svc} settled")
        lumina.wait_ready(SERVICES)
        watch.settle(3)
        print(f"first watch: every service Ready in {time.monotonic() - started:.1f}s")
        values = repo / "k8s/values.yaml"
        current = "production"
        for n in range(1, args.rounds + 1):
            new = f"bench-{n}"
            mark = watch.mark()
            saved = time.monotonic()
            replace_text(values, f"    environment: {current}\n    corsOrigins",
                         f"    environment: {new}\n    corsOrigins", count=1)
            applied = watch.wait(lambda e: e["type"] == "manifests.applied", 60,
                                 "manifests.applied", after=mark)
            t_applied = time.monotonic() - saved
            watch.wait(lambda e: e["type"] == "rollout.ready" and e["service"] == "backend", 300,
                       "backend rolled out", after=mark)
            t_ready = time.monotonic() - saved
            while not _running(lumina, new):
                if time.monotonic() - saved > 300:
                    raise SystemExit(f"round {n}: {new} not running after 300 s")
                time.sleep(0.05)
            t_running = time.monotonic() - saved
            applied_s.append(t_applied)
            ready_s.append(t_ready)
            running_s.append(t_running)
            print(f"round {n}: applied {json.dumps(applied['objects'])} in {t_applied:.2f}s,"
                  f" rollout.ready {t_ready:.2f}s, a Ready pod runs it {t_running:.2f}s")
            current = new
            watch.settle(2)
        claim = lumina.core.read_namespaced_persistent_volume_claim("backend-sqlite-pvc",
                                                                    NAMESPACE)
        print(f"claim {claim.metadata.name} uid {claim.metadata.uid} (kept across all rounds)")
        timing = "real probe timings" if args.real_time else "probes 10x faster"
        print(f"values edit -> applied: median {statistics.median(applied_s):.2f}s;"
              f" -> rollout.ready: median {statistics.median(ready_s):.2f}s;"
              f" -> a Ready pod runs it: median {statistics.median(running_s):.2f}s"
              f" (min {min(running_s):.2f}, max {max(running_s):.2f}; {args.rounds} rounds,"
              f" stand-in, {timing})")
    finally:
        lumina.stop()
        server.stop(keep_pods=False, remove_volumes=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
