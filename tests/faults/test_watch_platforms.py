"""devloop starts and reloads on a system without inotify (macOS, Windows), simulated.

A real `devloop watch` process runs with a sitecustomize on PYTHONPATH that makes importing
`watchdog.observers.inotify_c` raise UnsupportedLibcError, exactly what that import does on
macOS. The native observers of macOS and Windows cannot run here: under the simulation watchdog's
`Observer` is its portable one, so this proves that nothing imports inotify at load time and that
`auto` and `polling` pick a backend that works without it, through a folder rename too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, devloop_env
from tests.watchproc import Watch

POISON = textwrap.dedent("""
    import sys

    class NoInotify:
        # what importing watchdog's inotify bindings does on macOS and Windows
        def find_spec(self, name, path=None, target=None):
            if name == "watchdog.observers.inotify_c":
                from watchdog.utils import UnsupportedLibcError
                raise UnsupportedLibcError("no inotify on this system (simulated)")
            return None

    sys.meta_path.insert(0, NoInotify())
""")


@pytest.fixture
def no_inotify(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "no-inotify-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(POISON)
    env = {"PYTHONPATH": f"{site}:{REPO}"}
    probe = subprocess.run([sys.executable, "-c", "import watchdog.observers.inotify_c"],
                           env=devloop_env(**env), capture_output=True, text=True)
    assert "UnsupportedLibcError" in probe.stderr  # the simulation is in force
    return env


@pytest.mark.parametrize(("setting", "mode"), [("auto", "native"), ("polling", "polling")])
def test_watch_starts_and_reloads_without_inotify(make_project, no_inotify, tmp_path, setting,
                                                  mode):
    root = make_project({"api": {"files": {"src/main.txt": "hello\n",
                                           "src/pkg/a/deep.txt": "deep\n"}}},
                        top=f"quiet_period_ms: 100\nwatch_backend: {setting}\n")
    src = root / "services/api/src"
    watch = Watch(root, tmp_path / "no-kubeconfig", extra_env=no_inotify,
                  args=("--no-deploy", "--no-ui"))
    try:
        ready = watch.wait("watch.ready", timeout=60)
        assert ready["mode"] == mode
        watch.wait("reload.finished", timeout=120, ok=True)
        # a folder with subfolders renamed, then an edit inside it
        mark = watch.mark()
        os.rename(src / "pkg", src / "lib")
        watch.wait("reload.finished", after=mark, timeout=120, ok=True)
        time.sleep(0.5)
        mark = watch.mark()
        (src / "lib/a/deep.txt").write_text("edited after the rename\n")
        watch.wait("reload.finished", after=mark, timeout=120, ok=True)
        time.sleep(0.5)
        mark = watch.mark()
        (root / "services/api/src/main.txt").write_text("saved on a laptop without inotify\n")
        watch.wait("reload.finished", after=mark, timeout=120, ok=True)
    finally:
        code = watch.stop()
    assert code == 130  # Ctrl-C: a clean stop
    text = "".join(e.get("line", "") for e in watch.events if e.get("type") == "unparsed")
    assert "Traceback" not in text and "inotify" not in text
