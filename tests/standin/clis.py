"""Runs the real helm and kubectl binaries (scripts/install-helm puts them in .tools/bin) against
a stand-in, with a private helm home so tests never touch the user's."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

TOOLS = Path(__file__).resolve().parents[2] / ".tools" / "bin"


def tool(name: str) -> str:
    found = shutil.which(name, path=f"{TOOLS}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        pytest.skip(f"{name} is not installed (scripts/install-helm puts helm and kubectl in "
                    ".tools/bin)")
    return found


def attempt(standin: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs a client command with the stand-in's kubeconfig; the caller judges the outcome."""
    home = str(standin.standin.state_dir / "helm-home")
    env = {**os.environ, "KUBECONFIG": str(standin.kubeconfig), "HELM_CACHE_HOME": home,
           "HELM_CONFIG_HOME": home, "HELM_DATA_HOME": home}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=90)


def run(standin: Any, *args: str) -> str:
    """Runs a client command that must succeed; returns its stdout."""
    done = attempt(standin, *args)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout
