"""Dashboard figures (issue 14): event-to-screen latency in headless Chromium, and the memory and
CPU of a real `devloop watch` while 100,000 pod log lines go through its dashboard.

    .venv/bin/python bench/bench_dashboard.py [--samples 60] [--lines 100000] [--idle-seconds 20]

1. Latency: the dashboard's server and an EventBus in this process (the same subscriber, SSE
   stream and page as in `watch`), the page open in Debian's headless Chromium. For each sample
   an event is published and the page records, with a MutationObserver, when its DOM shows it
   (a log line in the log view; a card's new state). Both clocks are this machine's wall clock.
2. Memory: a real `devloop watch` on the Kubernetes API stand-in (pods are Docker containers)
   with one busybox service that prints `--lines` lines when told to (a file created by exec),
   the page open in Chromium. RSS of the watch process (VmRSS) before and after every line has
   reached the dashboard; the dashboard keeps at most LOG_LINES_PER_POD lines per pod.
3. CPU of the idle watch over `--idle-seconds`, with the page open and with it closed.
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import docker  # noqa: E402
from kubernetes import client as k8s  # noqa: E402
from kubernetes import config as k8s_config  # noqa: E402
from kubernetes.stream import stream as k8s_stream  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402

from devloop import events as ev  # noqa: E402
from devloop.redact import Redactor  # noqa: E402
from devloop.ui import dashboard  # noqa: E402
from tests.conftest import scratch_dockerfile  # noqa: E402
from tests.dashboard.dashboard_page import remember, request  # noqa: E402
from tests.kube_standin.kubeconfig import CONTEXT  # noqa: E402
from tests.kube_standin.standin import StandIn  # noqa: E402
from tests.services.frontend.conftest import CHROMEDRIVER, CHROMIUM, CHROMIUM_FLAGS  # noqa: E402
from tests.watchproc import Watch  # noqa: E402

NS = "lumina"
_OBSERVE = """
window.__shown = {};
const note = (key) => { if (!(key in window.__shown)) window.__shown[key] = Date.now(); };
new MutationObserver(ms => { for (const m of ms) for (const n of m.addedNodes) {
    if (!n.classList) continue;
    const k = n.classList.contains('l') && /bench-\\d+/.exec(n.textContent);
    if (k) note(k[0]);
    if (n.classList.contains('card')) note(n.dataset.service + ':' + n.dataset.state);
  } }).observe(document.body, {childList: true, subtree: true});
"""


def browser(work: Path) -> webdriver.Chrome:
    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={work / 'chromium'}")
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def open_page(driver: webdriver.Chrome, url: str) -> None:
    """`url`: the address devloop prints (with the token)."""
    driver.get(url)
    deadline = time.monotonic() + 30
    while driver.execute_script("return document.getElementById('conn').className") != "on":
        if time.monotonic() > deadline:
            raise SystemExit(f"the dashboard page at {url} did not connect its event stream")
        time.sleep(0.05)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency(driver: webdriver.Chrome, samples: int) -> dict[str, list[float]]:
    bus = ev.EventBus()
    dash = dashboard.start(bus, Redactor(), lambda _m: None, lambda: [], ["svc"],
                           dashboard.UiOptions(port=0))
    assert dash is not None
    try:
        open_page(driver, dash.open_url)
        driver.execute_script(_OBSERVE)
        logs: list[float] = []
        cards: list[float] = []
        for n in range(samples):
            sent = time.time() * 1000
            bus.publish(ev.POD_LOG, "svc", pod="svc-abc", container="svc",
                        line=f"bench-{n} hello", source="pod")
            state = ("svc:building", ev.BUILD_STARTED, {"image": f"svc:dl-{n:012x}"})
            if n % 2:
                state = ("svc:ready", ev.ROLLOUT_READY, {"deployment": "svc", "seconds": 0.1})
            card_sent = time.time() * 1000
            bus.publish(state[1], "svc", **state[2])
            time.sleep(0.15)
            shown = driver.execute_script("const s = window.__shown; window.__shown = {};"
                                          " return s;")
            if f"bench-{n}" in shown:
                logs.append(shown[f"bench-{n}"] - sent)
            if state[0] in shown:
                cards.append(shown[state[0]] - card_sent)
        return {"log line": logs, "card state": cards}
    finally:
        dash.close()


def make_project(work: Path, kubeconfig: Path, lines: int, width: int = 0) -> Path:
    """One busybox service printing `lines` numbered lines (padded with `width` dots) once
    /go exists."""
    root = work / "repo"
    ctx = root / "services/chatty"
    (ctx / "src").mkdir(parents=True)
    shutil.copy("/bin/busybox", ctx / "busybox")
    (ctx / "src/readme.txt").write_text("chatty\n")
    cmd = ('["/bin/sh","-c","echo started; while [ ! -f /go ]; do sleep 0.2; done; '
           f"seq 1 {lines} | sed 's/^/chatty line {'.' * width}/'; echo all-lines-done; "
           'while true; do sleep 3600; done"]')
    (ctx / "Dockerfile").write_text(scratch_dockerfile("src/", cmd=cmd))
    prefix = f"dlbench-{uuid.uuid4().hex[:6]}"
    (root / "devloop.yaml").write_text(
        f"version: 1\nnamespace: {NS}\nrollout_timeout_s: 120\nservices:\n  chatty:\n"
        f"    context: services/chatty\n    image: {prefix}-chatty\n    live_update: false\n")
    api = k8s_config.new_client_from_config(str(kubeconfig), context=CONTEXT,
                                            persist_config=False)
    k8s.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
    k8s.AppsV1Api(api).create_namespaced_deployment(NS, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "chatty"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "chatty"}},
                 "strategy": {"type": "Recreate"},
                 "template": {"metadata": {"labels": {"app": "chatty"}},
                              "spec": {"containers": [{"name": "chatty",
                                                       "image": "chatty:none"}]}}}})
    return root


def wait_line(watch: Watch, line: str, timeout: float) -> None:
    """Watch.wait, reading only new events (it would rescan 100,000 of them every 50 ms)."""
    seen, deadline = 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = watch.events[seen:]
        seen += len(new)
        if any(e.get("type") == "log" and e.get("line") == line for e in new):
            return
        time.sleep(0.1)
    raise SystemExit(f"no pod line {line!r} in {timeout}s")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(pid: int, seconds: float) -> float:
    start, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - start) / (time.monotonic() - t0)


def memory_and_cpu(driver: webdriver.Chrome, work: Path, lines: int, idle: float) -> None:
    standin = StandIn(work / "standin", docker_client=docker.from_env(),
                      volume_prefix=f"dlbench-{work.name[-6:]}-pvc")
    kubeconfig = standin.start()
    root = make_project(work, kubeconfig, lines)
    watch = Watch(root, kubeconfig, args=("--ui-port", "0"))
    try:
        ready = watch.wait("dashboard.ready", timeout=60)
        url = remember(ready)  # request() then carries its token
        watch.wait("rollout.ready", timeout=300)
        watch.wait("log", timeout=60, line="started")
        pid = watch.proc.pid
        cpu_closed = idle_cpu(pid, idle)
        open_page(driver, ready["open"])
        time.sleep(2)
        cpu_open = idle_cpu(pid, idle)
        before = rss_mb(pid)
        api = k8s_config.new_client_from_config(str(kubeconfig), context=CONTEXT,
                                                persist_config=False)
        core = k8s.CoreV1Api(api)
        pod = core.list_namespaced_pod(NS, label_selector="app=chatty").items[0].metadata.name
        t0 = time.monotonic()
        k8s_stream(core.connect_get_namespaced_pod_exec, pod, NS, command=["touch", "/go"],
                   stderr=True, stdin=False, stdout=True, tty=False)
        wait_line(watch, "all-lines-done", 900)
        took = time.monotonic() - t0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the page got them all too
            shown = driver.execute_script(
                "return [...document.querySelectorAll('#log .l')].some("
                "e => e.textContent.includes('all-lines-done'))")
            if shown:
                break
            time.sleep(0.2)
        kept = len(request(url + "/api/logs?service=chatty&limit=1000000")[1]["lines"])
        after = rss_mb(pid)
        received = sum(1 for e in watch.events if e.get("type") == "log")
        print(f"\n# memory of `devloop watch` (pid {pid}), page open, {lines:,} pod lines "
              f"through the dashboard in {took:.1f} s ({received:,} log events seen)")
        print(f"RSS before {before:.1f} MB, after {after:.1f} MB ({after - before:+.1f} MB); "
              f"lines the dashboard keeps: {kept:,} "
              f"(at most {dashboard.LOG_LINES_PER_POD:,} per pod)")
        print(f"\n# idle `watch` over {idle:.0f} s: page closed {cpu_closed:.2f} %, "
              f"page open {cpu_open:.2f} % of one core (target < 1 %)")
    finally:
        watch.stop()
        standin.stop(keep_pods=False, remove_volumes=True)
        remove_bench_images()


def remove_bench_images() -> None:
    """The dlbench- images this run built (listed without inspecting each: other processes
    may remove images meanwhile)."""
    engine = docker.from_env()
    for image in engine.api.images():
        for tag in image.get("RepoTags") or []:
            if tag.startswith("dlbench-"):
                with contextlib.suppress(docker.errors.NotFound):
                    engine.images.remove(tag, force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--idle-seconds", type=float, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="devloop-bench-dashboard-"))
    driver = browser(work)
    try:
        result = latency(driver, args.samples)
        print(f"# event -> DOM in headless Chromium, {args.samples} samples "
              f"({time.strftime('%Y-%m-%d %H:%M')}); target < 100 ms median")
        for what, values in result.items():
            if not values:
                print(f"{what:<11} never shown")
                continue
            print(f"{what:<11} median {statistics.median(values):6.1f} ms   p90 "
                  f"{pct(values, 0.9):6.1f} ms   max {max(values):6.1f} ms   "
                  f"({len(values)}/{args.samples} seen)")
        memory_and_cpu(driver, work, args.lines, args.idle_seconds)
    finally:
        driver.quit()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
