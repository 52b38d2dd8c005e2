"""scripts/dev lends the stand-in's context to the user's kubeconfig while it runs (a second
terminal just works) and takes exactly that back when it stops: the helper, run as scripts/dev
runs it, on a temporary HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.standin.clis import tool

ROOT = Path(__file__).resolve().parents[2]
THEIRS = {
    "apiVersion": "v1", "kind": "Config", "preferences": {},
    "clusters": [{"name": "kind-dev", "cluster": {"server": "https://127.0.0.1:6443"}}],
    "users": [{"name": "kind-dev", "user": {"token": "their-token"}}],
    "contexts": [{"name": "kind-dev", "context": {"cluster": "kind-dev", "user": "kind-dev"}}],
    "current-context": "kind-dev",
}
STANDIN = {
    "apiVersion": "v1", "kind": "Config",
    "clusters": [{"name": "devloop-standin", "cluster": {"server": "https://127.0.0.1:16443"}}],
    "users": [{"name": "devloop-standin", "user": {"token": "standin-token"}}],
    "contexts": [{"name": "devloop-standin",
                  "context": {"cluster": "devloop-standin", "user": "devloop-standin"}}],
    "current-context": "devloop-standin",
}


def helper(home: Path, *args: str, kubeconfig: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(home)
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    done = subprocess.run([sys.executable, "-m", "tests.kube_standin.user_kubeconfig", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def names(config: dict, section: str) -> list[str]:
    return [e["name"] for e in config.get(section) or []]


@pytest.fixture
def standin_config(tmp_path: Path) -> Path:
    path = tmp_path / "standin" / "kubeconfig"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(STANDIN))
    return path


def test_added_beside_the_users_context_and_removed_exactly(tmp_path: Path,
                                                            standin_config: Path) -> None:
    home = tmp_path / "home"
    user = home / ".kube" / "config"
    user.parent.mkdir(parents=True)
    user.write_text(yaml.safe_dump(THEIRS))
    user.chmod(0o640)
    record = tmp_path / "standin" / "user-kubeconfig.json"

    said = helper(home, "add", "--from", str(standin_config), "--record", str(record))
    merged = yaml.safe_load(user.read_text())
    for section in ("clusters", "users", "contexts"):
        assert names(merged, section) == ["kind-dev", "devloop-standin"]
    assert merged["current-context"] == "kind-dev"  # theirs stays current...
    assert "--context devloop-standin" in said  # ...and the line says how to reach ours
    assert user.stat().st_mode & 0o777 == 0o640

    helper(home, "remove", "--record", str(record))
    assert yaml.safe_load(user.read_text()) == THEIRS
    assert not record.exists()


def test_a_missing_kubeconfig_is_created_made_current_and_removed_again(
        tmp_path: Path, standin_config: Path) -> None:
    home = tmp_path / "home"
    record = tmp_path / "standin" / "user-kubeconfig.json"
    helper(home, "add", "--from", str(standin_config), "--record", str(record))
    user = home / ".kube" / "config"
    created = yaml.safe_load(user.read_text())
    assert created["current-context"] == "devloop-standin"
    assert user.stat().st_mode & 0o777 == 0o600  # it holds a token
    # A killed run left its record: the next add first undoes it, no duplicates.
    helper(home, "add", "--from", str(standin_config), "--record", str(record))
    assert names(yaml.safe_load(user.read_text()), "contexts") == ["devloop-standin"]
    helper(home, "remove", "--record", str(record))
    assert not user.exists()


def test_a_kubeconfig_without_current_context_gets_ours_then_none_again(
        tmp_path: Path, standin_config: Path) -> None:
    home = tmp_path / "home"
    user = tmp_path / "elsewhere.yaml"  # named by $KUBECONFIG: that file is the one edited
    user.write_text(yaml.safe_dump({**THEIRS, "current-context": ""}))
    record = tmp_path / "standin" / "user-kubeconfig.json"
    helper(home, "add", "--from", str(standin_config), "--record", str(record),
           kubeconfig=f"{user}{os.pathsep}{tmp_path / 'other'}")
    assert yaml.safe_load(user.read_text())["current-context"] == "devloop-standin"
    assert not (home / ".kube").exists()
    helper(home, "remove", "--record", str(record))
    assert yaml.safe_load(user.read_text()) == {**THEIRS, "current-context": ""}


@pytest.mark.docker
def test_a_second_terminal_reaches_the_standin_with_nothing_exported(
        tmp_path: Path, standin_factory) -> None:
    kubectl = tool("kubectl")
    api = standin_factory(run_pods=False)
    ns = api.create_namespace()
    home = tmp_path / "home"
    record = tmp_path / "user-kubeconfig.json"
    helper(home, "add", "--from", str(api.kubeconfig), "--record", str(record))
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(home)
    done = subprocess.run([kubectl, "get", "namespace", ns, "-o", "name"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == f"namespace/{ns}", done.stderr
    helper(home, "remove", "--record", str(record))
    done = subprocess.run([kubectl, "get", "namespace", ns], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0  # gone again
