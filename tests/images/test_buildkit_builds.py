"""BuildKit builds, for real: `devloop sync --no-deploy` with the Docker CLIs of this machine.

/usr/bin/docker (Debian's 20.10) has BuildKit built in; /usr/local/bin/docker (28.x without the
buildx plugin) refuses it, so a PATH with only the latter simulates a laptop without BuildKit.
The engine has no bridge network: RUN steps run on the host's network (`--network host`).
A heredoc cannot build here: the Dockerfile frontend is the engine's (Debian's dockerd 20.10),
which predates heredocs, and the frontend that has them (`# syntax=docker/dockerfile:1.4`) is an
image on Docker Hub, out of reach; what is tested is that devloop says so at the right line.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest

from devloop.config.loader import load_config
from devloop.image import buildkit as bk
from devloop.image.build import Builder, BuildFailed, DockerUnreachable
from devloop.inputs.digest import ServiceDigest, image_tag
from tests.conftest import devloop_env

BUILDKIT_PATH = "/usr/bin:/bin"  # Debian's docker 20.10: BuildKit built in
NO_BUILDKIT_PATH = "/usr/local/bin"  # docker 28.x, no buildx (/bin is /usr/bin here)
CACHE_MOUNT = ("RUN --mount=type=cache,target=/cache echo from-cache > /cache/x"
               " && cp /cache/x /marker\n")


def _sync(root: Path, path: str = BUILDKIT_PATH, **env: str
          ) -> tuple[int, list[dict[str, Any]], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "devloop.cli", "sync", "--no-deploy", "-o", "json"],
        cwd=root, capture_output=True, text=True, timeout=300,
        env=devloop_env(HOME=str(root.parent), XDG_CACHE_HOME=str(root.parent), PATH=path,
                        **env))
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, events, proc.stdout + proc.stderr


def _one(events: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [e for e in events if e["type"] == kind]
    assert len(found) == 1, (kind, events)
    return found[0]


def _cat(client: docker.DockerClient, image: str, path: str) -> str:
    return client.containers.run(image, ["cat", path], remove=True,
                                 network_mode="none").decode()


def test_a_cache_mount_builds_with_buildkit_and_the_legacy_builder_cannot(
        make_project, docker_client: docker.DockerClient) -> None:
    root = make_project({"app": {"extra": CACHE_MOUNT}})
    code, events, out = _sync(root)
    assert code == 0, out
    assert _one(events, "builder.selected")["builder"] == "buildkit"
    assert "/usr/bin/docker" in _one(events, "builder.selected")["reason"]
    image = _one(events, "build.finished")["image"]
    assert _cat(docker_client, image, "/marker") == "from-cache\n"
    assert docker_client.images.get(image).labels["devloop.service"] == "app"
    assert any(e["type"] == "build.output" and "RUN --mount=type=cache" in e["line"]
               for e in events)

    # the same Dockerfile through the legacy builder (builder: legacy) fails, as it did before
    docker_client.images.remove(image, force=True)
    (root / "devloop.yaml").write_text((root / "devloop.yaml").read_text()
                                       + "builder: legacy\n")
    code, events, out = _sync(root)
    assert code != 0
    assert _one(events, "builder.selected")["builder"] == "legacy"
    assert _one(events, "build.failed")["image"] == image  # same inputs, same tag


def test_a_heredoc_on_an_engine_whose_frontend_predates_them_names_its_line_and_the_fix(
        make_project) -> None:
    extra = "RUN <<EOF\necho made by a heredoc > /hd\nEOF\n"  # Dockerfile lines 4-6
    root = make_project({"app": {"extra": extra}})
    code, events, out = _sync(root)
    assert code != 0, out
    assert _one(events, "builder.selected")["builder"] == "buildkit"
    failed = _one(events, "build.failed")
    assert "unknown instruction" in failed["error"]  # the engine's own words
    assert "predates heredocs" in failed["error"] and "docker/dockerfile:1.4" in failed["error"]
    problem = _one(events, "problem")
    assert problem == {**problem, "file": "services/app/Dockerfile", "line": 4, "kind": "build"}
    assert "Traceback" not in out


def test_a_context_whose_first_entry_has_a_long_name_builds(
        make_project, docker_client: docker.DockerClient) -> None:
    # sorted first in the tar, and over tar's 100-byte name field: a PAX header comes first
    long_name = "A" * 120 + ".txt"
    root = make_project({"app": {"files": {"src/main.txt": "x\n", long_name: "long\n"},
                                 "extra": f"COPY {long_name} /long.txt\n"}})
    code, events, out = _sync(root)
    assert code == 0, out
    assert _one(events, "builder.selected")["builder"] == "buildkit"
    assert _cat(docker_client, _one(events, "build.finished")["image"], "/long.txt") == "long\n"


def test_a_failing_run_step_points_at_its_dockerfile_line(make_project) -> None:
    root = make_project({"app": {"extra": "ENV A=1\nRUN echo about to fail \\\n && exit 3\n"}})
    code, events, out = _sync(root)
    assert code != 0, out
    failed = _one(events, "build.failed")
    assert "exit code: 3" in failed["error"] and "RUN echo about to fail" in failed["error"]
    problem = _one(events, "problem")
    assert problem == {**problem, "file": "services/app/Dockerfile", "line": 5, "kind": "build"}


def test_a_build_secret_is_usable_in_run_and_never_in_events_or_the_image(
        make_project, docker_client: docker.DockerClient, tmp_path: Path) -> None:
    value = f"s3cret-{uuid.uuid4().hex[:12]}"
    file_value = f"filesecret-{uuid.uuid4().hex[:12]}"
    secret_file = tmp_path / "token.txt"
    secret_file.write_text(file_value)
    digest = hashlib.sha256(value.encode()).hexdigest()  # the Dockerfile must not hold it
    extra = ("RUN --mount=type=secret,id=tok --mount=type=secret,id=file"
             " cat /run/secrets/tok /run/secrets/file && test \"$(sha256sum < /run/secrets/tok"
             f' | cut -d" " -f1)" = "{digest}" && echo used > /secret-used\n')
    root = make_project({"app": {"extra": extra, "yaml": (
        "build_secrets:\n  tok: {env: DL_BUILD_TOKEN}\n"
        f"  file: {{file: {secret_file}}}\n")}})
    code, events, out = _sync(root, DL_BUILD_TOKEN=value)
    assert code == 0, out
    image = _one(events, "build.finished")["image"]
    assert _cat(docker_client, image, "/secret-used") == "used\n"
    # the RUN step printed both: the output shows *** (positive control: the line is there)
    assert any(e["type"] == "build.output" and "***" in e["line"] for e in events)
    assert value not in out and file_value not in out
    history = docker_client.api.history(image)
    assert value not in json.dumps(history) and file_value not in json.dumps(history)
    saved = b"".join(docker_client.images.get(image).save(named=True))
    assert value.encode() not in saved and file_value.encode() not in saved
    assert b"/secret-used" in saved or b"secret-used" in saved  # the layers were searched


def test_without_a_buildkit_cli_the_legacy_builder_builds_the_same_tag(
        make_project, docker_client: docker.DockerClient) -> None:
    root = make_project({"app": {"files": {"src/main.txt": "same either way\n"}}})
    code, events, out = _sync(root, NO_BUILDKIT_PATH)
    assert code == 0, out
    selected = _one(events, "builder.selected")
    assert selected["builder"] == "legacy" and "no Docker CLI with BuildKit" in selected["reason"]
    legacy_tag = _one(events, "build.finished")["image"]
    assert _cat(docker_client, legacy_tag, "/app/main.txt") == "same either way\n"
    docker_client.images.remove(legacy_tag, force=True)

    code, events, out = _sync(root, BUILDKIT_PATH)
    assert code == 0, out
    assert _one(events, "builder.selected")["builder"] == "buildkit"
    assert _one(events, "build.finished")["image"] == legacy_tag
    assert _cat(docker_client, legacy_tag, "/app/main.txt") == "same either way\n"


def _kit_processes(text: str) -> list[int]:
    """Processes of this machine whose command line holds `text` (a tag, a step's marker)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline:
                pids.append(int(entry.name))
    return pids


def _gone(text: str, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while _kit_processes(text):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_a_cancelled_build_kills_the_cli(make_project, docker_client: docker.DockerClient
                                         ) -> None:
    marker = f"sleeping-{uuid.uuid4().hex[:8]}"  # never a cached step
    root = make_project({"app": {"extra": f"RUN echo {marker} && sleep 120\n"}})
    svc = load_config(root / "devloop.yaml").services["app"]
    choice = bk.choose("buildkit", {**os.environ, "PATH": BUILDKIT_PATH})
    assert choice.cli is not None, choice.reason
    builder = Builder(docker_client, kit=bk.KitBuilder(choice.cli))
    digest = ServiceDigest(svc)
    digest.scan()
    tag = image_tag(svc.image, digest.digest())
    stop = threading.Event()
    seen: list[str] = []

    def on_line(line: str) -> None:
        seen.append(line)
        if line.endswith(f" {marker}"):
            stop.set()  # a newer save while the RUN step runs

    with pytest.raises(BuildFailed) as err:
        builder.build(digest, tag, on_line, stop)
    assert "cancelled" in str(err.value), seen
    assert _kit_processes(tag) == []
    assert _gone(marker)  # the engine ended the RUN step too (its `sleep 120`)
    assert builder.existing(tag) is None


def test_ctrl_c_during_a_buildkit_build_ends_the_cli_and_devloop(make_project) -> None:
    marker = f"sleeping-{uuid.uuid4().hex[:8]}"  # never a cached step
    root = make_project({"app": {"extra": f"RUN echo {marker} && sleep 120\n"}})
    proc = subprocess.Popen(
        [sys.executable, "-m", "devloop.cli", "sync", "--no-deploy", "-o", "json"], cwd=root,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=devloop_env(HOME=str(root.parent), XDG_CACHE_HOME=str(root.parent),
                        PATH=BUILDKIT_PATH))
    assert proc.stdout is not None
    tag = None
    try:
        for line in proc.stdout:
            event = json.loads(line) if line.startswith("{") else {}
            tag = event.get("image", tag) if event.get("type") == "build.started" else tag
            if event.get("type") == "build.output" and event["line"].endswith(f" {marker}"):
                break  # the RUN step is running
        assert tag is not None and _kit_processes(tag), "the BuildKit CLI is not running"
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, rest
    assert _kit_processes(tag) == []  # the CLI went with devloop, not 120 s later
    assert _gone(marker)  # and the engine ended the RUN step


def test_an_engine_that_does_not_answer_is_unreachable_not_a_failed_build(
        make_project, tmp_path: Path) -> None:
    root = make_project({"app": {}})
    svc = load_config(root / "devloop.yaml").services["app"]
    choice = bk.choose("buildkit", {**os.environ, "PATH": BUILDKIT_PATH})
    assert choice.cli is not None, choice.reason
    dead = f"unix://{tmp_path}/no-engine.sock"
    kit = bk.KitBuilder(choice.cli, {"DOCKER_HOST": dead})
    assert kit.network() is None and kit.host_network is None  # unknown: asked again later
    builder = Builder(docker.from_env(), kit=kit)
    digest = ServiceDigest(svc)
    digest.scan()
    with pytest.raises(DockerUnreachable) as err:
        builder.build(digest, image_tag(svc.image, digest.digest()), lambda _line: None)
    assert dead in str(err.value) and "\n" not in str(err.value)
    assert bk.KitBuilder(choice.cli).network() == "host"  # this engine has no bridge
