"""Following pod logs on the API stand-in: across rollouts, restarts and API server outages.

The ticker image prints `tick 0`, `tick 1`, ... every 50 ms and `bye N` when it is stopped, so
each pod's lines must be exactly one unbroken sequence: any lost or repeated line shows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from devloop.deploy.patch import patch_image
from devloop.deploy.rollout import wait_rollout
from devloop.follow.logs import LogFollower
from devloop.k8s.cluster import Cluster, new_api_client
from tests.k8s import support
from tests.kube_standin import StandIn


class Collected:
    """What a LogFollower handed out, per pod, plus its error reports."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lines: dict[str, list[str]] = {}
        self.errors: list[str] = []
        self.services: set[tuple[str, str]] = set()

    def on_line(self, service: str, pod: str, container: str, line: str) -> None:
        with self.lock:
            self.services.add((service, container))
            self.lines.setdefault(pod, []).append(line)

    def on_error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)

    def of(self, pod: str) -> list[str]:
        with self.lock:
            return list(self.lines.get(pod, []))

    def wait_for(self, check: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; collected {self.summary()}")
            time.sleep(0.1)

    def summary(self) -> dict[str, str]:
        with self.lock:
            return {p: f"{len(ls)} lines, last {ls[-1:]}" for p, ls in self.lines.items()}


def assert_unbroken(lines: list[str], *, ended: bool) -> None:
    """`tick 0..N` with no gap or repeat, then `bye N+1` when the container was stopped."""
    ticks = lines[:-1] if ended else lines
    assert ticks == [f"tick {i}" for i in range(len(ticks))], _first_break(ticks)
    if ended:
        assert lines[-1] == f"bye {len(ticks)}", lines[-3:]


def _first_break(ticks: list[str]) -> str:
    for i, line in enumerate(ticks):
        if line != f"tick {i}":
            return f"line {i} is {line!r}, expected 'tick {i}' (around: {ticks[max(0, i-2):i+3]})"
    return "ok"


def follower(cluster: Cluster, got: Collected, app: str = "web", **kwargs) -> LogFollower:
    return LogFollower(lambda: new_api_client(cluster), cluster.namespace, app, {"app": app},
                       got.on_line, got.on_error, **kwargs)


def no_follower_threads() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith("logs")]


def test_logs_across_a_rollout_have_no_gap_and_no_duplicate(
        cluster: Cluster, deploy: Callable[..., int], test_images: dict[str, str]) -> None:
    ns = cluster.namespace
    deploy("web", test_images["ticker"])
    (old,) = [p.metadata.name for p in support.pods_of(cluster.core, ns, "web")]
    got = Collected()
    logs = follower(cluster, got)
    logs.start()
    try:
        got.wait_for(lambda: len(got.of(old)) >= 20)
        generation = patch_image(cluster.apps, ns, "web", "web", test_images["ticker2"], "v2")
        result = wait_rollout(cluster.apps, cluster.core, ns, "web", generation, 60,
                              threading.Event(), lambda _: None)
        assert result.ok, result
        (new,) = [p.metadata.name for p in support.pods_of(cluster.core, ns, "web")]
        assert new != old
        got.wait_for(lambda: len(got.of(new)) >= 20 and got.of(old)[-1:] != []
                     and got.of(old)[-1].startswith("bye"))
    finally:
        began = time.monotonic()
        logs.stop()
        stop_took = time.monotonic() - began
    assert_unbroken(got.of(old), ended=True)  # followed until it ended
    assert_unbroken(got.of(new), ended=False)  # followed from its first line
    assert got.services == {("web", "web")}
    # stop() joins for about 1 s; 5 s still tells "prompt" from a stream left hanging for its
    # 30 s read timeout, on a loaded machine too.
    assert stop_took < 5
    assert no_follower_threads()


def test_restarted_container_is_followed_again(cluster: Cluster,
                                               test_images: dict[str, str]) -> None:
    ns = cluster.namespace
    got = Collected()
    logs = follower(cluster, got)
    logs.start()
    try:
        # Created after the follower started: the crash loop's every run must show up once.
        cluster.apps.create_namespaced_deployment(ns, support.deployment(
            "web", test_images["crash"]))
        got.wait_for(lambda: sum(len(got.of(p)) for p in got.summary()) >= 6, timeout=60)
    finally:
        logs.stop()
    ((_, lines),) = got.lines.items()
    run = ["starting up", "fatal: cannot load settings (exit 3)"]
    assert lines == (run * len(lines))[: len(lines)]  # whole runs, none twice


def test_stop_closes_idle_streams_promptly(cluster: Cluster, deploy: Callable[..., int],
                                          test_images: dict[str, str]) -> None:
    deploy("web", test_images["sleeper"])  # prints nothing: its stream blocks in a read
    got = Collected()
    logs = follower(cluster, got)
    logs.start()
    deadline = time.monotonic() + 20
    while not logs.followed and time.monotonic() < deadline:
        time.sleep(0.1)
    assert logs.followed
    began = time.monotonic()
    logs.stop()
    assert time.monotonic() - began < 5  # not the 30 s read timeout of an idle stream
    assert no_follower_threads()
    assert got.errors == []


def test_logs_survive_an_api_server_restart(own_standin: StandIn, tmp_path: Path,
                                            test_images: dict[str, str]) -> None:
    cluster = support.plain_http_cluster(own_standin, tmp_path)
    ns = cluster.namespace
    cluster.apps.create_namespaced_deployment(ns, support.deployment("web", test_images["ticker"]))
    result = wait_rollout(cluster.apps, cluster.core, ns, "web", 1, 60, threading.Event(),
                          lambda _: None)
    assert result.ok, result
    (pod,) = [p.metadata.name for p in support.pods_of(cluster.core, ns, "web")]
    got = Collected()
    logs = follower(cluster, got)
    logs.start()
    try:
        got.wait_for(lambda: len(got.of(pod)) >= 10)
        # The API server goes away (every connection cut) while the pod keeps printing, and
        # comes back on the same address with its watch history gone (watches get 410).
        own_standin.stop(keep_pods=True)
        time.sleep(1.5)
        own_standin.start()
        before = len(got.of(pod))
        got.wait_for(lambda: len(got.of(pod)) >= before + 40)
        # A rollout after the outage: the re-established pod watch must find the new pod.
        generation = patch_image(cluster.apps, ns, "web", "web", test_images["ticker2"], "v2")
        assert wait_rollout(cluster.apps, cluster.core, ns, "web", generation, 60,
                            threading.Event(), lambda _: None).ok
        (new,) = [p.metadata.name for p in support.pods_of(cluster.core, ns, "web")]
        got.wait_for(lambda: len(got.of(new)) >= 10)
    finally:
        logs.stop()
    assert_unbroken(got.of(pod), ended=got.of(pod)[-1].startswith("bye"))
    assert_unbroken(got.of(new), ended=False)
    assert got.errors, "the outage should have been reported"
    assert all("\n" not in e and "logs for web" in e for e in got.errors)


def test_existing_pod_starts_from_its_recent_lines_when_asked(
        cluster: Cluster, deploy: Callable[..., int], test_images: dict[str, str]) -> None:
    deploy("web", test_images["ticker"])
    (pod,) = [p.metadata.name for p in support.pods_of(cluster.core, cluster.namespace, "web")]
    time.sleep(1.5)  # ~30 lines exist before devloop starts following
    got = Collected()
    logs = follower(cluster, got, existing_tail=3)
    logs.start()
    try:
        got.wait_for(lambda: len(got.of(pod)) >= 10)
    finally:
        logs.stop()
    lines = got.of(pod)
    first = int(lines[0].split()[1])
    assert first >= 20, lines[:3]  # not from the pod's first line
    assert lines == [f"tick {first + i}" for i in range(len(lines))]
