"""Live update timings on the Lumina stack (issue 12): save -> the new code answering through a
Ready pod, for a one-line backend change, a one-line chatbot change and a frontend component
change; then the same changes through the full reload path (live_update: false) in the same run.

    .venv/bin/python bench/bench_live.py [--rounds 5] [--full-rounds 3] [--scaled-probes]

Real devloop (`devloop watch` processes), real Docker builds of the services' `dev` images, the
Kubernetes API stand-in with pods as Docker containers on the host network (so the bench asks
each pod directly on 127.0.0.1), probes at the chart's real timings unless --scaled-probes.
"Answering" means an HTTP answer that shows the change while the answering service's pods are
all Ready. Phases of a live update: quiet period (save -> change detected), decision (-> copy
started), transfer (the copy), restart (copy done -> new code answering).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.lumina import (  # noqa: E402
    LuminaCluster,
    copy_stack,
    prepare_images,
    set_live_update,
    stack_env,
)
from tests.kube_standin.kubeconfig import CONTEXT  # noqa: E402
from tests.kube_standin.standin import StandIn  # noqa: E402


@dataclass(frozen=True)
class Change:
    service: str
    path: str  # repo-relative file
    old: str
    new: Callable[[int], str]
    url: str
    expect: Callable[[int], str]


CHANGES = [
    Change("backend", "services/backend/app/routes/health.py", '"status": "ok"',
           lambda n: f'"status": "ok", "bench": {n}', "http://127.0.0.1:8000/api/health",
           lambda n: f'"bench":{n}'),
    Change("chatbot", "services/chatbot/chatbot/app.py", '{"status": "ok"}',
           lambda n: f'{{"status": "ok", "bench": {n}}}', "http://127.0.0.1:8001/health",
           lambda n: f'"bench":{n}'),
    Change("frontend", "services/frontend/components/LoginForm.tsx", "<h1>Log in</h1>",
           lambda n: f"<h1>Log in bench{n}</h1>", "http://127.0.0.1:3000/",
           lambda n: f"Log in bench{n}"),
]


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy


def fetch(url: str) -> str:
    try:
        with _OPENER.open(url, timeout=5) as resp:
            return resp.read().decode("utf-8", "replace").replace(" ", "")
    except Exception:
        return ""


def pods_ready(lumina: LuminaCluster, service: str) -> bool:
    pods = [p for p in lumina.pods(service) if p.metadata.deletion_timestamp is None]
    return bool(pods) and all(
        any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        for p in pods)


def one_round(lumina: LuminaCluster, change: Change, n: int, originals: dict[str, str],
              timeout: float = 300) -> dict[str, float]:
    """Save the change in place (as editors that write in place do), then poll the service."""
    path = lumina.repo / change.path
    original = originals.setdefault(change.path, path.read_text())
    watch = lumina.watch
    assert watch is not None
    mark = watch.mark()
    text = original.replace(change.old, change.new(n), 1)
    assert text != original, f"{change.path}: marker {change.old!r} not found"
    t0 = time.time()
    path.write_text(text)
    want = change.expect(n).replace(" ", "")
    deadline = time.monotonic() + timeout
    answered = None
    while time.monotonic() < deadline:
        if want in fetch(change.url) and pods_ready(lumina, change.service):
            answered = time.time()
            break
        time.sleep(0.01)
    if answered is None:
        raise SystemExit(f"{change.service}: the change was not served within {timeout:.0f}s")

    def ts(type_: str) -> float | None:
        found = [e for e in watch.since(mark, type_) if e.get("service") == change.service]
        return found[0]["ts"] if found else None

    watch.settle(1.0)
    detected, copy_started = ts("change.detected"), ts("live.sync.started")
    copied = [e for e in watch.since(mark, "live.sync.finished")
              if e.get("service") == change.service]
    row = {"total": answered - t0, "live": 1.0 if copied else 0.0}
    if detected is not None:
        row["detected"] = detected - t0
    if copied and copy_started is not None and detected is not None:
        row["decision"] = copy_started - detected
        row["transfer"] = copied[0]["seconds"]
        row["docker"] = 1.0 if copied[0].get("method") == "docker" else 0.0
        row["restart"] = answered - copied[0]["ts"]
    return row


def med(rows: list[dict[str, float]], key: str) -> str:
    values = [r[key] for r in rows if key in r]
    return f"{statistics.median(values) * 1000:6.0f} ms" if values else "     -   "


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--full-rounds", type=int, default=3)
    parser.add_argument("--scaled-probes", action="store_true",
                        help="probes 10x faster than the chart says (default: real timings)")
    args = parser.parse_args()
    client = docker.from_env()
    prepare_images(client)
    work = Path(tempfile.mkdtemp(prefix="devloop-bench-live-"))
    repo = copy_stack(work / "repo")
    scale = 0.1 if args.scaled_probes else 1.0
    standin = StandIn(work / "standin", docker_client=client, pod_network="host",
                      probe_time_scale=scale, volume_prefix=f"benchlive-{work.name[-6:]}-pvc")
    kubeconfig = standin.start()
    lumina = LuminaCluster(repo, kubeconfig, CONTEXT,
                           stack_env(kubeconfig, work / "cache", offline=False), client,
                           standin=True)
    originals: dict[str, str] = {}
    live: dict[str, list[dict[str, float]]] = {}
    full: dict[str, list[dict[str, float]]] = {}
    try:
        lumina.ensure_watch(timeout=1800)
        for change in CHANGES:
            live[change.service] = [one_round(lumina, change, n, originals)
                                    for n in range(args.rounds)]
        lumina.stop()
        set_live_update(repo, enabled=False)
        lumina.ensure_watch(timeout=1800)
        for change in CHANGES:
            full[change.service] = [one_round(lumina, change, 1000 + n, originals, 900)
                                    for n in range(args.full_rounds)]
    finally:
        lumina.stop()
        standin.stop(keep_pods=False, remove_volumes=True)
        shutil.rmtree(work, ignore_errors=True)

    probes = "scaled probes (0.1x)" if args.scaled_probes else "real probe timings"
    print(f"# live update, save -> new code answering through a Ready pod; medians of "
          f"{args.rounds} live / {args.full_rounds} full rounds; stand-in, {probes} "
          f"({time.strftime('%Y-%m-%d %H:%M')})")
    print(f"{'service':<10} {'quiet':>9} {'decision':>9} {'transfer':>9} {'restart':>9} "
          f"{'LIVE':>9} {'full reload':>12} {'ratio':>7}  live rounds")
    for change in CHANGES:
        rows, base = live[change.service], full[change.service]
        ratio = (statistics.median(r["total"] for r in base)
                 / statistics.median(r["total"] for r in rows))
        print(f"{change.service:<10} {med(rows, 'detected'):>9} {med(rows, 'decision'):>9} "
              f"{med(rows, 'transfer'):>9} {med(rows, 'restart'):>9} {med(rows, 'total'):>9} "
              f"{med(base, 'total'):>12} {ratio:6.1f}x  "
              f"{int(sum(r['live'] for r in rows))}/{len(rows)}, "
              f"{int(sum(r.get('docker', 0) for r in rows))} through the Docker API")
    print("targets: backend and chatbot < 1000 ms, frontend < 2000 ms (live, median)")


if __name__ == "__main__":
    main()
