"""Which pod log lines to show: devloop.yaml `logs` filters, probe lines, build summaries.

Plain functions and small value types, so the stream code (podlogs), the renderers and
`devloop status` share one definition of "a probe line" and of the configured filters.

- Configured filters (`logs: {include: [...], exclude: [...]}`) drop lines for every output:
  a line must match one `include` regex (when there are any) and no `exclude` regex.
- Probe lines are the kubelet's own requests, recognised from the pod spec: a request line for
  a liveness/readiness/startup probe's httpGet path (`GET /api/health HTTP/1.1`,
  `GET /health 200`), or any line naming the kubelet's user agent `kube-probe/`. Other
  requests to the same path look alike in most access logs; folding them too is the price of
  not needing the app's log format.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PROBE_KINDS = ("livenessProbe", "readinessProbe", "startupProbe")


@dataclass(frozen=True)
class LogFilter:
    """devloop.yaml `services.<name>.logs`: regexes searched anywhere in the line."""

    include: tuple[re.Pattern[str], ...] = ()
    exclude: tuple[re.Pattern[str], ...] = ()

    def keeps(self, line: str) -> bool:
        """True when the line passes: matches an include (if any) and no exclude."""
        if self.include and not any(p.search(line) for p in self.include):
            return False
        return not any(p.search(line) for p in self.exclude)

    def __bool__(self) -> bool:
        return bool(self.include or self.exclude)


def probe_paths(pod: Mapping[str, Any], container: str) -> tuple[str, ...]:
    """The httpGet paths of `container`'s probes in a pod (API JSON, camelCase keys)."""
    paths: list[str] = []
    for spec in (pod.get("spec") or {}).get("containers") or []:
        if spec.get("name") != container:
            continue
        for kind in PROBE_KINDS:
            http_get = (spec.get(kind) or {}).get("httpGet")
            if isinstance(http_get, Mapping):
                path = str(http_get.get("path") or "/")
                if path not in paths:
                    paths.append(path)
    return tuple(paths)


def probe_matcher(paths: Iterable[str]) -> re.Pattern[str]:
    """A regex that finds probe lines: `GET <path>` (or HEAD) as a whole request target, with
    an optional query, followed by a space, a quote or the end; or the `kube-probe/` agent.
    `GET /` matches the root only, never `GET /users`."""
    alternatives = "|".join(re.escape(p) for p in sorted(set(paths), key=len, reverse=True))
    request = rf"\b(?:GET|HEAD) (?:{alternatives})(?:\?\S*)?(?=[\s\"']|$)|" if alternatives \
        else ""
    return re.compile(rf"{request}\bkube-probe/")


def is_probe_line(line: str, matcher: re.Pattern[str] | None) -> bool:
    return matcher is not None and matcher.search(line) is not None


def count_probe_lines(lines: Iterable[str], matcher: re.Pattern[str]) -> int:
    return sum(1 for line in lines if matcher.search(line))


_STEP = re.compile(r"^Step (\d+)/(\d+) : ")
_CACHED = re.compile(r"^\s*---> Using cache\b")
_KIT_STEP = re.compile(r"^#\d+ \[[^\]]*\d+/\d+\] ")  # BuildKit plain progress (image.buildkit)
_KIT_CACHED = re.compile(r"^#\d+ CACHED$")


@dataclass
class BuildTally:
    """What a docker build printed (classic builder or BuildKit's plain progress, each step
    named once), for the one-line console summary."""

    steps: int = 0
    cached: int = 0

    def add(self, line: str) -> None:
        if m := _STEP.match(line):
            self.steps = max(self.steps, int(m.group(2)))
        elif _CACHED.match(line) or _KIT_CACHED.match(line):
            self.cached += 1
        elif _KIT_STEP.match(line):
            self.steps += 1

    def summary(self) -> str:
        """`12 steps, 9 cached` (empty when the output named no steps)."""
        if not self.steps:
            return ""
        return f"{self.steps} step{'s' if self.steps != 1 else ''}, {self.cached} cached"
