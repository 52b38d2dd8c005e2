"""The loop that owns devloop's state (Tilt's engine shape).

File changes, finished reloads, config reloads and stop requests arrive on one queue. The loop
alone reads and writes service state; it decides what to start and hands slow I/O (digest, build,
deploy, config reading, watcher set-up) to worker threads, which answer on the same queue. So no
lock guards the state, and the loop never blocks on I/O.

Per service, changes are coalesced until `quiet_period_ms` has passed without a new change (or
`quiet_period_cap_ms` since the first one); changes that arrive during a reload are kept and become
exactly one follow-up reload. Every such rule is a plain function in devloop.loop.rules; this module
only moves messages and starts workers.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from devloop import events as ev
from devloop.config.loader import Config, ConfigError, ServiceConfig, load_config
from devloop.inputs.digest import DigestCache, FileEntry, ServiceDigest
from devloop.inputs.filewatch import TreeWatcher, WatchRoot
from devloop.loop import rules as decide
from devloop.loop.pipeline import Pipeline
from devloop.loop.rules import ServiceState
from devloop.vocab import BUILD_FAILED, CLUSTER_UNREACHABLE, DEPLOY_FAILED, PipelineResult

# --- messages on the queue -----------------------------------------------------------------------


@dataclass(frozen=True)
class PathsChanged:
    paths: list[Path]
    at: float


@dataclass(frozen=True)
class ReloadDone:
    result: PipelineResult


@dataclass(frozen=True)
class ConfigReloaded:
    config: Config | None
    problems: list[str]
    watcher: TreeWatcher | None = None
    digests: dict[str, ServiceDigest] | None = None
    forced: frozenset[str] = frozenset()  # services whose ignore rules changed


@dataclass(frozen=True)
class ContainerStarted:
    """A container of a service's pod is running with this ID (posted by the pod watch)."""

    service: str
    pod: str
    container_id: str


@dataclass(frozen=True)
class TriggerReload:
    """Rebuild and redeploy a service now, even when its inputs are unchanged (dashboard)."""

    service: str


@dataclass(frozen=True)
class SetPaused:
    """Stop (or resume) reacting to a service's file changes; changes are kept meanwhile."""

    service: str
    paused: bool


@dataclass(frozen=True)
class ManifestsDone:
    """A manifest apply finished with this pipeline outcome (None: nothing to apply)."""

    outcome: str | None


@dataclass(frozen=True)
class Stop:
    reason: str


@dataclass(frozen=True)
class Rescan:
    """File events may have been lost (watcher restarted, queue overflow): hash every service
    again from its files."""

    reason: str
    at: float


WatcherFactory = Callable[[Config, dict[str, ServiceDigest], Callable[[list[Path]], None],
                           Callable[[str], None]], TreeWatcher]


class Engine:
    """Runs the dev loop for a Config. `run_once()` for `devloop sync`, `run()` for `watch`.

    `live` allows live update (file sync into running containers) where the pipeline finds it
    safe; `devloop sync` runs without it, so it always converges to a real image.
    """

    def __init__(self, config: Config, bus: ev.EventBus, pipeline: Pipeline,
                 services: Iterable[str] | None = None, cache: DigestCache | None = None,
                 clock: Callable[[], float] = time.monotonic, live: bool = False) -> None:
        self.config = config
        self.bus = bus
        self.pipeline = pipeline
        self.only = set(services) if services else None
        self.cache = cache
        self.clock = clock
        self.live = live
        self.queue: queue.Queue[object] = queue.Queue()
        self.stop_event = threading.Event()
        self._stop_requested: str | None = None
        self.watcher: TreeWatcher | None = None
        self.config_state = decide.ConfigState()
        self.manifest_state = decide.ManifestState()
        # set while a manifest edit waits to be applied: the deployer then leaves a built image
        # to that apply (one rollout) instead of patching it (devloop.loop.rules)
        self.images_wait_for_apply = threading.Event()
        self.manifests_outcome: str | None = None  # of the last apply (run_once: exit code)
        cached = cache.load() if cache else {}
        self.states: dict[str, ServiceState] = {
            name: ServiceState(ServiceDigest(svc, cached))
            for name, svc in self._selected(config).items()}

    def _selected(self, config: Config) -> dict[str, ServiceConfig]:
        return {n: s for n, s in config.services.items() if self.only is None or n in self.only}

    @property
    def timing(self) -> decide.Timing:
        return decide.Timing.from_ms(self.config.quiet_period_ms, self.config.quiet_period_cap_ms)

    # --- public API ------------------------------------------------------------------------------

    def post(self, message: object) -> None:
        """Thread-safe: hand a message to the loop."""
        self.queue.put(message)

    def stop(self, reason: str = "interrupted") -> None:
        """Thread-safe stop from another thread."""
        self.stop_event.set()
        self.post(Stop(reason))

    def request_stop(self, reason: str = "interrupted") -> None:
        """Stop from a signal handler: only an attribute is set, no lock is taken (the handler
        runs on the main thread, possibly while it holds the queue's lock inside get()). The
        loop notices within its 0.5 s wake-up."""
        self._stop_requested = reason

    def run_once(self) -> dict[str, PipelineResult]:
        """Bring every selected service up to date once, then return each one's result."""
        for name in self.states:
            self._start(name)
        while any(s.busy for s in self.states.values()):
            if self._stop_requested is not None:
                self.stop_event.set()
                break
            try:
                msg = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if isinstance(msg, ReloadDone):
                self._finish(msg.result)
            elif isinstance(msg, Stop):
                self.stop_event.set()
                break
        if self.config.deploy_format and not self.stop_event.is_set():
            self.manifests_outcome = self._apply_manifests_now()
        self._save_cache()
        return {n: s.last for n, s in self.states.items() if s.last is not None}

    def run(self, watcher_factory: WatcherFactory | None = None) -> str:
        """Watch and reload until stopped; returns the stop reason."""
        if watcher_factory is None:
            self.watcher = self._new_watcher(self.config, self.digests())
        else:
            self.watcher = watcher_factory(self.config, self.digests(), self._on_paths,
                                           self._on_warning)
        self.watcher.start()
        self._announce_watch()
        for name in self.states:
            self._start(name)
        if self.config.deploy_format:  # the first apply: everything, after the first reloads
            decide.note_manifest_change(self.manifest_state, self.clock() - 3600.0,
                                        edited=False)
        reason = "stopped"
        try:
            while True:
                timeout = decide.next_timeout(self.states, self.clock(), self.timing,
                                              self.config_state)
                wait = decide.manifests_timeout(self.manifest_state, self.states, self.clock(),
                                                self.timing, self.config_state)
                if wait is not None:
                    timeout = wait if timeout is None else min(timeout, wait)
                try:
                    # wake at least twice a second so signals are handled promptly
                    msg = self.queue.get(timeout=0.5 if timeout is None else min(timeout, 0.5))
                except queue.Empty:
                    msg = None
                if isinstance(msg, Stop):
                    reason = msg.reason
                    break
                if self._stop_requested is not None:
                    reason = self._stop_requested
                    break
                if isinstance(msg, PathsChanged):
                    self._route(msg)
                elif isinstance(msg, ReloadDone):
                    self._finish(msg.result)
                elif isinstance(msg, ManifestsDone):
                    decide.manifests_done(self.manifest_state,
                                          msg.outcome == CLUSTER_UNREACHABLE, self.clock(),
                                          self.timing)
                elif isinstance(msg, ConfigReloaded):
                    self._apply_config(msg)
                elif isinstance(msg, ContainerStarted):
                    self._container_started(msg)
                elif isinstance(msg, TriggerReload | SetPaused):
                    self._command(msg)
                elif isinstance(msg, Rescan):
                    self._rescan(msg)
                self._sync_images_wait()
                forced = decide.start_config_read(self.config_state, self.clock(), self.timing)
                if forced is not None:
                    self._spawn(lambda f=forced: self._reload_config(f))
                for name in decide.due(self.states, self.clock(), self.timing,
                                       self.config_state):
                    self._start(name)
                if decide.start_manifests(self.manifest_state, self.states, self.clock(),
                                          self.timing, self.config_state):
                    self._sync_images_wait()
                    self._spawn(lambda: self.post(ManifestsDone(self._apply_manifests_now())))
        finally:
            self.stop_event.set()
            if self.watcher is not None:
                self.watcher.stop()
            self._save_cache()
        return reason

    def digests(self) -> dict[str, ServiceDigest]:
        return {n: s.digest for n, s in self.states.items()}

    # --- loop internals --------------------------------------------------------------------------

    @staticmethod
    def _spawn(fn: Callable[[], object]) -> None:
        """Run slow I/O on a daemon thread: Ctrl-C must never wait for a build to finish."""
        threading.Thread(target=fn, name="devloop-worker", daemon=True).start()

    def _on_paths(self, paths: list[Path]) -> None:
        self.post(PathsChanged(paths, self.clock()))

    def _on_warning(self, text: str) -> None:
        self.bus.publish(ev.WARNING, None, message=text)

    def _on_rescan(self, reason: str) -> None:
        self.post(Rescan(reason, self.clock()))

    def _new_watcher(self, config: Config, digests: dict[str, ServiceDigest]) -> TreeWatcher:
        return default_watcher(config, digests, self._on_paths, self._on_warning,
                               self._on_rescan)

    def _rescan(self, msg: Rescan) -> None:
        self.bus.publish(ev.WATCH_RESCAN, None, reason=msg.reason, services=sorted(self.states))
        for state in self.states.values():
            state.full_scan = True
            decide.note_change(state, [state.digest.service.context], msg.at)

    def _announce_watch(self) -> None:
        assert self.watcher is not None
        self.bus.publish(ev.WATCH_READY, None, directories=self.watcher.watch_count,
                         mode=self.watcher.mode, services=sorted(self.states),
                         quiet_period_ms=self.config.quiet_period_ms)

    def _route(self, msg: PathsChanged) -> None:
        config_path = self.config.path
        ignores = {s.digest.service.context / ".dockerignore": name
                   for name, s in self.states.items()}
        forced = frozenset(ignores[p] for p in msg.paths if p in ignores)
        if config_path in msg.paths or forced:
            # devloop.yaml, or a .dockerignore (which changes what is watched and hashed)
            decide.note_config_change(self.config_state, forced, msg.at)
        for state in self.states.values():
            owned = [p for p in msg.paths if p != config_path and state.digest.owns(p)]
            if owned:
                decide.note_change(state, owned, msg.at)
        if any(p != config_path and _under(p, self._manifest_inputs) for p in msg.paths):
            decide.note_manifest_change(self.manifest_state, msg.at)

    def _sync_images_wait(self) -> None:
        if decide.images_wait_for_apply(self.manifest_state):
            self.images_wait_for_apply.set()
        else:
            self.images_wait_for_apply.clear()

    def _apply_manifests_now(self) -> str | None:
        """Worker (or run_once): one manifest apply; a bug is reported, never raised."""
        try:
            return self.pipeline.apply_manifests(self.stop_event)
        except Exception as exc:  # a bug must not kill the loop: report and carry on
            self.bus.publish(ev.ERROR, None, message=f"manifests: internal error: {exc!r}")
            return DEPLOY_FAILED

    @property
    def _manifest_inputs(self) -> list[Path]:
        return manifest_inputs(self.config)

    def _start(self, name: str) -> None:
        state = self.states[name]
        plan = decide.start_plan(state)
        live = state.live if self.live else None
        allow_live = self.live

        def work() -> None:
            try:
                result = self.pipeline.run(
                    state.digest, plan.changed, plan.known, self.stop_event,
                    ask_cluster=plan.ask_cluster, known_failed=plan.known_failed,
                    image=plan.image, live=live, allow_live=allow_live, resync=plan.resync,
                    force=plan.force)
            except Exception as exc:  # a bug must not kill the loop: report and carry on
                self.bus.publish(ev.ERROR, name, message=f"{name}: internal error: {exc!r}")
                result = PipelineResult(name, BUILD_FAILED, reason=repr(exc))
            self.post(ReloadDone(result))

        self._spawn(work)

    def _finish(self, result: PipelineResult) -> None:
        state = self.states.get(result.service)
        if state is None:
            return
        decide.fold(state, result, self.clock(), self.timing, self.stop_event.is_set())
        if state.removed:
            del self.states[result.service]

    def _container_started(self, msg: ContainerStarted) -> None:
        state = self.states.get(msg.service)
        if state is not None:
            decide.container_started(state, msg.container_id, self.clock())

    def _command(self, msg: TriggerReload | SetPaused) -> None:
        state = self.states.get(msg.service)
        if state is None:
            self.bus.publish(ev.WARNING, msg.service, message=(
                f"{msg.service}: no such service in {self.config.path.name}"))
            return
        if isinstance(msg, TriggerReload):
            decide.trigger(state, self.clock())
        else:
            decide.set_paused(state, msg.paused)
            self.bus.publish(ev.SERVICE_PAUSED if msg.paused else ev.SERVICE_RESUMED,
                             msg.service, pending=len(state.pending))

    def _save_cache(self) -> None:
        if self.cache is None:
            return
        snapshot: dict = {}
        for state in self.states.values():
            if not state.busy:
                snapshot.update(state.digest.cache_snapshot())
        with contextlib.suppress(OSError):  # a cache is an optimisation; never fail for it
            self.cache.save(snapshot)

    # --- config reload ---------------------------------------------------------------------------

    def _stat_cache(self) -> dict[str, dict[str, FileEntry]]:
        """Hashes known now, so a config reload re-reads only files whose stat changed.
        Read from worker threads: a reload's digest is not replaced while it runs (only
        swapped by the loop), and a stale entry only costs a re-read."""
        cache: dict[str, dict[str, FileEntry]] = {}
        for state in list(self.states.values()):
            with contextlib.suppress(RuntimeError):  # a worker changed it meanwhile: skip
                cache.update(state.digest.cache_snapshot())
        return cache

    def _reload_config(self, forced: frozenset[str] = frozenset()) -> None:
        """Worker: read devloop.yaml again; on success also prepare the new watcher. Always
        answers the loop, which runs one read at a time."""
        try:
            self.post(self._read_config(forced))
        except Exception as exc:  # a bug must not stop config reloads for good: report it
            self.post(ConfigReloaded(None, [f"{self.config.path}: internal error: {exc!r}"]))

    def _read_config(self, forced: frozenset[str]) -> ConfigReloaded:
        try:
            config = load_config(self.config.path)
        except ConfigError as exc:
            return ConfigReloaded(None, [str(p) for p in exc.problems])
        cache = self._stat_cache()
        digests = {n: ServiceDigest(s, cache) for n, s in self._selected(config).items()}
        for d in digests.values():
            d.scan()
        watcher = self._new_watcher(config, digests)
        watcher.start()
        return ConfigReloaded(config, [], watcher, digests, forced)

    def _apply_config(self, msg: ConfigReloaded) -> None:
        decide.config_read_done(self.config_state)
        if msg.config is None:
            self.bus.publish(ev.CONFIG_INVALID, None, path=str(self.config.path),
                             problems=msg.problems)
            return
        old = self.config
        self.config = msg.config
        self.pipeline.reconfigure(msg.config)
        if msg.config.deploy_format and _deploy_settings(old) != _deploy_settings(msg.config):
            decide.note_manifest_change(self.manifest_state, self.clock())
        old_watcher, self.watcher = self.watcher, msg.watcher
        if old_watcher is not None:
            self._spawn(old_watcher.stop)
        assert msg.digests is not None
        now = self.clock()
        for name, digest in msg.digests.items():
            state = self.states.get(name)
            if (state is not None and old.services.get(name) == digest.service
                    and name not in msg.forced):
                continue
            if state is not None and state.busy:
                # the running reload finishes with the old inputs; one follow-up applies these
                state.digest = digest
                state.removed = False
                state.full_scan = True
                decide.note_change(state, [self.config.path], now)
                continue
            fresh = ServiceState(digest, known=state.known if state else None,
                                 live=state.live if state else None, full_scan=False)
            decide.note_change(fresh, [self.config.path], now)
            self.states[name] = fresh
        for name in list(self.states):
            if name not in msg.digests:
                if self.states[name].busy:
                    self.states[name].removed = True  # forgotten when its reload ends
                else:
                    del self.states[name]
        self.bus.publish(ev.CONFIG_LOADED, None, path=str(self.config.path),
                         services=sorted(n for n, s in self.states.items() if not s.removed),
                         resources=sorted(self.config.resources))
        self._announce_watch()


def watch_roots(config: Config, digests: dict[str, ServiceDigest]) -> list[WatchRoot]:
    """What to watch: each service's context and extra paths (pruned by its ignore rules), the
    directory of devloop.yaml (for that file only), and Dockerfiles outside their context."""
    roots = [WatchRoot(config.path.parent, lambda rel: True, recursive=False,
                       only=frozenset({config.path.name}))]
    for path in manifest_inputs(config):  # the chart, kustomization or YAML files
        if path.is_dir():
            roots.append(WatchRoot(path, lambda rel: False))
        else:
            roots.append(WatchRoot(path.parent, lambda rel: True, recursive=False,
                                   only=frozenset({path.name})))
    for d in digests.values():
        roots.append(WatchRoot(d.service.context, d.context.rules.prunes_dir))
        for target, tree in zip(d.service.watch, d.extra, strict=True):
            if target.is_dir():
                roots.append(WatchRoot(target, tree.rules.prunes_dir))
            else:
                roots.append(WatchRoot(target.parent, lambda rel: True, recursive=False,
                                       only=frozenset({target.name})))
        df = d.service.dockerfile
        if d.context.relative(df) is None:
            roots.append(WatchRoot(df.parent, lambda rel: True, recursive=False,
                                   only=frozenset({df.name})))
    return _merge_roots(roots)


def manifest_inputs(config: Config) -> list[Path]:
    """The paths whose changes re-render the manifests ([] without a deploy format)."""
    from devloop.manifests.render import input_paths

    return input_paths(config) if config.deploy_format else []


def _under(path: Path, inputs: list[Path]) -> bool:
    return any(path == p or p in path.parents for p in inputs)


def _deploy_settings(config: Config) -> tuple[object, ...]:
    """What devloop.yaml says about the manifests: a change to it re-applies them."""
    return (config.chart, config.kustomize, config.manifests, config.prune,
            config.image_paths)


def _merge_roots(roots: list[WatchRoot]) -> list[WatchRoot]:
    """Merge file-only roots on the same directory; keep recursive roots as they are."""
    merged: dict[tuple[Path, bool], WatchRoot] = {}
    out = []
    for r in roots:
        if r.only is None:
            out.append(r)
            continue
        key = (r.path, r.recursive)
        if key in merged:
            prev = merged[key]
            assert prev.only is not None
            merged[key] = WatchRoot(r.path, prev.prunes, False, prev.only | r.only)
        else:
            merged[key] = r
    return list(merged.values()) + out


def default_watcher(config: Config, digests: dict[str, ServiceDigest],
                    on_change: Callable[[list[Path]], None],
                    on_warning: Callable[[str], None],
                    on_rescan: Callable[[str], None] | None = None) -> TreeWatcher:
    return TreeWatcher(watch_roots(config, digests), on_change, on_warning,
                       on_rescan=on_rescan, backend=config.watch_backend)
