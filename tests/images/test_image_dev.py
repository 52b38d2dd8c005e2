"""The development stage (`target: dev` in devloop.yaml) of each service image.

What devloop's live update relies on: the dev target builds with no registry; a source file
that tar (run as the app user, as devloop's sync does) writes over the image's copy, followed by
the service's run steps from devloop.yaml, is what answers next, in the same container. And the
production stage stays the default, last stage, without any development dependency.
"""

from __future__ import annotations

import fnmatch
import io
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import docker
import docker.errors
import pytest

from devloop.config.loader import load_config
from devloop.image.dockerfile import parse, stages
from tests.images.conftest import (
    APP_UID,
    LABEL,
    REPO,
    SERVICES,
    BuiltImage,
    RunningService,
    docker_build,
    stop_service,
)

# one worker builds the session's :imagetest images (a fixed tag) for all of these
pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("images")]

DEV_TAG = "imagetest-dev"
# next dev compiles a page on its first request: ~20 s at the chart's 500m CPU limit, longer
# on a loaded machine.
DEV_START_TIMEOUT_S = 240
NEW_CODE_TIMEOUT_S = 60


@dataclass(frozen=True)
class SourceEdit:
    """A visible one-line change: `rel` (context path) gets `old` replaced by `new`."""

    rel: str
    dest: str  # where the dev stage's COPY put it in the image
    old: str
    new: str  # "{marker}" is replaced by a unique string the answer must then contain
    url: str


EDITS = {
    "backend": SourceEdit(
        "app/routes/health.py", "/app/app/routes/health.py",
        '{"status": "ok", "database": "ok"}',
        '{"status": "ok", "database": "ok", "probe": "{marker}"}',
        SERVICES["backend"].health_url,
    ),
    "chatbot": SourceEdit(
        "chatbot/app.py", "/app/chatbot/app.py",
        'JSONResponse({"status": "ok"})',
        'JSONResponse({"status": "ok", "probe": "{marker}"})',
        SERVICES["chatbot"].health_url,
    ),
    "frontend": SourceEdit(
        "components/LoginForm.tsx", "/app/components/LoginForm.tsx",
        "<h1>Log in</h1>", "<h1>Log in {marker}</h1>", SERVICES["frontend"].health_url,
    ),
}

# Prints "<status> found|missing" for a GET of argv[1] searched for argv[2]; exit 1 when down.
PY_FIND = """
import sys, urllib.error, urllib.request
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=5); status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
except OSError as e:
    print("down", e); sys.exit(1)
print(status, "found" if sys.argv[2].encode() in body else "missing")
"""
NODE_FIND = """
fetch(process.argv[1], {signal: AbortSignal.timeout(5000)})
  .then(async r => console.log(
    r.status, (await r.text()).includes(process.argv[2]) ? "found" : "missing"))
  .catch(e => { console.log("down", String(e)); process.exit(1); });
"""


def find(running: RunningService, url: str, needle: str) -> str:
    """'<status> found|missing' for url seen from inside the container, or 'down ...'."""
    script = ["python", "-c", PY_FIND] if running.spec.runtime == "python" else [
        "node", "-e", NODE_FIND]
    return running.exec([*script, url, needle])[1].strip()


def wait_for(
    running: RunningService, url: str, needle: str, timeout: float, want: str = "200 found"
) -> str:
    """Poll until the answer is `want` (status and whether needle is in the body); returns the
    last answer."""
    deadline = time.monotonic() + timeout
    answer = ""
    while time.monotonic() < deadline:
        answer = find(running, url, needle)
        if answer == want:
            break
        time.sleep(0.2)
    return answer


def run_steps(service: str, rel: str) -> list[str]:
    """The devloop.yaml `live_update.run` commands a sync of `rel` runs, in order."""
    config = load_config(REPO / "devloop.yaml", env={})
    steps = config.services[service].live_update.run
    return [s.cmd for s in steps
            if not s.trigger or any(fnmatch.fnmatch(rel, pattern) for pattern in s.trigger)]


def sync_file(container_id: str, dest: str, text: str, commands: list[str]) -> None:
    """What devloop's sync does: tar on stdin extracted as the app user, then the run steps."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        data = text.encode()
        info = tarfile.TarInfo(dest.lstrip("/"))
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        archive.addfile(info, io.BytesIO(data))
    script = " && ".join(["tar -xmf - -C /", *commands])
    result = subprocess.run(
        ["docker", "exec", "-i", "-u", str(APP_UID), container_id, "sh", "-c", script],
        input=buf.getvalue(), capture_output=True, timeout=60, check=False,
    )
    assert result.returncode == 0, f"sync into {dest} failed: {result.stderr.decode()}"


@pytest.fixture(scope="module")
def build_dev(
    docker_client: docker.DockerClient, base_images, run_script
) -> Callable[[str], BuiltImage]:
    """Build lumina-<svc>:imagetest-dev (the dev target) once per module, with no network."""
    built: dict[str, BuiltImage] = {}

    def build(service: str) -> BuiltImage:
        if service not in built:
            prepared = run_script(["scripts/offline-deps", service])
            assert prepared.returncode == 0, prepared.stderr
            ref = f"lumina-{service}:{DEV_TAG}"
            started = time.monotonic()
            log = docker_build(docker_client, REPO / "services" / service, ref, target="dev")
            size = docker_client.images.get(ref).attrs["Size"]
            built[service] = BuiltImage(service, ref, log, time.monotonic() - started, size)
        return built[service]

    return build


@pytest.fixture
def dev_container(
    docker_client: docker.DockerClient, build_dev: Callable[[str], BuiltImage]
) -> Iterator[Callable[[str], RunningService]]:
    """Start a service's dev image as the chart runs it (uid 10001, 500m CPU, 512 MiB, no
    network) and wait until its probe path answers 200."""
    started: list[RunningService] = []

    def start(service: str) -> RunningService:
        spec = SERVICES[service]
        container = docker_client.containers.run(
            build_dev(service).ref, detach=True, network_mode="none", environment=spec.env,
            labels=LABEL, nano_cpus=500_000_000, mem_limit="512m",
            name=f"imagetest-dev-{service}-{uuid.uuid4().hex[:6]}",
        )
        running = RunningService(spec, container)
        started.append(running)
        deadline = time.monotonic() + DEV_START_TIMEOUT_S
        while time.monotonic() < deadline:
            container.reload()
            assert container.status != "exited", f"{service} dev exited:\n{running.logs()}"
            answer = running.probe()
            if answer is not None and answer.status == 200:
                return running
            time.sleep(1)
        pytest.fail(f"{service} dev image: {spec.health_url} not 200 within "
                    f"{DEV_START_TIMEOUT_S} s; logs:\n{running.logs()}")

    yield start
    for running in started:
        stop_service(docker_client, running)


@pytest.mark.parametrize("service", ["backend", "chatbot", "frontend"])
def test_dev_target_builds_without_a_registry(service, build_dev) -> None:
    image = build_dev(service)
    said = [line for line in image.log.splitlines() if not line.startswith("Step ")]
    fell_back = [line for line in said if "does not cover" in line]
    assert not fell_back, f"{service}: the dev build fell back to an index: {fell_back}"


@pytest.mark.parametrize("service", ["backend", "chatbot", "frontend"])
def test_synced_source_and_run_steps_make_the_new_code_answer(service, dev_container) -> None:
    edit = EDITS[service]
    running = dev_container(service)
    marker = f"live-{uuid.uuid4().hex[:10]}"
    assert find(running, edit.url, marker) == "200 missing", "marker served before the sync"
    original = (REPO / "services" / service / edit.rel).read_text()
    assert edit.old in original, f"{edit.rel} no longer contains {edit.old!r}: update EDITS"
    changed = original.replace(edit.old, edit.new.replace("{marker}", marker))
    container_id = running.container.id
    sync_file(container_id, edit.dest, changed, run_steps(service, edit.rel))
    answer = wait_for(running, edit.url, marker, NEW_CODE_TIMEOUT_S)
    assert answer == "200 found", f"{service}: new code not served after the sync ({answer});" \
        f" logs:\n{running.logs()}"
    running.container.reload()
    assert running.container.id == container_id and running.container.status == "running"
    _, owner = running.exec(["stat", "-c", "%u", edit.dest])
    assert owner.strip() == str(APP_UID), f"{edit.dest} owned by {owner.strip()} after the sync"


@pytest.mark.parametrize("service", ["backend", "chatbot", "frontend"])
def test_production_stage_is_last_and_carries_no_dev_dependencies(
    service, build_service, docker_client
) -> None:
    built = stages(parse((REPO / "services" / service / "Dockerfile").read_text()))
    assert "dev" in [s.name for s in built[:-1]], f"{service}: no dev stage before the last"
    assert built[-1].name != "dev", f"{service}: the dev stage is the default (last) one"
    image = build_service(service)  # the default target, as scripts/build-images builds it
    if SERVICES[service].runtime == "python":
        probe = "python -c 'import gunicorn' 2>&1; ls /app"
    else:
        probe = "ls /app/node_modules/.bin/next /app/node_modules/typescript 2>&1; ls /app"
    out = docker_client.containers.run(
        image.ref, ["sh", "-c", probe], network_mode="none", remove=True, entrypoint=[],
    ).decode()
    assert "gunicorn.conf.py" not in out and "requirements-dev.txt" not in out, out
    if SERVICES[service].runtime == "python":
        assert "No module named 'gunicorn'" in out, f"{service}: gunicorn in production: {out}"
    else:
        assert out.count("No such file") == 2, f"{service}: next dev tooling in production: {out}"


@pytest.mark.parametrize("service", ["backend", "chatbot"])
def test_a_synced_syntax_error_keeps_the_container_until_the_fix(service, dev_container) -> None:
    """devloop reports the traceback as a problem and waits for the fix: the container must
    neither exit (a restart would run the image's old code) nor need a rebuild."""
    edit = EDITS[service]
    running = dev_container(service)
    original = (REPO / "services" / service / edit.rel).read_text()
    commands = run_steps(service, edit.rel)
    broken_line = len(original.splitlines()) + 1
    sync_file(running.container.id, edit.dest, original + "def broken(:\n", commands)
    answer = wait_for(running, edit.url, "failed to import", NEW_CODE_TIMEOUT_S, "500 found")
    assert answer == "500 found", f"{service}: broken code answered {answer!r}"
    running.container.reload()
    assert running.container.status == "running", f"{service} exited:\n{running.logs()}"
    assert f'File "{edit.dest}", line {broken_line}' in running.logs(80), running.logs(80)
    marker = f"fixed-{uuid.uuid4().hex[:10]}"
    fixed = original.replace(edit.old, edit.new.replace("{marker}", marker))
    sync_file(running.container.id, edit.dest, fixed, commands)
    assert wait_for(running, edit.url, marker, NEW_CODE_TIMEOUT_S) == "200 found", running.logs()


def test_python_services_share_one_gunicorn_config() -> None:
    """One copy of the reload supervisor's settings: the build contexts are separate, so the
    file exists twice and must not drift (service specifics live in each Dockerfile)."""
    backend, chatbot = (REPO / "services" / s / "gunicorn.conf.py" for s in ("backend", "chatbot"))
    assert backend.read_bytes() == chatbot.read_bytes(), "edit both gunicorn.conf.py together"
