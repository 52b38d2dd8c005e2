"""Helpers for the dashboard tests: a `devloop watch` with its dashboard, and the page in Chromium.

The watch is the real process (tests/watchproc.py) on the stand-in cluster, serving its
dashboard on a free port (`--ui-port 0`); the address is read from its `dashboard.ready` event,
as a person reads it from the console. Screenshots go to .devloop/screenshots/ (git-ignored).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from selenium.webdriver.remote.webdriver import WebDriver

from tests.watchproc import Watch

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / ".devloop" / "screenshots"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy

# Records every state a card shows, so a state held for a few milliseconds is still seen.
_RECORD_STATES = """
window.__states = {};
const seen = (card) => { const l = (window.__states[card.dataset.service] ||= []);
  if (l[l.length - 1] !== card.dataset.state) l.push(card.dataset.state); };
document.querySelectorAll('.card').forEach(seen);
new MutationObserver(ms => ms.forEach(m => m.addedNodes.forEach(n => {
  if (n.classList && n.classList.contains('card')) seen(n); })))
  .observe(document.getElementById('cards'), {childList: true});
window.__marker = 'same page';
"""
_CARD = "const c = document.querySelector(`.card[data-service=\"${arguments[0]}\"]`);"


# dashboard url -> its token, from `dashboard.ready`'s `open` address (a person opens that one)
_TOKENS: dict[str, str] = {}


def start_watch(root: Path, kubeconfig: Path) -> tuple[Watch, str]:
    watch = Watch(root, kubeconfig, args=("--ui-port", "0"))
    return watch, remember(watch.wait("dashboard.ready", timeout=60))


def remember(ready: dict[str, Any]) -> str:
    """Keep the token of a `dashboard.ready` event for request(); return the dashboard's url."""
    _TOKENS[ready["url"]] = ready["open"].split("?token=", 1)[1]
    return ready["url"]


def open_url(url: str) -> str:
    """The address with the token, as devloop prints it."""
    return f"{url}/?token={_TOKENS[url]}"


def request(url: str, method: str = "GET", headers: dict[str, str] | None = None
            ) -> tuple[int, Any]:
    """(status, parsed JSON body) without raising on 4xx. Reads carry the dashboard's token,
    as the page's do (its cookie); a POST carries only the headers given."""
    headers = dict(headers or {})
    base = next((b for b in _TOKENS if url.startswith(b + "/")), None)
    if method in ("GET", "HEAD") and base is not None:
        headers.setdefault("X-Devloop-Token", _TOKENS[base])
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with _OPENER.open(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


class Page:
    """The dashboard open in the browser."""

    def __init__(self, driver: WebDriver, url: str) -> None:
        self.driver = driver
        self.url = url
        driver.get(open_url(url))
        self.wait(lambda: self.js("return document.getElementById('conn').className") == "on",
                  30, "the page's event stream to connect")
        self.js(_RECORD_STATES)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait(self, predicate: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        self.shot(f"timeout-{what.replace(' ', '-')[:40]}")
        cards = self.js("return document.getElementById('cards').innerText")
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; cards: {cards}")

    def card(self, service: str) -> str:
        return self.js(_CARD + " return c ? c.innerText : '';", service)

    def state(self, service: str) -> str | None:
        return self.js(_CARD + " return c ? c.dataset.state : null;", service)

    def wait_state(self, service: str, state: str, timeout: float = 120) -> None:
        self.wait(lambda: self.state(service) == state, timeout, f"{service} {state}")

    def states_seen(self, service: str) -> list[str]:
        return self.js("return (window.__states || {})[arguments[0]] || [];", service)

    def same_page(self) -> bool:
        return self.js("return window.__marker") == "same page"

    def click(self, service: str, button: str) -> None:
        self.js("document.querySelector(`.card[data-service=\"${arguments[0]}\"] "
                "button.${arguments[1]}`).click();", service, button)

    def log_lines(self) -> list[str]:
        return self.js("return [...document.querySelectorAll('#log .l')].map(e => e.innerText);")

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path
