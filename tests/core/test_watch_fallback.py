"""When the kernel refuses inotify watches (ENOSPC), devloop says how to fix it and polls."""

from __future__ import annotations

import errno
import time

from watchdog.observers import inotify_c

from devloop.ignore import IgnoreRules
from devloop.watch import INOTIFY_LIMIT_HELP, TreeWatcher, WatchRoot


def test_enospc_explains_the_sysctl_and_falls_back_to_polling(tmp_path, monkeypatch):
    # Exhausting the real, machine-wide fs.inotify.max_user_watches would break every other
    # process on the machine, so the kernel's refusal is simulated at the watch call.
    def refuse(self, path, mask):
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(inotify_c.Inotify, "_add_watch", refuse)
    (tmp_path / "src").mkdir()
    (tmp_path / "node_modules/x").mkdir(parents=True)
    changes, warnings = [], []
    rules = IgnoreRules(tmp_path)
    watcher = TreeWatcher([WatchRoot(tmp_path, rules.prunes_dir)], changes.extend,
                          warnings.append, poll_interval=0.1)
    listed = []
    original = watcher._listdir
    watcher._listdir = lambda p: (listed.append(p), original(p))[1]
    watcher.start()
    try:
        assert watcher.mode == "polling"
        assert warnings == [INOTIFY_LIMIT_HELP]
        assert "sysctl fs.inotify.max_user_watches" in warnings[0]
        time.sleep(0.3)
        (tmp_path / "src/a.py").write_text("x")
        deadline = time.monotonic() + 5
        while not any(p.name == "a.py" for p in changes) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(p.name == "a.py" for p in changes)
        # polling never lists ignored directories
        assert not any("node_modules" in str(p) for p in listed)
    finally:
        watcher.stop()
