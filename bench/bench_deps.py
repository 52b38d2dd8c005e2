"""Dependency changes to a Ready pod running them (issue 21 item 3). Real devloop watch, real
Docker builds, the Kubernetes API stand-in at real probe timings. Prints figures.

    .venv/bin/python bench/bench_deps.py [--rounds 3]

Two changes, each measured both ways in the same run:
- backend: a line added to services/backend/requirements.txt (`h11`, already a dependency of
  uvicorn, pinned, with a per-round comment so each round is a new input);
- frontend: services/frontend/package.json gains `scheduler` (in node_modules already, through
  react-dom) and a per-round description.
"rebuild" is the path before this change (a dependency manifest is a rebuild trigger: build,
patch, rollout, the new pod Ready); "live" is devloop.yaml as shipped (the manifest is synced
and `pip install` / `npm install` runs in the running container). Measured from the save to the
end of the reload (rollout.ready, or live.sync.finished with every run step done) with the
service's pods Ready and answering. Target: live at least 3x faster.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_live import fetch, pods_ready  # noqa: E402
from tests.e2e.lumina import (  # noqa: E402
    LuminaCluster,
    copy_stack,
    prepare_images,
    stack_env,
)
from tests.kube_standin.kubeconfig import CONTEXT  # noqa: E402
from tests.kube_standin.standin import StandIn  # noqa: E402

# what the shipped devloop.yaml adds to make dependency manifests live: without these lines a
# manifest is a rebuild trigger again (the "rebuild" side, as before)
_LIFTS = re.compile(r'^\s*fall_back_on: \["!(requirements\.txt|package\.json)".*\n', re.M)


@dataclass(frozen=True)
class DepChange:
    service: str
    path: str
    url: str  # answers once the pod serves

    def apply(self, original: str, n: int) -> str:
        if self.path.endswith("requirements.txt"):
            return original.rstrip("\n") + f"\nh11==0.16.0  # bench {n}\n"
        text = original.replace('"react-dom": "19.3.1"',
                                '"react-dom": "19.3.1",\n    "scheduler": "0.28.0"', 1)
        return re.sub(r'"description": "[^"]*"', f'"description": "bench {n}"', text, count=1)


CHANGES = [
    DepChange("backend", "services/backend/requirements.txt",
              "http://127.0.0.1:8000/api/health"),
    DepChange("frontend", "services/frontend/package.json", "http://127.0.0.1:3000/"),
]


def one_round(lumina: LuminaCluster, change: DepChange, n: int, originals: dict[str, str],
              timeout: float = 900) -> dict[str, float]:
    """Save the change; wait for the end of its reload, then for Ready pods that answer."""
    path = lumina.repo / change.path
    original = originals.setdefault(change.path, path.read_text())
    watch = lumina.watch
    assert watch is not None
    mark = watch.mark()
    t0 = time.time()
    path.write_text(change.apply(original, n))

    def done(e: dict) -> bool:
        if e.get("service") != change.service:
            return False
        return e.get("type") in ("rollout.ready", "live.sync.finished", "reload.finished")

    end = watch.wait(done, timeout, f"{change.service} reload", after=mark)
    if end.get("type") == "reload.finished" and not end.get("ok"):
        raise SystemExit(f"{change.service}: the reload failed: {end.get('reason')}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fetch(change.url) and pods_ready(lumina, change.service):
            break
        time.sleep(0.05)
    else:
        raise SystemExit(f"{change.service}: no Ready pod answering within {timeout:.0f}s")
    answered = time.time()
    watch.settle(1.0)
    live = [e for e in watch.since(mark, "live.sync.finished")
            if e.get("service") == change.service]
    return {"total": answered - t0, "live": 1.0 if live else 0.0}


def set_deps_live(repo: Path, live: bool, shipped: str) -> None:
    config = repo / "devloop.yaml"
    config.write_text(shipped if live else _LIFTS.sub("", shipped))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    client = docker.from_env()
    prepare_images(client)
    work = Path(tempfile.mkdtemp(prefix="devloop-bench-deps-"))
    repo = copy_stack(work / "repo")
    shipped = (repo / "devloop.yaml").read_text()
    assert len(_LIFTS.findall(shipped)) == 2, "devloop.yaml no longer lifts both manifests"
    standin = StandIn(work / "standin", docker_client=client, pod_network="host",
                      probe_time_scale=1.0, volume_prefix=f"benchdeps-{work.name[-6:]}-pvc")
    kubeconfig = standin.start()
    lumina = LuminaCluster(repo, kubeconfig, CONTEXT,
                           stack_env(kubeconfig, work / "cache", offline=False), client,
                           standin=True)
    originals: dict[str, str] = {}
    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        for mode, base in (("rebuild", 0), ("live", 1000)):
            set_deps_live(repo, mode == "live", shipped)
            lumina.ensure_watch(timeout=1800)
            lumina.watch.settle(2.0)  # type: ignore[union-attr]
            for change in CHANGES:
                rows[(change.service, mode)] = [
                    one_round(lumina, change, base + n, originals) for n in range(args.rounds)]
            lumina.stop()
    finally:
        lumina.stop()
        standin.stop(keep_pods=False, remove_volumes=True)
        shutil.rmtree(work, ignore_errors=True)

    print(f"# dependency change -> Ready pod answering; medians of {args.rounds} rounds;"
          f" stand-in, real probe timings ({time.strftime('%Y-%m-%d %H:%M')})")
    print(f"{'service':<10} {'change':<18} {'rebuild':>9} {'live':>9} {'faster':>7}  live rounds")
    for change in CHANGES:
        before = statistics.median(r["total"] for r in rows[(change.service, "rebuild")])
        after_rows = rows[(change.service, "live")]
        after = statistics.median(r["total"] for r in after_rows)
        print(f"{change.service:<10} {Path(change.path).name:<18} {before:8.1f}s {after:8.1f}s"
              f" {before / after:6.1f}x  {int(sum(r['live'] for r in after_rows))}/"
              f"{len(after_rows)}")
    print("target: live at least 3x faster than rebuild")


if __name__ == "__main__":
    main()
