"""A level-triggered control loop: reconcile on every store change, and at least every period."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .store import Store

log = logging.getLogger("kube_standin.controllers")


class ControlLoop:
    """Runs `reconcile()` in a daemon thread until `stop()`."""

    def __init__(
        self, name: str, store: Store, reconcile: Callable[[], None], period: float = 1.0
    ) -> None:
        self.name = name
        self._store = store
        self._reconcile = reconcile
        self._period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"standin-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            seen = self._store.resource_version
            try:
                self._reconcile()
            except Exception:
                log.exception("%s: reconcile failed", self.name)
                self._stop.wait(0.5)
            if self._store.closed:
                self._stop.wait(self._period)
            else:
                self._store.wait_for_change(seen, self._period)
