"""Reload timings on the Lumina stack (issue 6). Real devloop, real Docker builds, the Kubernetes
API stand-in (tests/kube_standin) whose pods are Docker containers. Prints figures.

    .venv/bin/python bench/bench_reload.py [--rounds 5]

For a one-line backend change it prints each phase (change detected, digest, build, delivery,
patch, rollout until Ready, first log line of the new pod), the save-to-ready total and
devloop's own share: the total minus the Docker build and the cluster's work (controllers,
container start, app start, readiness probe; measured by a watch from the bench as the time
between the patch and the Deployment's status first meeting kubectl's completion rule). Targets:
own share < 150 ms at the median (quiet period included); a no-op `devloop sync` < 2 s. In the
same run, the same change goes through the plain path a user would script: `docker build` (CLI),
patch the image with the kubernetes client, poll the rollout.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import docker
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.lumina import (  # noqa: E402
    LuminaCluster,
    copy_stack,
    prepare_images,
    run_sync,
    set_live_update,
    stack_env,
)
from tests.kube_standin.kubeconfig import CONTEXT  # noqa: E402
from tests.kube_standin.standin import StandIn  # noqa: E402

HEALTH = "services/backend/app/routes/health.py"
MARKER = '"status": "ok"'
ORIGINAL: dict[Path, str] = {}


class ReadyWatch:
    """Watches from this process: when each backend pod is first seen Ready, and when the
    backend Deployment's status first satisfies the completion rule for each generation (the
    moment a watching client could know the rollout is done)."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self.ready_at: dict[str, float] = {}
        self.complete_at: dict[int, float] = {}
        self._api = api
        self._stop = threading.Event()
        threading.Thread(target=self._pods, daemon=True).start()
        threading.Thread(target=self._deployments, daemon=True).start()

    def _pods(self) -> None:
        core = k8s.CoreV1Api(self._api)
        while not self._stop.is_set():
            try:
                for ev in k8s_watch.Watch().stream(
                        core.list_namespaced_pod, "lumina", timeout_seconds=30,
                        label_selector="app.kubernetes.io/component=backend",
                        _request_timeout=40):
                    pod = ev["object"]
                    for cond in pod.status.conditions or []:
                        if cond.type == "Ready" and cond.status == "True":
                            self.ready_at.setdefault(pod.metadata.name, time.time())
            except Exception:
                time.sleep(0.2)

    def _deployments(self) -> None:
        apps = k8s.AppsV1Api(self._api)
        while not self._stop.is_set():
            try:
                for ev in k8s_watch.Watch().stream(
                        apps.list_namespaced_deployment, "lumina", timeout_seconds=30,
                        field_selector="metadata.name=backend", _request_timeout=40):
                    dep = ev["object"]
                    st, want = dep.status, dep.spec.replicas
                    if ((st.observed_generation or 0) >= dep.metadata.generation
                            and st.updated_replicas == want and st.replicas == want
                            and st.available_replicas == want):
                        self.complete_at.setdefault(dep.metadata.generation, time.time())
            except Exception:
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()


def edit(repo: Path, n: int) -> float:
    """A one-line change saved atomically (like an editor); returns the save time."""
    path = repo / HEALTH
    original = ORIGINAL.setdefault(path, path.read_text())
    tmp = path.with_name(path.name + ".bench-tmp")
    tmp.write_text(original.replace(MARKER, f'{MARKER}, "bench": {n}', 1))
    t0 = time.time()
    tmp.replace(path)
    return t0


def devloop_round(lumina: LuminaCluster, ready: ReadyWatch, n: int) -> dict[str, float]:
    watch = lumina.watch
    assert watch is not None
    mark = watch.mark()
    t0 = edit(lumina.repo, n)

    def first(type_: str, pred=lambda e: True) -> dict:
        return watch.wait(lambda e: e["type"] == type_ and e.get("service") == "backend"
                          and pred(e), timeout=600, what=type_, after=mark)

    detected = first("change.detected")
    started = first("reload.started")
    build_started = first("build.started")
    build = first("build.finished")
    delivered = first("deliver.finished")
    patched = first("deploy.patched")
    rolled = first("rollout.ready")
    old_pods = set(ready.ready_at)
    log = first("log", lambda e: e["pod"] not in old_pods or e["ts"] > patched["ts"])
    new_ready = [t for name, t in ready.ready_at.items() if t > patched["ts"]]
    pod_ready = min(new_ready) if new_ready else rolled["ts"]
    complete = ready.complete_at.get(patched["generation"], rolled["ts"])
    watch.settle(1.0)
    total = rolled["ts"] - t0
    cluster = complete - patched["ts"]
    return {
        "detected": detected["ts"] - t0,
        "digest": started["ts"] - detected["ts"],
        "build": build["seconds"],
        "deliver": delivered["seconds"],
        "patch": patched["ts"] - delivered["ts"],
        "rollout": rolled["ts"] - patched["ts"],
        "first_log": log["ts"] - t0,
        "pod_ready": pod_ready - patched["ts"],
        "total": total,
        "cluster": cluster,
        "own": total - build["seconds"] - cluster,
        "build_wall": build["ts"] - build_started["ts"],
    }


def plain_round(lumina: LuminaCluster, n: int) -> dict[str, float]:
    """What a user would script: docker build, patch the image, poll the rollout."""
    t0 = edit(lumina.repo, 1000 + n)
    tag = f"lumina-backend:plain-{n}-{secrets.token_hex(3)}"
    subprocess.run(["docker", "build", "-q", "--target", "dev", "-t", tag,
                    str(lumina.repo / "services/backend")], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    built = time.time()
    apps = lumina.apps
    body = {"spec": {"template": {"spec": {"containers": [{"name": "backend", "image": tag}]}}}}
    dep = apps.patch_namespaced_deployment("backend", "lumina", body)
    generation = dep.metadata.generation
    while True:
        d = apps.read_namespaced_deployment("backend", "lumina")
        st = d.status
        if ((st.observed_generation or 0) >= generation
                and st.updated_replicas == d.spec.replicas
                and st.replicas == d.spec.replicas
                and st.available_replicas == d.spec.replicas):
            break
        time.sleep(0.5)
    done = time.time()
    lumina.watch.settle(1.0)  # type: ignore[union-attr]
    return {"build": built - t0, "total": done - t0}


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    client = docker.from_env()
    prepare_images(client)
    work = Path(tempfile.mkdtemp(prefix="devloop-bench-"))
    repo = copy_stack(work / "repo")
    set_live_update(repo, enabled=False)  # this bench is the full reload path (bench_live: live)
    standin = StandIn(work / "standin", docker_client=client,
                      volume_prefix=f"bench-{work.name[-6:]}-pvc")
    kubeconfig = standin.start()
    lumina = LuminaCluster(repo, kubeconfig, CONTEXT,
                           stack_env(kubeconfig, work / "cache", offline=True), client,
                           standin=True)
    api = k8s_config.new_client_from_config(str(kubeconfig), context=CONTEXT,
                                            persist_config=False)
    ready = ReadyWatch(api)
    try:
        watch = lumina.start_watch()
        for svc in ("backend", "chatbot", "frontend"):
            watch.wait(lambda e, s=svc: e["type"] == "rollout.ready" and e["service"] == s,
                       timeout=1200, what=f"{svc} ready")
        watch.settle(2)
        rounds = [devloop_round(lumina, ready, n) for n in range(args.rounds)]
        plain = [plain_round(lumina, n) for n in range(args.rounds)]
        lumina.stop()
        syncs = [run_sync(lumina).seconds for _ in range(3)]
    finally:
        ready.stop()
        lumina.stop()
        standin.stop(keep_pods=False, remove_volumes=True)
        shutil.rmtree(work, ignore_errors=True)
        for img in client.images.list(name="lumina-backend"):
            for tag in img.tags:
                if ":plain-" in tag:
                    client.images.remove(tag, force=True)

    def col(key: str) -> list[float]:
        return [r[key] for r in rounds]

    print(f"# devloop reload timings, one-line backend change, {args.rounds} rounds, medians "
          f"({time.strftime('%Y-%m-%d %H:%M')})")
    print(f"  change detected (quiet period 100 ms) {fmt(col('detected'))}")
    print(f"  digest                               {fmt(col('digest'))}")
    print(f"  docker build                         {fmt(col('build'))}")
    print(f"  image delivery                       {fmt(col('deliver'))}")
    print(f"  patch                                {fmt(col('patch'))}")
    print(f"  rollout until Ready                  {fmt(col('rollout'))}"
          f"   (cluster: new pod Ready after {fmt(col('pod_ready')).strip()}, Deployment "
          f"status complete after {fmt(col('cluster')).strip()})")
    print(f"  first log line of the new pod        {fmt(col('first_log'))}  after the save")
    print(f"  save -> ready                        {fmt(col('total'))}")
    print(f"  devloop's own share                  {fmt(col('own'))}   (target < 150 ms)")
    print(f"  no-op `devloop sync`                 {fmt(syncs)}   (target < 2000 ms)")
    plain_total = statistics.median(r["total"] for r in plain)
    plain_build = statistics.median(r["build"] for r in plain)
    print(f"  plain path (docker build CLI + patch + poll): save -> ready "
          f"{plain_total * 1000:.0f} ms (build {plain_build * 1000:.0f} ms); "
          f"ratio plain/devloop {plain_total / statistics.median(col('total')):.2f}x")


if __name__ == "__main__":
    main()
