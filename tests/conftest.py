"""Shared fixtures: a real Docker Engine and small FROM-scratch projects to build; the tier
of every test, from its directory (README "Tests")."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from devloop.image.build import LABEL_CHECKOUT, LABEL_SERVICE, checkout_id

# The stand-in's fixtures (standin, shared_standin, standin_factory, busybox_image, ...), once
# for the whole session: a session fixture imported into several conftest.py files would be
# set up once per directory.
pytest_plugins = ["tests.kube_standin.fixtures"]

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
BUSYBOX = Path("/bin/busybox")
# tests/unit: no Docker, no network, no daemons; tests/e2e: whole stacks on the stand-in;
# every other directory: integration (a Docker Engine, the stand-in, real servers).
TIER_OF_DIRECTORY = {"unit": "unit", "e2e": "e2e"}


def tier_of(path: Path) -> str:
    """unit, integration or e2e: the first directory under tests/ decides."""
    parts = path.resolve().relative_to(TESTS).parts
    return TIER_OF_DIRECTORY.get(parts[0], "integration") if len(parts) > 1 else "integration"


TIER_ORDER = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every test with its tier, so `-m unit` or `-m "not e2e"` select by directory, and
    runs the tiers cheapest first (a broken rule fails in seconds, not after the stacks)."""
    tiers = {item: tier_of(item.path) for item in items}
    for item, tier in tiers.items():
        item.add_marker(tier)
    items.sort(key=lambda item: TIER_ORDER.index(tiers[item]))


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RUN_STARTED] = int(time.time())
    if not hasattr(config, "workerinput"):  # xdist starts its workers later: they inherit it
        fd, path = tempfile.mkstemp(prefix="devloop-test-checkouts-")
        os.close(fd)
        os.environ[CHECKOUTS_FILE] = path


def note_checkout(config_path: Path) -> None:
    """Remember a checkout a test made (a copy of the Lumina stack), so the sweep after the
    run removes the images devloop built for it (their devloop.checkout label names it)."""
    if path := os.environ.get(CHECKOUTS_FILE):
        with open(path, "a") as f:  # one short line, appended in one write by any worker
            f.write(checkout_id(config_path) + "\n")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Once the whole run is over (not in each xdist worker): remove the images the tests left
    behind: about 90 a run (a test's images are untagged while its pods still use them and
    stayed as dangling images; a Lumina copy's images kept their tags), and every build and
    image list of the engine slows with the count (a busybox build 0.22 s -> 0.33 s with 1,000
    more images)."""
    config = session.config
    if hasattr(config, "workerinput"):
        return
    checkouts: set[str] = set()
    if noted := os.environ.pop(CHECKOUTS_FILE, None):
        with contextlib.suppress(OSError):
            checkouts = set(Path(noted).read_text().split())
            Path(noted).unlink()
    if RUN_STARTED not in config.stash or config.getoption("markexpr") == "unit":
        return  # the unit tier never talks to Docker
    with contextlib.suppress(docker.errors.DockerException):
        client = docker.from_env()
        try:
            config.stash[IMAGES_REMOVED] = sweep_test_images(
                client, config.stash[RUN_STARTED], checkouts)
        finally:
            client.close()


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if IMAGES_REMOVED in config.stash:
        terminalreporter.write_line(
            f"removed {config.stash[IMAGES_REMOVED]} images and tags the tests left behind")


RUN_STARTED = pytest.StashKey[int]()
IMAGES_REMOVED = pytest.StashKey[int]()
CHECKOUTS_FILE = "DEVLOOP_TEST_CHECKOUTS"  # where note_checkout writes; set for one run
OWN_CHECKOUT = checkout_id(REPO / "devloop.yaml")  # the developer's own `devloop watch` builds


def sweep_test_images(client: docker.DockerClient, since: int,
                      checkouts: frozenset[str] | set[str] = frozenset()) -> int:
    """Remove what tests leave in the engine: images devloop built for the checkouts tests made
    (`checkouts`, from note_checkout: a Lumina copy's lumina-*:dl-... images, about 25 a run),
    untagged images devloop built (whenever they were made: a build that hits the cache returns
    an image of an earlier run), and the test-named tags (dltest-) of images made since `since`
    (not those of a test run beside this one; by name, so an image that also has another tag
    keeps it). Kept: images of this checkout (scripts/dev beside the tests), base images, the
    stand-in's shared images, and any image a container still uses. Returns how many images
    and tags were removed."""
    removed = 0
    for image in client.api.images():  # tagged and dangling ones (not intermediate layers)
        labels = image.get("Labels") or {}
        checkout = labels.get(LABEL_CHECKOUT)
        tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
        if checkout in checkouts and checkout != OWN_CHECKOUT:
            refs = [image["Id"]]  # the label makes the image that checkout's alone
        elif tags:
            refs = [t for t in tags if "dltest-" in t] if image["Created"] >= since else []
        else:
            ours = LABEL_SERVICE in labels and checkout != OWN_CHECKOUT
            refs = [image["Id"]] if ours else []
        for ref in refs:
            with contextlib.suppress(docker.errors.DockerException):
                client.api.remove_image(ref, force=bool(tags))
                removed += 1
    return removed


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """The machine's Docker Engine; tests that need it fail loudly when it is absent (CI
    starts one: .ci/run), rather than skipping silently."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"no Docker Engine reachable ({exc}); start one with scripts/start-dockerd")
    yield client
    client.close()


@pytest.fixture
def image_prefix(docker_client: docker.DockerClient) -> Iterator[str]:
    """A unique image-name prefix; every image under it is removed after the test."""
    prefix = f"dltest-{uuid.uuid4().hex[:8]}"
    yield prefix
    remove_tags_naming(docker_client, prefix)


def remove_tags_naming(client: docker.DockerClient, name: str) -> None:
    """Remove every tag that contains `name` (a test's unique image name or prefix), pushed
    ones such as 127.0.0.1:5000/dltest-.../app too. An image a container still uses stays
    untagged; the sweep after the run removes it."""
    try:
        tags = [t for img in client.api.images() for t in img.get("RepoTags") or []]
    except docker.errors.DockerException:
        return  # the engine is gone (a test stopped it): nothing to clean
    for tag in tags:
        if name in tag:
            with contextlib.suppress(docker.errors.DockerException):
                client.images.remove(tag, force=True)


CAT_APP = '["/bin/sh","-c","cat /app/*"]'


def scratch_dockerfile(src: str, extra: str = "", cmd: str = CAT_APP) -> str:
    """A Dockerfile that needs no registry: busybox copied into an empty image."""
    return (
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox","--install","-s","/bin"]\n'
        f"{extra}"
        f"COPY {src} /app/\n"
        f"CMD {cmd}\n"
    )


def busybox_context(ctx: Path, files: dict[str, str], extra: str = "", cmd: str = CAT_APP
                    ) -> Path:
    """A service's build context that needs no registry: the host's busybox, `files` (relative
    to `ctx`; its src/ is what the image serves under /app) and a scratch Dockerfile."""
    (ctx / "src").mkdir(parents=True, exist_ok=True)
    shutil.copy(BUSYBOX, ctx / "busybox")
    for rel, text in files.items():
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        (ctx / rel).write_text(text)
    (ctx / "Dockerfile").write_text(scratch_dockerfile("src/", extra, cmd))
    return ctx


@pytest.fixture
def make_project(tmp_path: Path, image_prefix: str):
    """Create a repo with services under services/<name> and a devloop.yaml; returns a
    function(services: dict[name, dict(extra_dockerfile=..., files=..., yaml=...)]) -> root."""

    def make(services: dict[str, dict], top: str = "quiet_period_ms: 100\n") -> Path:
        root = tmp_path / "repo"
        lines = ["version: 1", "namespace: lumina", *top.strip().splitlines(), "services:"]
        for name, spec in services.items():
            ctx = busybox_context(root / "services" / name,
                                  spec.get("files", {"src/main.txt": f"hello from {name}\n"}),
                                  spec.get("extra", ""))
            if spec.get("dockerfile"):
                (ctx / "Dockerfile").write_text(spec["dockerfile"])
            if "dockerignore" in spec:
                (ctx / ".dockerignore").write_text(spec["dockerignore"])
            lines += [f"  {name}:", f"    context: services/{name}",
                      f"    image: {image_prefix}-{name}"]
            lines += [f"    {line}" for line in spec.get("yaml", "").strip().splitlines()]
        (root / "devloop.yaml").write_text("\n".join(lines) + "\n")
        return root

    return make


def devloop_env(**extra: str) -> dict[str, str]:
    """A minimal environment for devloop subprocesses (no kube or devloop settings leak in from
    the developer's shell), keeping how to reach the Docker Engine."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    env.update({k: v for k, v in os.environ.items() if k.startswith("DOCKER_")})
    env.update(extra)
    return env
