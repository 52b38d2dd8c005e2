"""Live update, the pure half: which files can be copied into a running container, or why only
a rebuild will do.

Sync rules are inferred from the Dockerfile like Skaffold does (the COPY/ADD lines of the stage
that is running), but more cautiously: a file a RUN step may have read (copied before a RUN, or
into another stage the image copies from) is a rebuild trigger, because syncing it would leave
what the RUN produced stale. Everything here is a function of the texts and file maps the caller
passes in; the copying itself is `containerupdate`'s job.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from docker.utils.build import PatternMatcher  # .dockerignore syntax, as devloop.inputs.ignore uses

from devloop.config.loader import LiveUpdateConfig, RunStep
from devloop.image.dockerfile import (
    CopyArgs,
    Instruction,
    Stage,
    join_workdir,
    mount_flags,
    parse,
    parse_copy,
    stages,
)

# Rebuild triggers of every service (.dockerignore syntax, relative to the context): what
# dependency installs read. A change to one of them needs the image's RUN steps again.
DEFAULT_FALL_BACK_ON: tuple[str, ...] = (
    "Dockerfile", ".dockerignore",
    "**/requirements*.txt", "**/pyproject.toml", "**/setup.py", "**/setup.cfg", "**/Pipfile",
    "**/Pipfile.lock", "**/poetry.lock", "**/uv.lock",
    "**/package.json", "**/package-lock.json", "**/npm-shrinkwrap.json", "**/yarn.lock",
    "**/pnpm-lock.yaml",
    "**/go.mod", "**/go.sum", "**/Gemfile", "**/Gemfile.lock", "**/Cargo.toml", "**/Cargo.lock",
)
_ARCHIVE = re.compile(r"\.(tar|tar\.gz|tgz|tar\.bz2|tbz2?|tar\.xz|txz|tar\.zst|tzst)$", re.I)
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://|^git@", re.I)
_VAR = re.compile(r"\$(?:\{([A-Za-z_]\w*)(?:(:?[-+])([^}]*))?\}|([A-Za-z_]\w*))")


@dataclass(frozen=True)
class SyncTarget:
    """Context path `src` lands at container path `dest`: a file at `dest` (or inside it when
    `into_dir`), a directory's files below `dest`. `src` may hold Docker wildcards."""

    src: str  # context-relative posix path or pattern; "" = the whole context
    dest: str
    line: int | None  # Dockerfile line of the COPY/ADD (None for devloop.yaml rules)
    chown: str | None
    into_dir: bool = False  # the COPY's dest is a directory (trailing /, several sources, ...)
    exclude: tuple[str, ...] = ()  # COPY --exclude patterns
    instruction: str = ""  # the Dockerfile line as written, for hints

    def container_path(self, rel: str) -> str | None:
        """Where context file `rel` lands through this rule, or None if the rule skips it."""
        rest = _under(self.src, rel)
        if rest is None:
            return None
        if self.exclude and PatternMatcher(list(self.exclude)).matches(rest or rel):
            return None
        if not rest:
            return posixpath.join(self.dest, posixpath.basename(rel)) if self.into_dir \
                else self.dest
        return posixpath.join(self.dest, rest)


@dataclass(frozen=True)
class LiveRules:
    """What a service may sync, and what forces a rebuild."""

    sync: tuple[SyncTarget, ...]
    fall_back_on: tuple[str, ...]  # defaults + the Dockerfile + paths RUN steps read + config
    run: tuple[RunStep, ...]
    why: tuple[tuple[str, str], ...] = ()  # (trigger pattern, why it is one) for reasons


@dataclass(frozen=True)
class FileCopy:
    rel: str  # context-relative source
    dest: str  # absolute container path


@dataclass(frozen=True)
class LivePlan:
    copies: tuple[FileCopy, ...]
    deletes: tuple[str, ...]  # absolute container paths
    run: tuple[str, ...]  # commands to run after the copy
    files: dict[str, str]  # {rel: sha} the container holds after the plan
    # context paths whose copy in the container this plan writes or removes (what an
    # interrupted sync leaves unknown); not part of equality
    changed: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Rebuild:
    reason: str  # one line naming the path and why


# --- rules from the Dockerfile ------------------------------------------------------------------


def rules_for(dockerfile_text: str, dockerfile_rel: str | None, target: str | None,
              config: LiveUpdateConfig, build_args: Mapping[str, str] | None = None
              ) -> LiveRules | str:
    """The live-update rules of a service, or one line saying why it can only be rebuilt.

    The image is the `target` stage (else the last one) with the stages it starts FROM. Its
    COPY/ADD lines after its last RUN become sync rules (unless devloop.yaml lists `sync`);
    context paths copied before a RUN, bind-mounted into a RUN, or copied into a stage the
    image copies from are rebuild triggers."""
    if not config.enabled:
        return "live update is off for this service (live_update: false)"
    df = dockerfile_rel or "Dockerfile"
    instructions = parse(dockerfile_text)
    all_stages = stages(instructions)
    if not all_stages:
        return f"{df} has no FROM line"
    if target:
        final = next((s for s in all_stages if s.name == target.lower()), None)
        if final is None:
            return f"{df} has no stage named '{target}' (devloop.yaml target)"
    else:
        final = all_stages[-1]
    env = dict(build_args or {})
    global_args = _global_args(instructions, env)
    chain = _chain(final, all_stages)
    scan = _Scan(df, global_args, env)
    scan.chain([ins for stage in chain for ins in stage.instructions])
    for stage in _dependencies(chain, all_stages):
        scan.dependency(stage)
    if config.sync:
        sync = tuple(SyncTarget(r.src, posixpath.normpath(r.dest), None, None,
                                into_dir=r.dest.endswith("/") and r.dest != "/")
                     for r in config.sync)
    elif scan.sync:
        sync = tuple(scan.sync)
    else:
        where = f"stage '{final.name}'" if final.name else "the last stage"
        return (f"{df}: {where} copies no source file from the context after its last RUN,"
                " so nothing can be synced (add live_update.sync to devloop.yaml)")
    patterns = _unique([*DEFAULT_FALL_BACK_ON, *([dockerfile_rel] if dockerfile_rel else []),
                        *(p for p, _ in scan.why), *config.fall_back_on])
    return LiveRules(sync, tuple(patterns), config.run, tuple(scan.why))


class _Scan:
    """Walks a stage's instructions keeping WORKDIR and variables, sorting context reads into
    sync rules and rebuild triggers."""

    def __init__(self, df: str, global_args: dict[str, str], build_args: dict[str, str]) -> None:
        self.df = df
        self.global_args = global_args
        self.build_args = build_args
        self.sync: list[SyncTarget] = []
        self.why: list[tuple[str, str]] = []

    def chain(self, instructions: list[Instruction]) -> None:
        runs = [i for i, ins in enumerate(instructions) if ins.keyword == "RUN"]
        last_run = runs[-1] if runs else -1
        env: dict[str, str] = {}
        workdir = "/"
        dirs = {"/"}
        for i, ins in enumerate(instructions):
            workdir = self._track(ins, env, workdir, dirs)
            if ins.keyword == "RUN":
                self._mounts(ins, env, f"bind-mounted into the RUN at {self.df}:{ins.line}")
            if ins.keyword not in ("COPY", "ADD"):
                continue
            copy = parse_copy(ins)
            if copy is None or "from" in copy.flags or copy.heredoc:
                continue
            sources = self._sources(copy, env)
            if i < last_run:
                run_line = next(instructions[r].line for r in runs if r > i)
                self._trigger(sources, f"read by the RUN at {self.df}:{run_line}")
                continue
            archives = [s for s in sources if copy.keyword == "ADD" and _ARCHIVE.search(s)]
            self._trigger(archives, f"unpacked by the ADD at {self.df}:{ins.line}")
            sources = [s for s in sources if s not in archives]
            if not sources or "parents" in copy.flags:
                continue  # files copied with --parents are not mapped: they rebuild
            raw_dest = _expand(copy.dest, env)
            dest = posixpath.normpath(join_workdir(workdir, raw_dest))
            into_dir = (raw_dest.endswith("/") or len(copy.sources) > 1 or dest in dirs
                        or any(_is_glob(s) for s in sources))
            if into_dir:
                dirs.add(dest)
            chown = _expand(copy.flags["chown"], env) if copy.flags.get("chown") else None
            for src in sources:
                self.sync.append(SyncTarget(src, dest, ins.line, chown, into_dir,
                                            copy.excludes, f"{ins.keyword} {ins.args}"))

    def dependency(self, stage: Stage) -> None:
        """Context reads of a stage the image copies from: all of them are triggers (what the
        image takes from that stage cannot be mapped back to source files)."""
        env: dict[str, str] = {}
        workdir = "/"
        name = stage.name or str(stage.index)
        for ins in stage.instructions:
            workdir = self._track(ins, env, workdir, set())
            if ins.keyword == "RUN":
                self._mounts(ins, env, f"bind-mounted into the RUN at {self.df}:{ins.line}")
            elif ins.keyword in ("COPY", "ADD"):
                copy = parse_copy(ins)
                if copy is not None and "from" not in copy.flags and not copy.heredoc:
                    self._trigger(self._sources(copy, env),
                                  f"built into stage '{name}' at {self.df}:{ins.line}")

    def _track(self, ins: Instruction, env: dict[str, str], workdir: str,
               dirs: set[str]) -> str:
        if ins.keyword == "ARG":
            for word in ins.args.split():
                name, eq, default = word.partition("=")
                if name in self.build_args:
                    env[name] = self.build_args[name]
                elif eq:
                    env[name] = _expand(default.strip("\"'"), env)
                elif name in self.global_args:
                    env[name] = self.global_args[name]
        elif ins.keyword == "ENV":
            env.update(_env_pairs(ins.args, env))
        elif ins.keyword == "WORKDIR":
            workdir = posixpath.normpath(join_workdir(workdir, _expand(ins.args.strip(), env)))
            path = workdir
            while path not in dirs:
                dirs.add(path)
                path = posixpath.dirname(path)
        return workdir

    def _mounts(self, ins: Instruction, env: dict[str, str], why: str) -> None:
        for mount in mount_flags(ins):
            if mount.get("type") == "bind" and not mount.get("from"):
                self._trigger([_context_path(_expand(mount.get("source", "."), env))], why)

    def _sources(self, copy: CopyArgs, env: dict[str, str]) -> list[str]:
        out = []
        for raw in copy.sources:
            src = _expand(raw, env)
            if _URL.match(src):
                continue  # ADD https://...: not from the context
            out.append(_context_path(src))
        return out

    def _trigger(self, sources: Iterable[str], why: str) -> None:
        for src in sources:
            self.why.append((src or "**", why))


def _chain(final: Stage, all_stages: list[Stage]) -> list[Stage]:
    """`final` and the earlier stages it starts FROM, first stage first."""
    chain = [final]
    while (parent := _stage_named(chain[-1].base, all_stages[:chain[-1].index])) is not None:
        chain.append(parent)
    return chain[::-1]


def _dependencies(chain: list[Stage], all_stages: list[Stage]) -> list[Stage]:
    """Stages the image copies from (COPY --from, RUN --mount from=), with their own
    dependencies and the stages they start FROM."""
    seen = {s.index for s in chain}
    todo = list(chain)
    out: list[Stage] = []
    while todo:
        stage = todo.pop()
        refs = [_stage_named(stage.base, all_stages[:stage.index])] if stage not in chain else []
        for ins in stage.instructions:
            if ins.keyword in ("COPY", "ADD") and (copy := parse_copy(ins)) is not None:
                refs.append(_stage_named(copy.flags.get("from", ""), all_stages))
            elif ins.keyword == "RUN":
                refs += [_stage_named(m.get("from", ""), all_stages) for m in mount_flags(ins)]
        for ref in refs:
            if ref is not None and ref.index not in seen:
                seen.add(ref.index)
                out.append(ref)
                todo.append(ref)
    return sorted(out, key=lambda s: s.index)


def _stage_named(ref: str, candidates: list[Stage]) -> Stage | None:
    if not ref:
        return None
    if ref.isdigit():
        return next((s for s in candidates if s.index == int(ref)), None)
    return next((s for s in candidates if s.name == ref.lower()), None)


def _global_args(instructions: list[Instruction], build_args: dict[str, str]) -> dict[str, str]:
    """ARGs declared before the first FROM (a stage sees them when it re-declares them)."""
    out: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "FROM":
            break
        if ins.keyword == "ARG":
            for word in ins.args.split():
                name, _, default = word.partition("=")
                out[name] = build_args.get(name, default.strip("\"'"))
    return out


def _env_pairs(args: str, env: dict[str, str]) -> dict[str, str]:
    words = args.split()
    if words and "=" not in words[0]:  # legacy `ENV NAME value with spaces`
        return {words[0]: _expand(args[len(words[0]):].strip(), env)}
    out = {}
    for word in re.findall(r'(?:[^\s"\']+|"[^"]*"|\'[^\']*\')+', args):
        name, _, value = word.partition("=")
        out[name] = _expand(value.replace('"', "").replace("'", ""), {**env, **out})
    return out


def _expand(text: str, env: Mapping[str, str]) -> str:
    """Docker's variable substitution in COPY/WORKDIR/ENV values (unset expands to "")."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(4)
        op, word = m.group(2), m.group(3)
        value = env.get(name, "")
        if op in (":-", "-"):
            return value or word
        if op in (":+", "+"):
            return word if value else ""
        return value

    return _VAR.sub(sub, text)


def _context_path(src: str) -> str:
    """A COPY source as a context-relative posix path ("" = the whole context); like Docker,
    a leading / or ../ cannot leave the context."""
    path = posixpath.normpath("/" + src.strip()).lstrip("/")
    return "" if path in (".", "") else path


def _is_glob(src: str) -> bool:
    return any(c in src for c in "*?[")


def _under(src: str, rel: str) -> str | None:
    """The part of `rel` below source `src`: "" when `rel` is the source file itself, None when
    the source does not hold it. Wildcards match one path segment each, as in Go's
    filepath.Match, which `docker build` uses for COPY sources."""
    if src == "":
        return rel
    if not _is_glob(src):
        if rel == src:
            return ""
        return rel[len(src) + 1:] if rel.startswith(src + "/") else None
    want = src.split("/")
    parts = rel.split("/")
    if len(parts) < len(want):
        return None
    if all(fnmatchcase(p, w.replace("[^", "[!")) for p, w in zip(parts, want, strict=False)):
        return "/".join(parts[len(want):])
    return None


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --- the plan for one container -----------------------------------------------------------------


def plan(rules: LiveRules, image_files: Mapping[str, str], current: Mapping[str, str],
         container: Mapping[str, str], volume_mounts: Sequence[str]) -> LivePlan | Rebuild:
    """What to copy into (and delete from) one container so it runs the sources `current`, or
    why only a rebuild will do.

    `image_files` is the context the running image was built from, `container` what that
    container holds now (the image plus earlier syncs); all three map context paths to content
    hashes, so the decision is about content, never timestamps."""
    triggers = PatternMatcher(list(rules.fall_back_on)) if rules.fall_back_on else None
    changed = sorted(rel for rel in image_files.keys() | current.keys()
                     if image_files.get(rel) != current.get(rel))
    drifted = sorted(rel for rel in container.keys() | current.keys()
                     if container.get(rel) != current.get(rel))
    considered = sorted(set(changed) | set(drifted))
    hits = [rel for rel in considered if _is_trigger(triggers, rel)]
    if hits:
        base = image_files if hits[0] in changed else container
        return Rebuild(f"{_change(hits[0], base, current)} ({_trigger_why(rules, hits[0])})"
                       f"{_more(hits)}")
    uncovered = [rel for rel in considered if dest_for(rules, rel) is None]
    if uncovered:
        return Rebuild(f"{uncovered[0]} is not copied into the image by a sync rule"
                       f"{_more(uncovered)}")
    by_dest: dict[str, FileCopy] = {}
    deletes: set[str] = set()
    for rule in rules.sync:  # in Dockerfile order, so a later COPY wins, as in the image
        for rel in drifted:
            dest = rule.container_path(rel)
            if dest is None:
                continue
            if rel in current:
                by_dest[dest] = FileCopy(rel, dest)
                deletes.discard(dest)
            elif dest not in by_dest:
                deletes.add(dest)
    for dest in sorted(by_dest.keys() | deletes):
        mount = next((m for m in volume_mounts if within(dest, m)), None)
        if mount is not None:
            return Rebuild(f"dest {dest} is inside volume mount {mount.rstrip('/') or '/'}"
                           " (devloop never writes into a volume)")
    run: tuple[str, ...] = ()
    if drifted:
        run = tuple(step.cmd for step in rules.run
                    if not step.trigger or any(PatternMatcher(list(step.trigger)).matches(rel)
                                               for rel in drifted))
    copies = tuple(by_dest[d] for d in sorted(by_dest))
    return LivePlan(copies, tuple(sorted(deletes)), run, dict(current),
                    tuple(rel for rel in drifted if dest_for(rules, rel) is not None))


UNKNOWN = "?"  # the content hash of a file whose content in a container is not known


def unconfirmed_holds(rules: LiveRules, image_files: Mapping[str, str],
                      current: Mapping[str, str], prior: Mapping[str, str] | None,
                      pending: Sequence[str] | None, volume_mounts: Sequence[str] = ()
                      ) -> dict[str, str]:
    """What a container may hold after a sync into it was interrupted (its intent recorded on
    the pod, never confirmed), as `plan()`'s `container`: the files that sync was copying or
    deleting (`pending`) have unknown content, so the plan copies or deletes them again.

    `prior` is what the container held before that sync, when known. Without it, or without
    the list of pending paths, every file a sync rule covers is unknown (but triggers and
    files in volume mounts: a sync never writes them), so all of them are copied again."""
    if prior is not None and pending is not None:
        holds = dict(prior)
        holds.update(dict.fromkeys(pending, UNKNOWN))
        return holds
    triggers = PatternMatcher(list(rules.fall_back_on)) if rules.fall_back_on else None
    holds = dict(image_files)
    for rel in image_files.keys() | current.keys() | set(pending or ()):
        rule = dest_for(rules, rel)
        dest = rule.container_path(rel) if rule is not None else None
        if dest is not None and not _is_trigger(triggers, rel) and \
                not any(within(dest, m) for m in volume_mounts):
            holds[rel] = UNKNOWN
    return holds


def dest_for(rules: LiveRules, rel: str) -> SyncTarget | None:
    """The rule that puts context file `rel` into the container (the last one, as a later COPY
    overwrites an earlier one), or None."""
    return next((t for t in reversed(rules.sync) if t.container_path(rel) is not None), None)


def not_writable_hint(target: SyncTarget, dockerfile: str, uid: int | None) -> str:
    """What to change so the container's user can write a synced file: the Dockerfile line that
    left it owned by someone else, with the fix."""
    who = str(uid) if uid is not None else "the container's user"
    chown = f"{uid}:{uid}" if uid is not None else "<uid>:<gid>"
    if target.line is None:
        return (f"live_update.sync {target.src or '.'} -> {target.dest}: {target.dest} is not "
                f"writable by {who}; have the Dockerfile copy it with --chown={chown}")
    if target.chown and uid is not None and target.chown.split(":")[0] == str(uid):
        return (f"{dockerfile}:{target.line}: {target.instruction} gives {target.dest} to "
                f"{uid}, yet it is not writable: a later step of the Dockerfile changed its "
                "owner or mode")
    owner = target.chown if target.chown else "root"
    keyword, _, rest = target.instruction.partition(" ")
    rest = re.sub(r"--chown=\S+\s*", "", rest)
    return (f"{dockerfile}:{target.line}: {target.instruction} leaves {target.dest} owned by "
            f"{owner}; the container runs as {who}: use {keyword} --chown={chown} {rest}")


def _is_trigger(triggers: PatternMatcher | None, rel: str) -> bool:
    # docker-py's matcher never matches .dockerignore (it always sends it with the context),
    # yet a change to it changes what the image holds
    return rel == ".dockerignore" or (triggers is not None and triggers.matches(rel))


def within(path: str, top: str) -> bool:
    """Container path `path` is directory `top` or below it ("/" holds everything)."""
    top = top.rstrip("/")
    return not top or path == top or path.startswith(top + "/")


def _change(rel: str, before: Mapping[str, str], after: Mapping[str, str]) -> str:
    if rel not in after:
        return f"{rel} was deleted"
    if rel not in before:
        return f"{rel} was added"
    return f"{rel} changed"


def _trigger_why(rules: LiveRules, rel: str) -> str:
    for pattern, why in reversed(rules.why):
        if PatternMatcher([pattern]).matches(rel):
            return f"a rebuild trigger: {why}"
    return "a rebuild trigger"


def _more(paths: list[str]) -> str:
    return f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""
