"""Problems that point at files: `path:line: error: message`, with repository paths.

A failed Docker build points at its Dockerfile line; a Python traceback or syntax error from a
crashing pod points at the source file, its container path mapped back to the repository through
the service's `path_map` (devloop.yaml) or, by default, the Dockerfile's COPY lines.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from devloop.config.loader import ServiceConfig
from devloop.image import dockerfile as dockerfile_mod
from devloop.image.errors import BuildFailed

_PY_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+)')
_PY_ERROR = re.compile(r"^(?P<type>[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)|"
                       r"KeyboardInterrupt|SystemExit)(: (?P<msg>.*))?$")


def _rel(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return os.path.relpath(path, root)


def build_problem(exc: BuildFailed, root: Path) -> dict[str, Any] | None:
    """The Dockerfile line of a failed build step, or None when the step is unknown."""
    if exc.dockerfile is None or exc.line is None:
        return None
    return {"file": _rel(root, exc.dockerfile), "line": exc.line, "message": exc.reason,
            "kind": "build"}


def container_path_map(service: ServiceConfig) -> dict[str, Path]:
    """Container directory -> local directory, from devloop.yaml or the Dockerfile's COPY lines.

    Only whole-directory copies are used (`COPY app/ /app/app/`, `COPY . /app`); single-file
    copies map that file.
    """
    if service.path_map:
        return dict(service.path_map)
    try:
        text = service.dockerfile.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    mapping: dict[str, Path] = {}
    for sources, dest in dockerfile_mod.copy_sources(dockerfile_mod.parse(text)):
        for src in sources:
            local = (service.context / src).resolve()
            if any(c in src for c in "*?["):
                continue
            if local.is_dir():
                mapping[dest.rstrip("/") or "/"] = local
            elif local.is_file():
                target = dest if not dest.endswith("/") else dest + local.name
                mapping[target] = local
    return mapping


def map_container_path(path: str, mapping: dict[str, Path]) -> Path | None:
    """The local file for a container path, longest mapping first; None when unmapped."""
    for cpath in sorted(mapping, key=len, reverse=True):
        local = mapping[cpath]
        if path == cpath:
            return local
        prefix = cpath.rstrip("/") + "/"
        if path.startswith(prefix):
            candidate = local / path[len(prefix):]
            if candidate.exists():
                return candidate
    return None


def is_traceback_end(line: str) -> bool:
    """Whether a log line is the last line of a Python traceback (`SomeError: message`)."""
    return bool(_PY_ERROR.match(line.strip()))


def traceback_problem(lines: list[str], service: ServiceConfig, root: Path
                      ) -> dict[str, Any] | None:
    """Find the innermost frame of the last Python traceback (or a SyntaxError location) that
    maps to a repository file; return it as a problem."""
    mapping = container_path_map(service)
    frame: tuple[Path, int] | None = None
    message = ""
    for line in lines:
        if m := _PY_FRAME.match(line):
            local = map_container_path(m.group("path"), mapping)
            if local is not None:
                frame = (local, int(m.group("line")))
        elif frame is not None and (m := _PY_ERROR.match(line.strip())):
            message = line.strip()
    if frame is None:
        return None
    return {"file": _rel(root, frame[0]), "line": frame[1],
            "message": message or "the container crashed here", "kind": "crash"}
