"""Bounded build parallelism (issue 11, item 7): one burst rebuilds 30 services. Prints figures.

    .venv/bin/python bench/bench_parallel.py [--caps 1,2,4,30] [--repeats 2] [--kinds light,heavy]

30 synthetic services (FROM scratch + busybox, so no registry is needed) are all changed at once
and rebuilt by devloop's own Builder (docker-py's streaming `api.build`, the real ServiceDigest),
each build holding a BuildSlots slot, for several caps (the number of services = unbounded):
- light: COPY a few small files (the busybox base layer is cached, as a base image would be);
- heavy: also a RUN that keeps 100 MB resident (dd's buffer) while hashing 300 MB (~1.2 s of
  CPU on an idle core), a stand-in for pip installs or `next build`.
Per run: total wall time, when the FIRST image is ready (what the user waits for), the median,
and peak memory sampled every 100 ms: RSS of dockerd + containerd + shims, anonymous memory of
the build containers (their memory cgroups), and the machine's used memory (MemTotal -
MemAvailable) above the baseline taken just before the run. Every source file carries a fresh
nonce per run, so no run is served from the cache of an earlier one. Other sessions share this
machine: each configuration runs `--repeats` times, interleaved, with the 1-minute load average
before the run. Only the images this bench tagged (`benchpar-<run id>-...`) are removed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devloop.config.loader import load_config  # noqa: E402
from devloop.image.build import Builder, BuildFailed  # noqa: E402
from devloop.image.buildslots import BuildSlots  # noqa: E402
from devloop.inputs.digest import ServiceDigest, image_tag  # noqa: E402

BUSYBOX = Path("/bin/busybox")
CGROUP_DOCKER = Path("/sys/fs/cgroup/memory/docker")
DAEMONS = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2")
SAMPLE_S = 0.1
BASE = 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\n'
HEAVY_RUN = "RUN : {token}; dd if=/dev/zero bs=100M count=3 2>/dev/null | sha256sum > /app/burn\n"


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _daemon_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() in DAEMONS:
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def _used_kb() -> int:
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":", 1)
            info[key] = int(value.split()[0])
    return info["MemTotal"] - info["MemAvailable"]


class MemorySampler:
    """Samples memory every 100 ms in a thread; keeps the peaks (KiB)."""

    def __init__(self, token: str) -> None:
        self.token = token.encode()
        self.peak_daemons = self.peak_builds = self.peak_sum = self.peak_used = 0
        self.base_used = _used_kb()
        self._ours: set[str] = set()
        self._theirs: set[str] = set()
        self._pids = _daemon_pids()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _builds_kb(self) -> int:
        total = 0
        try:
            groups = [d for d in os.listdir(CGROUP_DOCKER) if len(d) == 64]
        except OSError:
            return 0
        for gid in groups:
            if gid in self._theirs:
                continue
            if gid not in self._ours and not self._classify(gid):
                continue
            try:
                with open(CGROUP_DOCKER / gid / "memory.stat") as f:
                    for line in f:
                        if line.startswith("total_rss "):
                            total += int(line.split()[1]) // 1024
                            break
            except OSError:
                continue
        return total

    def _classify(self, gid: str) -> bool:
        """A build container of this bench runs a shell whose command line holds the token."""
        try:
            pids = (CGROUP_DOCKER / gid / "cgroup.procs").read_text().split()
        except OSError:
            return False
        for pid in pids:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if self.token in cmd:
                self._ours.add(gid)
                return True
            if cmd and not cmd.startswith(b"runc"):
                self._theirs.add(gid)
                return False
        return False

    def _run(self) -> None:
        last_scan = time.monotonic()
        while not self._stop.wait(SAMPLE_S):
            if time.monotonic() - last_scan > 1.0:  # new shims appear with each RUN container
                self._pids, last_scan = _daemon_pids(), time.monotonic()
            daemons = sum(_rss_kb(p) for p in self._pids)
            builds = self._builds_kb()
            self.peak_daemons = max(self.peak_daemons, daemons)
            self.peak_builds = max(self.peak_builds, builds)
            self.peak_sum = max(self.peak_sum, daemons + builds)
            self.peak_used = max(self.peak_used, _used_kb() - self.base_used)


@dataclass
class RunResult:
    kind: str
    cap: int
    repeat: int
    load_before: float
    wall: float = 0.0
    ready: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    mem: MemorySampler | None = None


def make_project(root: Path, prefix: str, services: int, kind: str, token: str) -> Path:
    lines = ["version: 1", "namespace: bench", "services:"]
    for i in range(services):
        name = f"svc{i:02}"
        ctx = root / "services" / name
        (ctx / "src").mkdir(parents=True)
        shutil.copy(BUSYBOX, ctx / "busybox")
        run = HEAVY_RUN.format(token=token) if kind == "heavy" else ""
        (ctx / "Dockerfile").write_text(BASE + "COPY src/ /app/\n" + run)
        lines += [f"  {name}:", f"    context: services/{name}", f"    image: {prefix}-{name}"]
    (root / "devloop.yaml").write_text("\n".join(lines) + "\n")
    return root


def touch_all(root: Path, services: int, nonce: str) -> None:
    """The burst: every service's sources change (fresh content, so the cache cannot serve)."""
    for i in range(services):
        src = root / "services" / f"svc{i:02}" / "src"
        for n in range(4):
            (src / f"file{n}.txt").write_text(f"{nonce} svc{i:02} file {n}\n" * 50)


def run_once(client: docker.DockerClient, root: Path, kind: str, cap: int, repeat: int,
             token: str, tags: list[str]) -> RunResult:
    config = load_config(root / "devloop.yaml")
    names = list(config.services)
    touch_all(root, len(names), secrets.token_hex(8))
    digests = {}
    for name in names:
        d = ServiceDigest(config.services[name])
        d.scan()
        digests[name] = d
    builder = Builder(client)
    slots = BuildSlots(cap)
    stop = threading.Event()
    result = RunResult(kind, cap, repeat, os.getloadavg()[0])
    lock = threading.Lock()

    def one(name: str) -> None:
        digest = digests[name]
        tag = image_tag(digest.service.image, digest.digest())
        with lock:
            tags.append(tag)
        with slots.slot(name, stop) as got:
            assert got
            try:
                builder.build(digest, tag, lambda line: None)
            except BuildFailed as exc:
                with lock:
                    result.failures.append(str(exc))
                return
        with lock:
            result.ready.append(time.monotonic() - t0)

    threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in names]
    with MemorySampler(token) as mem:
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        result.wall = time.monotonic() - t0
    result.mem = mem
    return result


def remove_images(client: docker.DockerClient, tags: list[str]) -> None:
    for tag in tags:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(tag)
    tags.clear()


def row(r: RunResult) -> str:
    mem = r.mem
    assert mem is not None
    ready = sorted(r.ready)
    first = f"{ready[0]:6.1f}" if ready else "     -"
    median = f"{statistics.median(ready):6.1f}" if ready else "     -"
    fail = f"  FAILED {len(r.failures)}: {r.failures[0]}" if r.failures else ""
    return (f"{r.kind:5} {r.cap:3} {r.repeat:2} {r.load_before:5.2f} | {r.wall:6.1f} {first} "
            f"{median} | {mem.peak_daemons / 1024:6.0f} {mem.peak_builds / 1024:6.0f} "
            f"{mem.peak_sum / 1024:6.0f} {mem.peak_used / 1024:7.0f}{fail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=30)
    parser.add_argument("--caps", default="1,2,4,30")
    parser.add_argument("--kinds", default="light,heavy")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    caps = [int(c) for c in args.caps.split(",")]
    kinds = args.kinds.split(",")
    client = docker.from_env()
    run_id = secrets.token_hex(4)
    token = f"benchpar-{run_id}"
    tags: list[str] = []
    base_tag = f"{token}-base:warm"
    print(f"{args.services} services, caps {caps}, {args.repeats} repeats, {os.cpu_count()} CPUs, "
          f"{_used_kb() // 1024} MiB used before; run id {run_id}")
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory() as tmp:
        # The busybox base layer is built once, as a pulled base image would be present.
        ctx = Path(tmp) / "base"
        ctx.mkdir()
        shutil.copy(BUSYBOX, ctx / "busybox")
        (ctx / "Dockerfile").write_text(BASE)
        client.images.build(path=str(ctx), tag=base_tag, rm=True, forcerm=True)
        projects = {kind: make_project(Path(tmp) / kind, f"{token}-{kind}", args.services,
                                       kind, token) for kind in kinds}
        try:
            for repeat in range(1, args.repeats + 1):
                for kind in kinds:
                    for cap in caps:
                        time.sleep(2)  # let the engine settle after the previous removals
                        r = run_once(client, projects[kind], kind, cap, repeat, token, tags)
                        results.append(r)
                        print(row(r), flush=True)
                        remove_images(client, tags)
        finally:
            remove_images(client, tags)
            remove_images(client, [base_tag])
    print()
    print("kind  cap  # load1 |  total  first median |   dockerd builds    sum machine  (s, MiB)")
    for kind in kinds:
        for cap in caps:
            for r in results:
                if r.kind == kind and r.cap == cap:
                    print(row(r))
    print()
    print("best of the repeats (other sessions' load only ever adds time):")
    for kind in kinds:
        for cap in caps:
            runs = [r for r in results if r.kind == kind and r.cap == cap and r.ready]
            if runs:
                print(f"{kind:5} {cap:3}  total {min(r.wall for r in runs):6.1f} s  first "
                      f"{min(min(r.ready) for r in runs):5.1f} s  median "
                      f"{min(statistics.median(r.ready) for r in runs):5.1f} s")
    left = [t for img in client.images.list() for t in img.tags if t.startswith(token)]
    print(f"images left under {token}: {len(left)}; load1 at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
