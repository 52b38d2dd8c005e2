"""The engine's decisions, as plain functions of service state and a clock reading.

The loop in engine.py owns the state and does the I/O (queue, workers, watcher); everything it
*decides* lives here, so each rule is unit-tested with a fake clock and no threads: when a
service is due (quiet period and cap), how a finished reload folds into state (what is deployed,
what failed, what runs live), the retry back-off, and when a restarted container needs its
live-synced files again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from devloop.inputs.digest import ServiceDigest
from devloop.vocab import (
    BUILD_FAILED,
    CANCELLED,
    CLUSTER_UNREACHABLE,
    DISK_FULL,
    DOCKER_UNREACHABLE,
    OK,
    REGISTRY_UNREACHABLE,
    ROLLOUT_FAILED,
    SYNCED,
    UNCHANGED,
    LiveState,
    PipelineResult,
)

# Outcomes that are not the inputs' fault: retried with back-off in `watch`.
RETRIED = frozenset({CLUSTER_UNREACHABLE, DOCKER_UNREACHABLE, REGISTRY_UNREACHABLE, DISK_FULL})
MAX_RETRY_DELAY_S = 30.0


@dataclass(frozen=True)
class Timing:
    """The coalescing rule: start `quiet_s` after the last change, at most `cap_s` after the
    first."""

    quiet_s: float
    cap_s: float

    @classmethod
    def from_ms(cls, quiet_ms: int, cap_ms: int) -> Timing:
        quiet = quiet_ms / 1000
        return cls(quiet, max(cap_ms / 1000, quiet))


@dataclass
class ServiceState:
    """What the loop knows about one service. Only the loop thread reads or writes it."""

    digest: ServiceDigest
    known: str | None = None  # image digest the Deployment runs (or built, without a cluster)
    failed: str | None = None  # digest whose last reload failed deterministically
    pending: dict[Path, None] = field(default_factory=dict)
    full_scan: bool = True  # the next run must walk the whole tree
    first_at: float | None = None
    last_at: float | None = None
    busy: bool = False
    retries: int = 0
    last: PipelineResult | None = None
    live: LiveState | None = None  # sources synced into the running containers, if any
    resync: bool = False  # a container restarted without the live-synced files
    removed: bool = False  # dropped from devloop.yaml while busy: forget it when done
    paused: bool = False  # changes are kept but start nothing until resumed
    forced: bool = False  # the next run rebuilds and redeploys even if nothing changed


@dataclass(frozen=True)
class StartPlan:
    """The arguments of one pipeline run, decided from state."""

    changed: list[Path] | None  # None: walk the whole tree
    known: str | None
    known_failed: bool
    ask_cluster: bool
    resync: bool
    image: str | None  # the image digest the Deployment runs, as far as the loop knows
    force: bool = False  # rebuild and redeploy even when the inputs are unchanged


@dataclass
class ConfigState:
    """devloop.yaml (or a .dockerignore) changed. It is read again once its writes settle, as a
    service's files are: an editor that truncates, then writes, must not be read half-written
    (and reported invalid); one read runs at a time, so an older read never lands last."""

    forced: set[str] = field(default_factory=set)  # services whose ignore rules changed
    first_at: float | None = None
    last_at: float | None = None
    busy: bool = False


def note_config_change(state: ConfigState, forced: frozenset[str], at: float) -> None:
    """Record a write to devloop.yaml or to the .dockerignore of the `forced` services."""
    state.forced |= forced
    if state.first_at is None:
        state.first_at = at
    state.last_at = at


def start_config_read(state: ConfigState, now: float, timing: Timing) -> frozenset[str] | None:
    """The services whose ignore rules changed if a read is due now (and mark it running), else
    None."""
    d = _deadline(state.first_at, state.last_at, timing)
    if state.busy or d is None or d > now:
        return None
    forced = frozenset(state.forced)
    state.forced = set()
    state.first_at = state.last_at = None
    state.busy = True
    return forced


def config_read_done(state: ConfigState) -> None:
    """A read finished (applied or invalid): writes that came meanwhile are due as usual."""
    state.busy = False


def _deadline(first_at: float | None, last_at: float | None, timing: Timing) -> float | None:
    if first_at is None or last_at is None:
        return None
    return min(last_at + timing.quiet_s, first_at + timing.cap_s)


def deadline(state: ServiceState, timing: Timing) -> float | None:
    """When the service's pending changes are due, None when nothing is pending."""
    return _deadline(state.first_at, state.last_at, timing)


def _waiting(state: ServiceState) -> bool:
    """Idle, and allowed to start (not paused, or asked for by a person)."""
    return not state.busy and (state.forced or not state.paused)


def _due_at_once(state: ServiceState, now: float) -> None:
    """Make the service due now (well past any quiet period), unless changes already wait."""
    if state.first_at is None:
        state.first_at = state.last_at = now - 3600.0


def config_pending(config: ConfigState | None) -> bool:
    """A config read is due or running: services wait for it, since it can change any build
    (a .dockerignore edit changes what is hashed; a build arg, the image)."""
    return config is not None and (config.busy or config.first_at is not None)


def due(states: dict[str, ServiceState], now: float, timing: Timing,
        config: ConfigState | None = None) -> list[str]:
    """Services to start now: idle, with a deadline that passed, no config read ahead of them;
    oldest change first."""
    if config_pending(config):
        return []
    ready = [(state.first_at or 0.0, name) for name, state in states.items()
             if _waiting(state) and not state.removed
             and (d := deadline(state, timing)) is not None and d <= now]
    return [name for _, name in sorted(ready)]


def next_timeout(states: dict[str, ServiceState], now: float, timing: Timing,
                 config: ConfigState | None = None) -> float | None:
    """Seconds until the next deadline of an idle service or of a config read (None: wait for a
    message)."""
    if config_pending(config):
        assert config is not None
        d = None if config.busy else _deadline(config.first_at, config.last_at, timing)
        deadlines = [] if d is None else [d]  # services wait for the read
    else:
        deadlines = [d for s in states.values()  # the services due() may start
                     if _waiting(s) and not s.removed and (d := deadline(s, timing)) is not None]
    if not deadlines:
        return None
    return max(0.0, min(deadlines) - now)


def note_change(state: ServiceState, paths: list[Path], at: float) -> None:
    """Record changed paths; a change during a reload becomes exactly one follow-up."""
    for p in paths:
        state.pending[p] = None
    if state.first_at is None:
        state.first_at = at
    state.last_at = at


def start_plan(state: ServiceState) -> StartPlan:
    """Take the pending changes for a run and mark the service busy."""
    changed = None if state.full_scan else list(state.pending)
    ask_cluster = state.last is None or state.last.outcome in RETRIED
    known_failed = state.failed is not None
    known = state.failed if known_failed else state.known
    plan = StartPlan(changed, known, known_failed, ask_cluster, state.resync, state.known,
                     state.forced)
    state.pending = {}
    state.first_at = state.last_at = None
    state.busy = True
    state.full_scan = False
    state.resync = False
    state.forced = False
    return plan


def retry_delay(retries: int) -> float:
    """Back-off for an unreachable cluster, Docker Engine or registry: 2, 4, 8 ... 30 s."""
    return min(MAX_RETRY_DELAY_S, 2.0 ** max(1, retries))


def fold(state: ServiceState, result: PipelineResult, now: float, timing: Timing,
         stopping: bool = False) -> None:
    """Fold a finished run into the service's state."""
    state.busy = False
    if result.image is not None:
        state.known = result.image
    if result.outcome == UNCHANGED:
        if result.live is not None:
            state.live = result.live
        if state.last is None or state.last.outcome in RETRIED:
            state.last = result
        return
    state.last = result
    if result.outcome == OK:
        state.known, state.failed, state.live = result.digest, None, None
    elif result.outcome == SYNCED:
        state.live, state.failed = result.live, None
    elif result.outcome in (BUILD_FAILED, ROLLOUT_FAILED):
        state.failed = result.digest
        if result.outcome == ROLLOUT_FAILED:
            state.known = result.digest  # the Deployment now runs it, crashing or not
            state.live = None
    elif result.outcome in RETRIED or result.outcome == CANCELLED:
        # not the inputs' fault: retry with back-off (watch mode), or on the next change
        state.failed = None
        if result.outcome in RETRIED and not stopping:
            state.retries += 1
            retry_at = now + retry_delay(state.retries) - timing.quiet_s
            state.first_at = state.last_at = retry_at
            state.full_scan = True
        return
    state.retries = 0


def trigger(state: ServiceState, now: float) -> None:
    """A person asked for a full reload (dashboard button): due at once, even if paused for
    file changes, rebuilding and redeploying whatever the digest says."""
    state.forced = True
    state.failed = None
    _due_at_once(state, now)


def set_paused(state: ServiceState, paused: bool) -> None:
    """Pause: changes are kept and start nothing. Resume: what was kept is due as usual."""
    state.paused = paused


def container_started(state: ServiceState, container_id: str, now: float) -> bool:
    """A container of the service (re)started. If live-synced files are ahead of its image and
    this container does not hold them, a re-sync is due at once (it runs the image as built)."""
    live = state.live
    if live is None or not container_id or container_id in live.containers:
        return False
    state.resync = True
    _due_at_once(state, now)
    return True


# --- the manifests, a watched input of their own -------------------------------------------------

@dataclass
class ManifestState:
    """The project's manifests (chart, kustomization or YAML files) changed and are applied
    once their writes settle, like a service's files; one apply runs at a time."""

    first_at: float | None = None
    last_at: float | None = None
    busy: bool = False
    retries: int = 0
    edited: bool = False  # an edit waits to be applied (not the first apply, not a retry)


def note_manifest_change(state: ManifestState, at: float, edited: bool = True) -> None:
    """Record a write to a manifest input or devloop.yaml (`edited`), or another reason to
    apply again (the first apply at start, a retry)."""
    if state.first_at is None:
        state.first_at = at
    state.last_at = at
    state.edited = state.edited or edited


def images_wait_for_apply(state: ManifestState) -> bool:
    """While a manifest edit waits to be applied, an image built meanwhile goes out with that
    apply instead of an image patch: the apply follows the reload anyway (start_manifests),
    and patch then apply would roll the workload twice (a `git checkout` that changes a
    values file and a service's sources)."""
    return state.edited


def manifests_deadline(state: ManifestState, timing: Timing) -> float | None:
    """When pending manifest changes are due (None: nothing pending, or an apply runs)."""
    return None if state.busy else _deadline(state.first_at, state.last_at, timing)


def _manifests_held(states: dict[str, ServiceState], timing: Timing,
                    config: ConfigState | None) -> bool:
    """What a due apply waits for: a config read, a service reload running or pending."""
    return config_pending(config) or any(
        s.busy or (deadline(s, timing) is not None and _waiting(s))
        for s in states.values() if not s.removed)


def manifests_timeout(state: ManifestState, states: dict[str, ServiceState], now: float,
                      timing: Timing, config: ConfigState | None = None) -> float | None:
    """Seconds until the manifests may be applied; None when nothing is pending, or while the
    apply is held (start_manifests): what holds it ends with a message or has its own deadline
    in next_timeout, and a passed deadline the loop cannot act on made it spin, a whole core
    for as long as the first builds ran."""
    d = manifests_deadline(state, timing)
    if d is None or _manifests_held(states, timing, config):
        return None
    return max(0.0, d - now)


def start_manifests(state: ManifestState, states: dict[str, ServiceState], now: float,
                    timing: Timing, config: ConfigState | None = None) -> bool:
    """True (and the apply marked running) when the manifests are due now. They wait for a
    config read and for service reloads that are running or pending (due, or in their quiet
    period: a source file saved a few milliseconds after the manifest is due a few milliseconds
    later): a source change saved with the manifest is built and deployed first, so the apply
    carries its new image."""
    d = manifests_deadline(state, timing)
    if d is None or d > now or _manifests_held(states, timing, config):
        return False
    state.first_at = state.last_at = None
    state.edited = False
    state.busy = True
    return True


def manifests_done(state: ManifestState, retry: bool, now: float, timing: Timing) -> None:
    """An apply finished; with `retry` (the cluster did not answer) it is due again after the
    back-off, as a service's reload would be."""
    state.busy = False
    if not retry:
        state.retries = 0
        return
    state.retries += 1
    at = now + retry_delay(state.retries) - timing.quiet_s
    note_manifest_change(state, at, edited=False)
