"""Log stream lag and devloop's CPU at 1k, 10k and 60k lines/s (issue 13).

    .venv/bin/python bench/bench_logs.py [--rates 1000 10000 60000] [--seconds 20] [--no-skip]

A busybox pod on the Kubernetes API stand-in (run as a subprocess, so this process holds only
devloop's side) prints `line N` at a target rate (awk, in 10 ms batches, catching up every
second). devloop's real LogFollower follows it and passes every line through the event bus to
the console renderer (writing to /dev/null), as `devloop watch` does. Printed per rate:

  produced   lines/s the pod printed (line numbers over kubelet time, between the lines being
             shown at the start and at the end of the window)
  shown      lines/s that reached the console renderer
  lag        wall clock minus the kubelet timestamp of the line being shown (median / max),
             sampled every 0.5 s; the hook that records the timestamp is a one-line wrapper of
             the stream reader (measurement only)
  skips      log.skipped events (skip to the present after MAX_BEHIND_S) and lines skipped
             (their estimates)
  cpu        this process (devloop's follower + renderer) and the stand-in, % of one core

--no-skip sets the bound out of reach, to show what happened before: the lag grows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devloop import events as ev  # noqa: E402
from devloop.follow import logs as podlogs  # noqa: E402
from devloop.k8s.cluster import connect, new_api_client  # noqa: E402
from devloop.redact import Redactor  # noqa: E402
from devloop.ui.console import ConsoleRenderer  # noqa: E402
from tests.kube_standin.fixtures import busybox_base  # noqa: E402
from tests.kube_standin.kubeconfig import CONTEXT  # noqa: E402
from tests.logs.conftest import deployment  # noqa: E402

# Batches every 10 ms; each second's quota is caught up at once when the batches fall short.
PRODUCER = """awk -v rate={rate} 'BEGIN {{ srand(); t0 = srand(); i = 0; b = int(rate / 100);
if (b < 1) b = 1;
while (1) {{ for (j = 0; j < b; j++) printf "line %d\\n", i++; fflush();
  srand(); now = srand(); if (i >= rate * (now - t0 + 1)) system("usleep 10000") }} }}'"""

_last_raw: list[str] = [""]


def _hook_reader() -> None:
    """Remember the raw (timestamped) line the follower is at: the lag measurement."""
    original = podlogs.iter_lines

    def recording(resp):  # type: ignore[no-untyped-def]
        for raw in original(resp):
            _last_raw[0] = raw
            yield raw

    podlogs.iter_lines = recording  # type: ignore[assignment]


def _proc_cpu(pid: int) -> float:
    """utime + stime of a process in seconds (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _produced(first: str, last: str) -> float:
    """Lines/s the pod printed between two raw lines `<timestamp> line <n>`."""
    (ts0, _, n0), (ts1, _, n1) = (raw.split(" ") for raw in (first, last))
    t0, t1 = podlogs.parse_timestamp(ts0), podlogs.parse_timestamp(ts1)
    assert t0 is not None and t1 is not None
    return (int(n1) - int(n0)) / max((t1[0] - t0[0]) + (t1[1] - t0[1]) / 1e9, 1e-3)


def run_rate(kubeconfig: Path, standin_pid: int, image: str, rate: int, seconds: float,
             max_behind: float) -> dict[str, float | str]:
    namespace = f"bench-logs-{uuid.uuid4().hex[:6]}"
    cluster = connect(CONTEXT, namespace, str(kubeconfig))
    cluster.core.create_namespace({"metadata": {"name": namespace}})
    try:
        cluster.apps.create_namespaced_deployment(namespace, deployment(
            "spew", image, PRODUCER.format(rate=rate)))
        bus = ev.EventBus()
        devnull = open(os.devnull, "w")  # noqa: SIM115 (closed with the namespace below)
        bus.subscribe(ConsoleRenderer(devnull, Redactor(), colour=False))
        shown = [0]
        skips: list[tuple[int, float]] = []

        def on_line(service: str, pod: str, container: str, line: str) -> None:
            shown[0] += 1
            bus.publish(ev.POD_LOG, service, pod=pod, container=container, line=line,
                        source="pod")

        def on_skipped(service: str, pod: str, container: str, lines: int, secs: float) -> None:
            skips.append((lines, secs))
            bus.publish(ev.LOG_SKIPPED, service, pod=pod, container=container, lines=lines,
                        estimate=True, seconds_behind=round(secs, 3))

        follower = podlogs.LogFollower(
            lambda: new_api_client(cluster), namespace, "spew", {"app": "spew"}, on_line,
            lambda text: print(f"  ! {text}", file=sys.stderr), on_skipped=on_skipped,
            max_behind_s=max_behind)
        follower.start()
        deadline = time.monotonic() + 120
        while shown[0] < max(rate, 100) and time.monotonic() < deadline:
            time.sleep(0.05)
        if shown[0] == 0:
            return {"rate": rate, "error": "no lines within 120 s"}
        time.sleep(2)  # past the start-up burst
        t0, c0, s0 = time.monotonic(), time.process_time(), _proc_cpu(standin_pid)
        shown0, skips0, raw0 = shown[0], len(skips), _last_raw[0]
        lags: list[float] = []
        while time.monotonic() - t0 < seconds:
            time.sleep(0.5)
            ts = podlogs.parse_timestamp(_last_raw[0].split(" ", 1)[0])
            if ts is not None:
                lags.append(time.time() - (ts[0] + ts[1] / 1e9))
        wall = time.monotonic() - t0
        result: dict[str, float | str] = {
            "rate": rate, "produced": _produced(raw0, _last_raw[0]),
            "shown": (shown[0] - shown0) / wall,
            "lag_median": statistics.median(lags), "lag_max": max(lags),
            "lag_end": lags[-1], "skips": len(skips) - skips0,
            "skipped": sum(n for n, _ in skips[skips0:]),
            "cpu": 100 * (time.process_time() - c0) / wall,
            "standin_cpu": 100 * (_proc_cpu(standin_pid) - s0) / wall}
        follower.stop()
        devnull.close()
        return result
    finally:
        cluster.core.delete_namespace(namespace)
        cluster.api_client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[1000, 10000, 60000])
    parser.add_argument("--seconds", type=float, default=20.0, help="window per rate")
    parser.add_argument("--no-skip", action="store_true",
                        help="never skip to the present (the behaviour before issue 13)")
    args = parser.parse_args()
    _hook_reader()
    max_behind = 1e9 if args.no_skip else podlogs.MAX_BEHIND_S
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp:
        image = busybox_base(docker.from_env())
        standin = subprocess.Popen(
            [sys.executable, "-m", "tests.kube_standin", "--state-dir", f"{tmp}/standin"],
            cwd=REPO, stdout=subprocess.PIPE, text=True)
        try:
            assert standin.stdout is not None
            kubeconfig = Path(standin.stdout.readline().strip())
            print(f"bench_logs: window {args.seconds:.0f} s per rate; skip bound "
                  f"{'off' if args.no_skip else f'{max_behind:.0f} s'}; {os.cpu_count()} cores")
            print(f"{'target':>7} {'produced':>9} {'shown':>8} {'lag med':>8} {'lag max':>8} "
                  f"{'lag end':>8} {'skips':>6} {'skipped~':>9} {'cpu %':>6} {'stand-in %':>10}")
            for rate in args.rates:
                r = run_rate(kubeconfig, standin.pid, image, rate, args.seconds, max_behind)
                if "error" in r:
                    print(f"{rate:>7} {r['error']}")
                    continue
                print(f"{rate:>7} {r['produced']:>9.0f} {r['shown']:>8.0f} "
                      f"{r['lag_median']:>7.2f}s {r['lag_max']:>7.2f}s {r['lag_end']:>7.2f}s "
                      f"{r['skips']:>6} {r['skipped']:>9} {r['cpu']:>6.0f} "
                      f"{r['standin_cpu']:>10.0f}", flush=True)
        finally:
            standin.terminate()
            standin.wait(60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
