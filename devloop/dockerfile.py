"""Just enough Dockerfile parsing to point errors and log lines back at the source.

Used to turn the builder's `Step N/M` into a Dockerfile line, and to map container paths back
to repository paths through COPY/ADD lines (for problem matchers in the editor).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")


@dataclass(frozen=True)
class Instruction:
    line: int  # 1-based line where the instruction starts
    keyword: str  # upper-case: FROM, RUN, COPY ...
    args: str


def parse(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, joining continuation lines, in order."""
    escape = "\\"
    lines = text.splitlines()
    out: list[Instruction] = []
    i = 0
    in_header = True
    while i < len(lines):
        raw = lines[i]
        stripped = raw.strip()
        if in_header and (m := _DIRECTIVE.match(stripped)):
            if m.group(1).lower() == "escape":
                escape = m.group(2)[:1] or escape
            i += 1
            continue
        in_header = False
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        start = i
        parts = []
        while True:
            body = lines[i].rstrip()
            if body.endswith(escape) and i + 1 < len(lines):
                parts.append(body[: -len(escape)])
                i += 1
                while i < len(lines) and (not lines[i].strip() or
                                          lines[i].strip().startswith("#")):
                    i += 1  # comments and blank lines inside a continuation are dropped
                if i >= len(lines):
                    break
                continue
            parts.append(body)
            break
        joined = " ".join(p.strip() for p in parts)
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(start + 1, keyword.upper(), args.strip()))
        i += 1
    return out


def copy_sources(instructions: list[Instruction]) -> list[tuple[list[str], str]]:
    """(sources relative to the context, destination) of COPY/ADD lines that read the context
    (COPY --from=... reads another stage and is skipped)."""
    out = []
    workdir = "/"
    for ins in instructions:
        if ins.keyword == "FROM":
            workdir = "/"
        elif ins.keyword == "WORKDIR":
            workdir = _join(workdir, ins.args.strip())
        elif ins.keyword in ("COPY", "ADD"):
            args = _copy_args(ins.args)
            if not args or any(a.startswith("--from") for a in args[0]):
                continue
            _flags, rest = args
            if len(rest) < 2:
                continue
            out.append((rest[:-1], _join(workdir, rest[-1])))
    return out


def _copy_args(text: str) -> tuple[list[str], list[str]] | None:
    text = text.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            return None
        return [], [str(x) for x in items]
    try:
        words = shlex.split(text)
    except ValueError:
        return None
    flags = [w for w in words if w.startswith("--")]
    rest = [w for w in words if not w.startswith("--")]
    if rest and rest[0].startswith("["):
        return _copy_args(" ".join(rest))
    return flags, rest


def _join(base: str, path: str) -> str:
    if path.startswith("/"):
        return path
    return base.rstrip("/") + "/" + path
