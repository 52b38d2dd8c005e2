"""scripts/offline-deps fills the folders the offline image builds install from.

These tests need the package registries on the host the first time (to download), like CI.
"""

from __future__ import annotations

import json
import platform
import re

import pytest
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def image_tags() -> set[Tag]:
    """Every wheel tag pip inside the images accepts: CPython 3.11, glibc 2.36 (bookworm)."""
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine(), platform.machine())
    platforms = [f"manylinux_2_{minor}_{arch}" for minor in range(36, 4, -1)]
    platforms += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    tags = set(cpython_tags((3, 11), abis=["cp311"], platforms=platforms))
    return tags | set(compatible_tags((3, 11), "cp311", platforms=platforms))


@pytest.mark.parametrize("service", ["backend", "chatbot"])
def test_wheels_fit_the_image_and_cover_every_pin(service, repo, run_script) -> None:
    result = run_script(["scripts/offline-deps", service])
    assert result.returncode == 0, result.stderr
    wheels = sorted((repo / "services" / service / "wheels").glob("*.whl"))
    assert wheels, f"no wheels in services/{service}/wheels"
    accepted = image_tags()
    unfit = [w.name for w in wheels if not parse_wheel_filename(w.name)[3] & accepted]
    assert not unfit, f"wheels the image's pip would refuse: {unfit}"
    have = {
        (canonicalize_name(name), str(version))
        for name, version, _, _ in (parse_wheel_filename(w.name) for w in wheels)
    }
    requirements = (repo / "services" / service / "requirements.txt").read_text().splitlines()
    pins = {(canonicalize_name(m[1]), m[3]) for m in map(PIN.match, requirements) if m}
    assert pins, f"services/{service}/requirements.txt pins nothing with =="
    assert pins <= have, f"pinned but no wheel: {sorted(pins - have)}"


@pytest.mark.parametrize("service", ["backend", "chatbot", "frontend"])
def test_offline_deps_rerun_changes_nothing(service, repo, run_script) -> None:
    folder = repo / "services" / service / ("offline" if service == "frontend" else "wheels")
    first = run_script(["scripts/offline-deps", service])
    assert first.returncode == 0, first.stderr
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = run_script(["scripts/offline-deps", service])
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    stamp = json.loads((folder / ".offline-deps-stamp").read_text())
    assert all((folder / name).exists() for name in stamp["files"])


def test_offline_deps_names_an_unknown_service(run_script) -> None:
    result = run_script(["scripts/offline-deps", "nosuch"])
    assert result.returncode != 0
    assert "unknown service 'nosuch'" in result.stderr
