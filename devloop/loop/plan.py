"""The reload decision as data: skip, live or build, and why (Tilt's build control).

`plan_reload` is a pure function of what one pipeline run knows once the inputs are hashed and
the cluster was asked (`ReloadFacts`); the pipeline then only carries the plan out. So every
branch of "what does a save do" is a unit test with no Docker, no cluster and no clock, and
every decision carries a one-line reason a person can read.
"""

from __future__ import annotations

from dataclasses import dataclass

from devloop.vocab import LiveState

SKIP = "skip"  # the running workload already holds these inputs: nothing to do
LIVE = "live"  # copy the changed files into the running containers
BUILD = "build"  # build the image and deploy it

FULL_RELOAD_ASKED = "a full reload was asked for"


@dataclass(frozen=True)
class ReloadFacts:
    """What one run knows when it decides (after hashing and, at start-up, asking the
    cluster)."""

    digest: str  # input digest of the sources now
    known: str | None  # digest the loop (or the cluster) says is deployed or last failed
    known_failed: bool = False  # `known` is the digest of a failed reload
    live: LiveState | None = None  # sources synced on top of the running image
    image: str | None = None  # digest of the image the Deployment runs, when known
    changed: bool = False  # file changes triggered the run (False: a full scan)
    ask_cluster: bool = False  # start-up or retry: the cluster was asked what runs
    force: bool = False  # a person asked for a full reload
    resync: bool = False  # a container restarted without the live-synced files
    cluster: bool = True  # a deployer is wired (False: build only, `--no-deploy`)
    syncer: bool = False  # live update is wired (it needs a cluster)
    allow_live: bool = False  # this command allows live update (`watch`)
    live_blocked: str = ""  # why live update must not be tried (read from the pods)


@dataclass(frozen=True)
class ReloadPlan:
    """What a run does, and why; `known` is what "up to date" was compared with (the synced
    sources when containers run them), also kept from pruning."""

    action: str  # SKIP | LIVE | BUILD
    reason: str
    known: str | None
    check_health: bool = False  # SKIP: unchanged is not "up to date" while the pods crash
    replace_diverged: bool = False  # SKIP: pods may run synced files that differ from the image
    live_refused: str = ""  # BUILD: why live update, otherwise possible, was not tried


def plan_reload(facts: ReloadFacts) -> ReloadPlan:
    """Skip when the inputs are what runs, else live-sync when allowed and possible, else
    build."""
    live = facts.live
    known = live.digest if live is not None and not facts.known_failed else facts.known
    if facts.digest == known and not facts.force and not (facts.resync and live is not None):
        return ReloadPlan(
            SKIP, _skip_reason(facts), known,
            check_health=facts.ask_cluster and facts.cluster and not facts.known_failed,
            replace_diverged=facts.ask_cluster and facts.syncer and live is None)
    why = _why_reload(facts, known)
    no_live = _no_live(facts)
    if no_live:
        return ReloadPlan(BUILD, f"{why}; {no_live}", known)
    refused = facts.live_blocked or (FULL_RELOAD_ASKED if facts.force else "")
    if refused:
        return ReloadPlan(BUILD, f"{why}; {refused}", known, live_refused=refused)
    return ReloadPlan(LIVE, f"{why}; syncing into the running containers", known)


def _skip_reason(facts: ReloadFacts) -> str:
    """The words of the `build skipped` line."""
    if facts.known_failed:
        return "inputs unchanged since the last failure; waiting for a fix"
    if facts.changed:
        return "inputs unchanged"
    return "deployed image is current" if facts.cluster else "image is current"


def _why_reload(facts: ReloadFacts, known: str | None) -> str:
    """Why the workload is not up to date."""
    if facts.force:
        return FULL_RELOAD_ASKED
    if facts.digest == known:
        return "a container restarted without the live-synced files"
    if known is None:
        return "nothing deployed yet" if facts.cluster else "no image of these inputs yet"
    if facts.known_failed:
        return "inputs changed since the last failure"
    return "inputs changed"


def _no_live(facts: ReloadFacts) -> str:
    """Why live update is out of the question for this run ("" when it may be tried)."""
    if not facts.allow_live:
        return "live update is off for this command"
    if not facts.syncer:
        return "live update needs a cluster"
    if facts.image is None:
        return "no deployed image to sync into"
    return ""
