"""A real `devloop watch -o json` process for tests: its events, parsed as they arrive."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.conftest import devloop_env


class Watch:
    """Starts `devloop watch` in `root` against `kubeconfig`; `wait()` for events by type."""

    def __init__(self, root: Path, kubeconfig: Path, extra_env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        env = devloop_env(KUBECONFIG=str(kubeconfig), XDG_CACHE_HOME=str(root.parent / "cache"),
                          HOME=str(root.parent), **(extra_env or {}))
        if not any(a.startswith("--ui") or a == "--no-ui" for a in args):
            args = ("--ui-port", "0", *args)  # a free port: tests run side by side
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devloop.cli", "watch", "-o", "json", *args], cwd=root,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"type": "unparsed", "line": line})

    def mark(self) -> int:
        return len(self.events)

    def since(self, mark: int, type: str) -> list[dict]:
        return [e for e in self.events[mark:] if e.get("type") == type]

    def wait(self, type: str, after: int = 0, timeout: float = 120, **match) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events[after:]:
                if e.get("type") == type and all(e.get(k) == v for k, v in match.items()):
                    return e
            time.sleep(0.05)
        # the last events other than log and build lines (they drown what happened), then the
        # last few of those; with service, workload and image, to tell who did what
        events = self.events[after:]
        noisy = ("log", "build.output")
        recent = [(e.get("type"), e.get("service"), e.get("workload"), e.get("image"),
                   e.get("message") or e.get("reason") or e.get("line"))
                  for e in [x for x in events if x.get("type") not in noisy][-25:]
                  + [x for x in events if x.get("type") in noisy][-3:]]
        raise AssertionError(f"no {type} {match} in {timeout}s; last: {recent}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)
        if code < 0 and code != -signal.SIGKILL:  # a crash (SIGABRT, SIGSEGV): what it said
            print(f"devloop watch ended by signal {-code}; its last lines that were not JSON:",
                  [e["line"] for e in self.events if e.get("type") == "unparsed"][-20:])
        return code
