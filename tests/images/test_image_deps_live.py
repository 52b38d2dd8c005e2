"""Dependency changes installed in a running dev container (issue 21 item 3): the run steps
devloop.yaml gives the backend and the frontend work as the app user, offline, in the dev
images built the plain-Docker way. The backend installs a package that is nowhere in the
image (a wheel made here, synced beside requirements.txt, as devloop syncs a new wheel), so
the venv must be writable by uid 10001; the frontend's npm install must be able to write
node_modules. What bench/bench_deps.py measures through devloop and the stand-in."""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from devloop.config.loader import load_config
from tests.images.conftest import APP_UID, REPO
from tests.images.test_image_dev import build_dev, dev_container  # noqa: F401 - fixtures

# one worker builds the session's :imagetest images (a fixed tag) for all of these
pytestmark = pytest.mark.xdist_group("images")

PROBE = "devloopprobe"


def _run_steps(service: str, trigger: str) -> list[str]:
    """The configured run steps a change to `trigger` runs (from the repo's devloop.yaml)."""
    steps = load_config(REPO / "devloop.yaml", env={}).services[service].live_update.run
    return [s.cmd for s in steps if trigger in s.trigger and "kill" not in s.cmd]


def _wheel(version: str) -> tuple[str, bytes]:
    """A pure-Python wheel of one module, built by hand (no network, no build backend)."""
    name = f"{PROBE}-{version}"
    files = {f"{PROBE}.py": f"VERSION = {version!r}\n".encode(),
             f"{name}.dist-info/METADATA":
                 f"Metadata-Version: 2.1\nName: {PROBE}\nVersion: {version}\n".encode(),
             f"{name}.dist-info/WHEEL":
                 b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                 b"Tag: py3-none-any\n"}
    def digest(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{path},sha256={digest(data)},{len(data)}\n"
                     for path, data in files.items()) + f"{name}.dist-info/RECORD,,\n"
    files[f"{name}.dist-info/RECORD"] = record.encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as whl:
        for path, data in files.items():
            whl.writestr(path, data)
    return f"{name}-py3-none-any.whl", buf.getvalue()


def _sync(container_id: str, files: dict[str, bytes], commands: list[str]) -> str:
    """As devloop's sync: a tar extracted as the app user, then the run steps; their output."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        for dest, data in files.items():
            info = tarfile.TarInfo(dest.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            archive.addfile(info, io.BytesIO(data))
    script = " && ".join(["tar -xmf - -C /", *commands])
    result = subprocess.run(
        ["docker", "exec", "-i", "-u", str(APP_UID), container_id, "sh", "-c", script],
        input=buf.getvalue(), capture_output=True, timeout=300, check=False)
    out = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, f"the run steps failed:\n{out}"
    return out


def _exec(container_id: str, *cmd: str) -> str:
    return subprocess.run(["docker", "exec", "-u", str(APP_UID), container_id, *cmd],
                          capture_output=True, text=True, timeout=60, check=False).stdout


def test_a_new_requirement_is_installed_in_the_running_backend(dev_container) -> None:  # noqa: F811
    running = dev_container("backend")
    cid = running.container.id
    assert PROBE not in _exec(cid, "/opt/venv/bin/pip", "list")  # not there before
    wheel_name, wheel = _wheel("1.0")
    requirements = (REPO / "services/backend/requirements.txt").read_text() + f"{PROBE}==1.0\n"
    _sync(cid, {"/tmp/live/requirements.txt": requirements.encode(),
                f"/tmp/live/wheels/{wheel_name}": wheel}, _run_steps("backend", "requirements.txt"))
    said = _exec(cid, "/opt/venv/bin/python", "-c", f"import {PROBE}; print({PROBE}.VERSION)")
    assert said.strip() == "1.0"
    assert running.probe() is not None and running.probe().status == 200  # still serving


def test_a_package_json_change_is_installed_in_the_running_frontend(dev_container) -> None:  # noqa: F811
    running = dev_container("frontend")
    cid = running.container.id
    original = (REPO / "services/frontend/package.json").read_text()
    changed = original.replace('"react-dom": "19.3.1"',
                               '"react-dom": "19.3.1",\n    "scheduler": "0.28.0"', 1)
    assert changed != original
    _sync(cid, {"/app/package.json": changed.encode()}, _run_steps("frontend", "package.json"))
    listed = _exec(cid, "npm", "ls", "scheduler", "--depth=0")
    assert "scheduler@0.28.0" in listed, listed
    assert running.probe() is not None and running.probe().status == 200
    assert Path(REPO / "services/frontend/package.json").read_text() == original
