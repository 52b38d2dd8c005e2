"""Plain stand-ins for the three seams of devloop.loop.seams, so every branch of a reload runs
in a unit test without Docker or a cluster.

Each fake records its calls (`calls`: method name and the arguments that matter) and raises
what a test scripted for a method, in order (`fail`): an exception, or a callable returning
one (it may first edit a file, to act "while the build runs"), or returning None to let the
call succeed after its side effect. The failures are the real ones (BuildFailed,
NeedRebuild, DeployFailed...), passed in by the test: this module imports neither Docker nor
Kubernetes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devloop.vocab import OK, LiveState

if TYPE_CHECKING:
    from devloop.config.loader import Config, ServiceConfig
    from devloop.inputs.digest import ServiceDigest

Failure = BaseException | Callable[[], BaseException | None]


class _Scripted:
    """Calls recorded in order; failures scripted per method, each used once."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self._failures: dict[str, list[Failure]] = {}
        self._lock = threading.Lock()  # the pipeline calls from worker threads

    def fail(self, method: str, *failures: Failure) -> None:
        """The next calls of `method` raise these, one each (then it works again)."""
        if not callable(getattr(self, method, None)):
            raise AttributeError(f"{type(self).__name__} has no method {method}")
        self._failures.setdefault(method, []).extend(failures)

    def called(self, method: str) -> list[tuple[Any, ...]]:
        """The arguments of every call of `method`, oldest first."""
        return [c[1:] for c in self.calls if c[0] == method]

    def _step(self, method: str, *args: Any) -> None:
        with self._lock:
            self.calls.append((method, *args))
            queued = self._failures.get(method)
            failure = queued.pop(0) if queued else None
        if failure is None:
            return
        exc = failure if isinstance(failure, BaseException) else failure()
        if exc is not None:
            raise exc


@dataclass(frozen=True)
class FakeBuilt:
    image_id: str
    seconds: float = 0.0


class FakeBuilder(_Scripted):
    """An ImageBuilder whose engine holds `images` (tags); a build adds its tag."""

    def __init__(self, images: set[str] | None = None) -> None:
        super().__init__()
        self.images: set[str] = set(images or ())
        self.prunable: list[str] = []  # tags prune() removes (those not kept)

    def existing(self, tag: str) -> str | None:
        self._step("existing", tag)
        return f"sha256:{tag}" if tag in self.images else None

    def build(self, digest: ServiceDigest, tag: str, on_line: Callable[[str], None],
              stop: threading.Event | None = None) -> FakeBuilt:
        on_line(f"building {tag}")
        self._step("build", tag)
        self.images.add(tag)
        return FakeBuilt(f"sha256:{tag}")

    def prune(self, service: str, keep: set[str], image: str | None = None,
              referenced: Callable[[], set[str] | None] | None = None) -> list[str]:
        self._step("prune", service, frozenset(keep))
        removed = [t for t in self.prunable if t not in keep]
        if removed and referenced is not None:
            refs = referenced()
            removed = [] if refs is None else [t for t in removed if t not in refs]
        self.images.difference_update(removed)
        return removed


class FakeDeployer(_Scripted):
    """A Deployer whose cluster runs `deployed` ({service: digest})."""

    def __init__(self, deployed: dict[str, str] | None = None) -> None:
        super().__init__()
        self.deployed: dict[str, str] = dict(deployed or {})
        self.referenced: set[str] | None = set()  # what referenced_images() answers
        self.manifests_outcome = OK

    def reconfigure(self, config: Config) -> None:
        self._step("reconfigure")

    def deployed_digest(self, service: ServiceConfig) -> str | None:
        self._step("deployed_digest", service.name)
        return self.deployed.get(service.name)

    def deploy(self, service: ServiceConfig, tag: str, digest: str,
               stop: threading.Event) -> None:
        self._step("deploy", service.name, tag)
        self.deployed[service.name] = digest

    def check_health(self, service: ServiceConfig, stop: threading.Event) -> None:
        self._step("check_health", service.name)

    def referenced_images(self) -> set[str] | None:
        self._step("referenced_images")
        return self.referenced

    def apply_manifests(self, stop: threading.Event) -> str:
        self._step("apply_manifests")
        return self.manifests_outcome


class FakeLiveUpdate(_Scripted):
    """A LiveUpdate over one running container per service: a sync "copies" the sources now
    into it (the fake keeps no file records, so nothing is counted ahead of the image)."""

    def __init__(self, recovered: LiveState | None = None,
                 diverged: list[str] | None = None) -> None:
        super().__init__()
        self.container = "docker://fake-container"
        self.recovered = recovered  # what recover() finds on the pods
        self.diverged = list(diverged or ())  # pods replace_diverged() deletes
        self.images: list[str] = []  # digests record_image() was told about

    def record_image(self, digest: ServiceDigest, value: str) -> None:
        self._step("record_image", value)
        self.images.append(value)

    def recover(self, svc: ServiceConfig, digest: ServiceDigest, value: str,
                image: str) -> LiveState | None:
        self._step("recover", svc.name, value, image)
        return self.recovered

    def replace_diverged(self, svc: ServiceConfig, value: str) -> list[str]:
        self._step("replace_diverged", svc.name, value)
        return list(self.diverged)

    def sync(self, svc: ServiceConfig, digest: ServiceDigest, value: str, image: str,
             live: LiveState | None) -> LiveState:
        self._step("sync", svc.name, value, image)
        return LiveState(value, image, digest.context_files(), frozenset({self.container}), 0)
