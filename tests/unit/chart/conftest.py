"""Fixtures for the Helm chart tests: the real helm binary and renders shared per session.

Rendering is deterministic and takes ~100 ms, so the default render is done once and every
test reads the same parsed objects; tests that need other values render on their own.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
CHART_DIR = REPO_ROOT / "k8s"
HELM_BIN = REPO_ROOT / ".tools" / "bin" / "helm"
INSTALL_HELM = REPO_ROOT / "scripts" / "install-helm"
RELEASE = "lumina"
NAMESPACE = "lumina"
# A throwaway value for tests: the chart refuses to render without some JWT key.
TEST_JWT = "test-only-jwt-key"


@dataclass(frozen=True)
class HelmResult:
    """Outcome of one helm invocation, kept whole so failures can show stderr."""

    returncode: int
    stdout: str
    stderr: str


class Helm:
    """The real helm binary, invoked on the repository's chart."""

    def __init__(self, binary: Path, chart: Path) -> None:
        self.binary = binary
        self.chart = chart

    def run(self, *args: str) -> HelmResult:
        proc = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, timeout=60, check=False
        )
        return HelmResult(proc.returncode, proc.stdout, proc.stderr)

    def template(self, *args: str, namespace: str = NAMESPACE) -> HelmResult:
        """`helm template lumina k8s --namespace <ns> <args>`, the command devloop runs."""
        return self.run("template", RELEASE, str(self.chart), "--namespace", namespace, *args)

    def render(self, *args: str) -> Manifests:
        """Render with the test JWT key plus `args`; a failed render fails the test."""
        result = self.template("--set", f"backend.secrets.jwtSecretKey={TEST_JWT}", *args)
        assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
        return Manifests.parse(result.stdout)


@dataclass(frozen=True)
class Manifests:
    """The objects of one render, addressable by kind and name."""

    objects: tuple[dict, ...]
    text: str

    @classmethod
    def parse(cls, text: str) -> Manifests:
        return cls(tuple(doc for doc in yaml.safe_load_all(text) if doc), text)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.objects)

    def of_kind(self, kind: str) -> list[dict]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def get(self, kind: str, name: str) -> dict:
        matches = [obj for obj in self.of_kind(kind) if obj["metadata"]["name"] == name]
        assert len(matches) == 1, f"expected one {kind} {name!r}, found {len(matches)}"
        return matches[0]

    def container(self, deployment: str) -> dict:
        """The single container of a Deployment (devloop patches it by name)."""
        containers = self.get("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1, f"Deployment {deployment} has {len(containers)} containers"
        return containers[0]


def _helm_binary() -> Path:
    """The repo's pinned helm; installed by scripts/install-helm when missing (as in CI)."""
    if not HELM_BIN.exists():
        subprocess.run([str(INSTALL_HELM)], check=True, timeout=300)
    return HELM_BIN


@pytest.fixture(scope="session")
def helm() -> Helm:
    return Helm(_helm_binary(), CHART_DIR)


@pytest.fixture(scope="session")
def rendered(helm: Helm) -> Manifests:
    """The default render: `helm template lumina k8s -n lumina --set ...jwtSecretKey=...`."""
    return helm.render()
