"""Just enough Dockerfile parsing to point errors and log lines back at the source.

Used to turn the builder's `Step N/M` into a Dockerfile line, to map container paths back
to repository paths through COPY/ADD lines (for problem matchers in the editor), and to tell
live update which stage an image is and what its COPY/ADD/RUN steps read.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_FLAG = re.compile(r"(--[A-Za-z-]+(?:=\S*)?)\s*")


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
            copy = parse_copy(ins)
            if copy is None or "from" in copy.flags:
                continue
            out.append((list(copy.sources), _join(workdir, copy.dest)))
    return out


@dataclass(frozen=True)
class Stage:
    """One FROM and the instructions up to the next FROM."""

    index: int
    name: str | None  # the AS name, lower-case (stage names are case-insensitive)
    base: str  # the image or earlier stage it starts from, as written
    line: int
    instructions: tuple[Instruction, ...]


def stages(instructions: list[Instruction]) -> list[Stage]:
    """The build stages in order; instructions before the first FROM (global ARGs) belong to
    none."""
    out: list[Stage] = []
    current: list[Instruction] = []
    head: Instruction | None = None

    def close() -> None:
        if head is None:
            return
        words = [w for w in head.args.split() if not w.startswith("--")]
        name = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else None
        out.append(Stage(len(out), name, words[0] if words else "", head.line, tuple(current)))

    for ins in instructions:
        if ins.keyword == "FROM":
            close()
            head, current = ins, []
        elif head is not None:
            current.append(ins)
    close()
    return out


@dataclass(frozen=True)
class CopyArgs:
    """A COPY/ADD line split into its flags, sources and destination (all as written)."""

    keyword: str
    flags: dict[str, str]  # --chown=u:g -> {"chown": "u:g"}; a bare --link -> {"link": ""}
    excludes: tuple[str, ...]  # --exclude=PATTERN, which may repeat
    sources: tuple[str, ...]
    dest: str
    heredoc: bool  # COPY <<EOF: the content is in the Dockerfile, not the context


def parse_copy(ins: Instruction) -> CopyArgs | None:
    """The parts of a COPY/ADD instruction, or None when it is malformed."""
    args = _copy_args(ins.args)
    if not args or len(args[1]) < 2:
        return None
    raw_flags, rest = args
    flags: dict[str, str] = {}
    excludes = []
    for flag in raw_flags:
        name, _, value = flag[2:].partition("=")
        if name == "exclude":
            excludes.append(value)
        else:
            flags[name.lower()] = value
    return CopyArgs(ins.keyword, flags, tuple(excludes), tuple(rest[:-1]), rest[-1],
                    any(s.startswith("<<") for s in rest[:-1]))


def mount_flags(ins: Instruction) -> list[dict[str, str]]:
    """The `--mount=type=...,source=...` options of a RUN line, one dict per mount (the
    default type, bind, is filled in)."""
    out = []
    for word in ins.args.split():
        if not word.startswith("--mount="):
            if not word.startswith("--"):
                break
            continue
        opts = {"type": "bind"}
        for part in word[len("--mount="):].split(","):
            key, _, value = part.partition("=")
            opts[{"src": "source", "dst": "target", "destination": "target"}.get(key, key)] = value
        out.append(opts)
    return out


def join_workdir(workdir: str, path: str) -> str:
    """`path` made absolute against the current WORKDIR, as Docker resolves COPY/WORKDIR."""
    return _join(workdir, path)


def _copy_args(text: str) -> tuple[list[str], list[str]] | None:
    """(flags, sources + destination) of COPY/ADD arguments in shell or JSON form."""
    flags = []
    text = text.strip()
    while m := _FLAG.match(text):  # flags come first, before either form
        flags.append(m.group(1))
        text = text[m.end():]
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            return None
        return flags, [str(x) for x in items]
    try:
        return flags, shlex.split(text)
    except ValueError:
        return None


def _join(base: str, path: str) -> str:
    if path.startswith("/"):
        return path
    return base.rstrip("/") + "/" + path
