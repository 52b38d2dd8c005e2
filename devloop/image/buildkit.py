"""Image builds through BuildKit, driven by the Docker CLI.

docker-py only speaks the engine's legacy /build API (deprecated since Engine 23; no
`RUN --mount`, no heredocs, no build secrets): BuildKit needs the CLI's session protocol, so,
as Skaffold does, we shell out to a `docker` that has it (`docker buildx build`, or a
`docker build` with BuildKit built in and DOCKER_BUILDKIT=1). The context is the same tar the
legacy builder sends (fed on stdin, so what was hashed is what is built), under the same `dl-`
tag and labels. Its `--progress=plain` output is parsed back into steps, cache hits, and the
failing step's Dockerfile line.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from devloop.config.loader import BuildSecret, ServiceConfig
from devloop.image import dockerfile as dockerfile_mod
from devloop.image.errors import BuildFailed, DockerUnreachable
from devloop.text import one_line

_MIN_BUILTIN = (18, 9)  # the first CLI with BuildKit built in (DOCKER_BUILDKIT=1)
_PROBE_TIMEOUT_S = 20.0
_KILL_GRACE_S = 5.0
# the engine variables the CLI needs to reach the engine docker-py talks to (minikube docker-env)
_ENGINE_VARS = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT",
                "DOCKER_API_VERSION", "MINIKUBE_ACTIVE_DOCKERD")

Runner = Callable[[list[str], Mapping[str, str]], "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class BuildkitCli:
    """A docker CLI that builds with BuildKit: `argv` runs its build command."""

    path: str
    version: str
    buildx: bool  # `docker buildx build --load`; else `docker build` with DOCKER_BUILDKIT=1

    @property
    def argv(self) -> list[str]:
        return [self.path, "buildx", "build", "--load"] if self.buildx else [self.path, "build"]

    def describe(self) -> str:
        how = "buildx" if self.buildx else "BuildKit built in"
        return f"{self.path} {self.version} ({how})"


@dataclass(frozen=True)
class Choice:
    """Which builder builds, and why (said once, as event builder.selected)."""

    cli: BuildkitCli | None
    reason: str

    @property
    def name(self) -> str:
        return "buildkit" if self.cli is not None else "legacy"


def _run(argv: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=dict(env), capture_output=True, text=True,
                          timeout=_PROBE_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)


def _version(text: str) -> tuple[int, int] | None:
    m = re.match(r"\s*v?(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def docker_clis(path_var: str) -> list[str]:
    """Every `docker` executable on PATH, in PATH order, each real file once (a CLI first on
    PATH may lack BuildKit while one later has it: /usr/local/bin vs Debian's /usr/bin)."""
    found: list[str] = []
    seen: set[str] = set()
    for folder in path_var.split(os.pathsep):
        if not folder:
            continue
        exe = shutil.which("docker", path=folder)
        if exe is None:
            continue
        real = os.path.realpath(exe)
        if real not in seen:
            seen.add(real)
            found.append(exe)
    return found


def probe(exe: str, env: Mapping[str, str], run: Runner = _run) -> tuple[BuildkitCli | None, str]:
    """Whether `exe` offers BuildKit: `buildx version` answers, or its client is >= 18.09 and
    accepts DOCKER_BUILDKIT=1 (a newer CLI without the buildx plugin refuses it)."""
    try:
        bx = run([exe, "buildx", "version"], env)
        if bx.returncode == 0:
            words = bx.stdout.split()
            return BuildkitCli(exe, words[1] if len(words) > 1 else "?", buildx=True), ""
        # `--version` is the client's alone: `docker version` would wait for the engine
        words = run([exe, "--version"], env).stdout.replace(",", " ").split()
        version = words[2] if len(words) > 2 and words[:2] == ["Docker", "version"] else ""
        parsed = _version(version)
        if parsed is None or parsed < _MIN_BUILTIN:
            return None, f"{exe}: client {version or 'unknown'} has no BuildKit"
        check = run([exe, "build", "--help"], {**env, "DOCKER_BUILDKIT": "1"})
        if check.returncode != 0:
            said = one_line((check.stderr or check.stdout).strip(), 120)
            return None, f"{exe} {version}: no buildx ({said})"
        return BuildkitCli(exe, version, buildx=False), ""
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{exe}: {one_line(str(exc), 120)}"


def choose(setting: str, env: Mapping[str, str], run: Runner = _run) -> Choice:
    """The builder for `builder:` auto|buildkit|legacy. auto takes the first CLI on PATH that
    offers BuildKit, else legacy; buildkit without such a CLI is legacy too, with the reason
    (BuildKit-only Dockerfiles then fail with a line saying so)."""
    if setting == "legacy":
        return Choice(None, "builder: legacy in devloop.yaml")
    misses: list[str] = []
    for exe in docker_clis(env.get("PATH", os.defpath)):
        cli, why = probe(exe, env, run)
        if cli is not None:
            return Choice(cli, f"{cli.describe()}")
        misses.append(why)
    found = "; ".join(misses) if misses else "no docker CLI on PATH"
    return Choice(None, f"no Docker CLI with BuildKit ({found}); install docker-buildx or set"
                        " builder: legacy")


def docker_env(environment: Mapping[str, str] | None, base: Mapping[str, str]) -> dict[str, str]:
    """The CLI's environment: this process's, with the engine devloop's docker-py client talks
    to (DOCKER_HOST of minikube's docker-env) replacing any engine variables of its own."""
    env = {k: v for k, v in base.items() if environment is None or k not in _ENGINE_VARS}
    env.update(environment or {})
    env["DOCKER_BUILDKIT"] = "1"
    env.setdefault("BUILDKIT_PROGRESS", "plain")
    return env


def needs_host_network(cli: BuildkitCli, env: Mapping[str, str], run: Runner = _run
                       ) -> bool | None:
    """An engine without the default bridge network (dockerd --bridge=none) fails every RUN
    step of a BuildKit build ("network bridge not found") unless it runs on the host's. None:
    no answer (the engine is unreachable): ask again on the next build."""
    try:
        answer = run([cli.path, "network", "inspect", "bridge"], env)
    except (OSError, subprocess.SubprocessError):
        return None
    if answer.returncode == 0:
        return False
    said = (answer.stderr + answer.stdout).lower()
    return True if "no such network" in said or "not found" in said else None


# --- build secrets --------------------------------------------------------------------------


class SecretMissing(Exception):
    """A build secret whose file or environment variable is not there: one line saying which."""


def secret_value(secret: BuildSecret, env: Mapping[str, str]) -> str | None:
    """The value of one build secret; None when its source is missing."""
    if secret.env is not None:
        return env.get(secret.env)
    assert secret.file is not None
    try:
        return secret.file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def secret_values(services: Mapping[str, ServiceConfig], env: Mapping[str, str]) -> list[str]:
    """Every build secret value there is, for the redactor (a value printed by a RUN step
    must show as *** in the build output and events). Whole values and their lines."""
    values: list[str] = []
    for svc in services.values():
        for secret in svc.build_secrets.values():
            value = secret_value(secret, env)
            if value:
                values.append(value)
                values.extend(line.strip() for line in value.splitlines() if line.strip())
    return values


def secret_args(svc: ServiceConfig, env: Mapping[str, str]) -> list[str]:
    """`--secret id=...,src=...|env=...` for the CLI: names only, the value never is on a
    command line. SecretMissing when a source is not there."""
    args: list[str] = []
    for sid, secret in sorted(svc.build_secrets.items()):
        if secret_value(secret, env) is None:
            where = (f"environment variable {secret.env} is not set" if secret.env
                     else f"{secret.file} cannot be read")
            raise SecretMissing(f"build secret {sid} of {svc.name}: {where}; set it, or remove"
                                f" it from build_secrets: in devloop.yaml")
        source = f"env={secret.env}" if secret.env else f"src={secret.file}"
        args += ["--secret", f"id={sid},{source}"]
    return args


# --- progress output ------------------------------------------------------------------------

_VERTEX = re.compile(r"^#(\d+) \[(?:(?P<stage>[^\]\s]+) )?(?P<n>\d+)/(?P<m>\d+)\] (?P<text>.*)$")
_CACHED = re.compile(r"^#(\d+) CACHED$")
_VERTEX_ERROR = re.compile(r"^#(\d+) ERROR: (?P<reason>.*)$")
_NOISE = re.compile(r"^#\d+ (sha256:[0-9a-f]{64}|resolve |transferring |\.\.\.)")
_SOURCE_LINE = re.compile(r"^(?P<name>\S+):(?P<line>\d+)$")  # BuildKit >= 0.11: `Dockerfile:12`
_SOLVE = re.compile(r"^(?:ERROR: )?(?:failed to solve(?: with frontend \S+)?: )(?P<reason>.*)$")
_PARSE_ERROR = re.compile(r"dockerfile parse error (?:on )?line (\d+)")  # BuildKit 20.10
_EXECUTOR = re.compile(r"^(?:error: )?(?P<reason>executor failed running .*)$")
# a step BuildKit shows as a vertex: every other instruction only changes the image config
_VERTEX_KEYWORDS = {"FROM", "RUN", "COPY", "ADD", "WORKDIR"}


@dataclass
class Vertex:
    number: int
    stage: str | None
    index: int
    total: int
    text: str
    cached: bool = False


@dataclass
class Progress:
    """BuildKit's plain progress output, line by line: the steps, which were cached, and on
    failure the failing step, its reason and (newer BuildKit) its Dockerfile line."""

    dockerfile_name: str = "Dockerfile"
    vertices: dict[int, Vertex] = field(default_factory=dict)
    failed: Vertex | None = None
    reason: str = ""
    source_line: int | None = None
    last_lines: deque[str] = field(default_factory=lambda: deque(maxlen=20))

    def feed(self, line: str) -> str | None:
        """Take one line; return what to show (None: digests and transfer noise)."""
        line = line.rstrip()
        if not line or _NOISE.match(line):
            return None
        if m := _VERTEX.match(line):
            number = int(m.group(1))
            if number not in self.vertices:
                self.vertices[number] = Vertex(number, m.group("stage"), int(m.group("n")),
                                               int(m.group("m")), m.group("text"))
            else:
                return None  # the same step named again after its output
        elif m := _CACHED.match(line):
            if (v := self.vertices.get(int(m.group(1)))) is not None:
                v.cached = True
        elif m := _VERTEX_ERROR.match(line):
            self.failed = self.vertices.get(int(m.group(1)), self.failed)
            self.reason = self.reason or m.group("reason").strip()
        elif m := _SOLVE.match(line):
            self.reason = m.group("reason").strip() or self.reason
            if (p := _PARSE_ERROR.search(line)) and self.source_line is None:
                self.source_line = int(p.group(1))
        elif m := _EXECUTOR.match(line):
            self.reason = self.reason or m.group("reason").strip()
        elif (m := _SOURCE_LINE.match(line)) and m.group("name") == self.dockerfile_name:
            self.source_line = int(m.group("line"))
        self.last_lines.append(line)
        return line

    @property
    def steps(self) -> int:
        return len(self.vertices)

    @property
    def cached(self) -> int:
        return sum(1 for v in self.vertices.values() if v.cached)

    def step_label(self) -> str | None:
        """`step [deps 2/3] (RUN pip install ...)`, as BuildKit numbered it."""
        v = self.failed
        if v is None:
            return None
        where = f"{v.stage} {v.index}/{v.total}" if v.stage else f"{v.index}/{v.total}"
        return f"step [{where}] ({v.text})"


def _words(text: str) -> str:
    return " ".join(text.split())


def locate(text: str, failed: Vertex | None, source_line: int | None) -> int | None:
    """The Dockerfile line of the failing step: BuildKit's own `Dockerfile:N` when it printed
    one, else the failing vertex mapped into the Dockerfile: its stage (by AS name, `stage-N`
    or the only one) and its index among the stage's vertex-making instructions (FROM, RUN,
    COPY, ADD, WORKDIR), preferring an instruction whose text is the vertex's (ARG values are
    substituted in the vertex, so the text alone is not enough)."""
    if source_line is not None:
        return source_line
    if failed is None:
        return None
    stages = dockerfile_mod.stages(dockerfile_mod.parse(text))
    if failed.stage is None:
        candidates = stages[-1:] if len(stages) == 1 else stages
    else:
        name = failed.stage.lower()
        candidates = [s for s in stages if s.name == name]
        if not candidates and (m := re.fullmatch(r"stage-(\d+)", name)):
            index = int(m.group(1))
            candidates = [s for s in stages if s.index == index]
    wanted = _words(failed.text)
    keyword = wanted.split(" ", 1)[0].upper()
    for stage in candidates:
        for ins in stage.instructions:
            if _words(f"{ins.keyword} {ins.args}") == wanted:
                return ins.line
    for stage in candidates:
        made = [ins for ins in stage.instructions if ins.keyword in _VERTEX_KEYWORDS]
        if stage.instructions and 2 <= failed.index <= len(made) + 1:
            ins = made[failed.index - 2]
            if ins.keyword == keyword:
                return ins.line
        if failed.index == 1 and keyword == "FROM":
            return stage.line
    return None


HEREDOC_HINT = ("this engine's built-in Dockerfile frontend predates heredocs (`RUN <<EOF`):"
                " use Docker Engine 23 or later, or make `# syntax=docker/dockerfile:1.4` the"
                " Dockerfile's first line (the engine pulls that frontend from Docker Hub)")
_HEREDOC = re.compile(r"^\s*(?:RUN|COPY|ADD)\b.*<<-?\s*[\"']?[A-Za-z_][A-Za-z0-9_]*", re.I)


def heredoc_before(text: str, parse_error_line: int) -> int | None:
    """The line of a heredoc instruction at or above a parse error's line: a frontend without
    heredocs reads the heredoc's body as instructions ("unknown instruction: ECHO") and names
    the body's line, not the instruction the person wrote."""
    lines = text.splitlines()[:parse_error_line]
    for number in range(len(lines), 0, -1):
        if _HEREDOC.match(lines[number - 1]):
            return number
    return None


# --- the build ------------------------------------------------------------------------------

# how the CLI says it cannot reach the engine (lower case: 20.10 and later differ in case)
_LOST = ("cannot connect to the docker daemon", "error during connect", "connection refused",
         "failed to dial grpc", "is the docker daemon running")


@dataclass
class KitBuilder:
    """Builds one service image with a BuildKit CLI on the engine `environment` names."""

    cli: BuildkitCli
    environment: dict[str, str] | None = None
    host_network: bool | None = None  # None: asked once, on the first build
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    # told each build's secret values before it starts (Redactor.add): a secret added to
    # devloop.yaml while watching, or a rotated file, is masked in that build's output too
    redact: Callable[[list[str]], None] | None = None
    # CLIs building now: each runs in its own session (killed as a group), so a Ctrl-C at the
    # terminal does not reach it, and devloop exiting must end it (close, at exit)
    _running: set[subprocess.Popen[bytes]] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        atexit.register(self.close)

    def close(self) -> None:
        """Kill every build still running (devloop is exiting: Ctrl-C, SIGTERM, an error)."""
        with self._lock:
            running = list(self._running)
        for proc in running:
            _kill_group(proc)

    @property
    def env(self) -> dict[str, str]:
        return docker_env(self.environment, self.base_env)

    def network(self) -> str | None:
        if self.host_network is None:
            self.host_network = needs_host_network(self.cli, self.env)
        return "host" if self.host_network else None  # None: unknown, asked again next time

    def command(self, svc: ServiceConfig, tag: str, dockerfile_name: str,
                labels: Mapping[str, str], iidfile: Path) -> list[str]:
        """The CLI arguments of one build; the context tar arrives on stdin (`-`)."""
        argv = [*self.cli.argv, "--progress=plain", "-f", dockerfile_name, "-t", tag,
                "--iidfile", str(iidfile)]
        for key, value in sorted(svc.build_args.items()):
            argv += ["--build-arg", f"{key}={value}"]
        if svc.target:
            argv += ["--target", svc.target]
        if svc.platform:
            argv += ["--platform", svc.platform]
        for key, value in sorted(labels.items()):
            argv += ["--label", f"{key}={value}"]
        if (net := self.network()) is not None:
            argv += ["--network", net]
        argv += secret_args(svc, self.env)
        return [*argv, "-"]

    def build(self, context: IO[bytes], dockerfile_name: str, svc: ServiceConfig, tag: str,
              labels: Mapping[str, str], on_line: Callable[[str], None],
              stop: threading.Event | None = None) -> str:
        """Build `tag` from the tar `context`; return the image id. BuildFailed names the
        failing step and its Dockerfile line; DockerUnreachable when the CLI cannot reach the
        engine. `stop` set (devloop stopping: Ctrl-C, SIGTERM) kills the CLI's process
        group and raises BuildFailed saying so."""
        progress = Progress(dockerfile_name=Path(dockerfile_name).name)
        with tempfile.TemporaryDirectory(prefix="devloop-iid-") as tmp:
            iidfile = Path(tmp) / "iid"
            try:
                argv = self.command(svc, tag, dockerfile_name, labels, iidfile)
            except SecretMissing as exc:
                raise BuildFailed(svc.name, str(exc)) from None
            if self.redact is not None and svc.build_secrets:
                self.redact(secret_values({svc.name: svc}, self.env))
            try:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, env=self.env,
                    start_new_session=True)  # its own group: killed as one
            except OSError as exc:
                raise BuildFailed(svc.name, f"cannot run {self.cli.path} ({exc.strerror or exc});"
                                  " reinstall it, or set builder: legacy in devloop.yaml"
                                  ) from None
            with self._lock:
                self._running.add(proc)
            watcher = _StopWatcher(proc, stop)
            try:
                feeder = threading.Thread(target=_feed, args=(context, proc), daemon=True)
                feeder.start()
                assert proc.stdout is not None
                for raw in proc.stdout:
                    shown = progress.feed(raw.decode("utf-8", errors="replace"))
                    if shown is not None:
                        on_line(shown)
                code = proc.wait()
                feeder.join(timeout=_KILL_GRACE_S)
            finally:
                watcher.close()
                _kill_group(proc)
                with self._lock:
                    self._running.discard(proc)
            if watcher.stopped:
                raise BuildFailed(svc.name, "cancelled (a newer change or Ctrl-C)")
            if code != 0:
                raise self._failure(svc, progress)
            image_id = iidfile.read_text().strip() if iidfile.exists() else ""
        return image_id

    def docker_answers(self, run: Runner = _run) -> bool:
        """Whether the engine answers now (`docker version` asks the server too)."""
        try:
            return run([self.cli.path, "version", "--format", "{{.Server.Version}}"],
                       self.env).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False

    def _failure(self, svc: ServiceConfig, progress: Progress) -> Exception:
        """What a failed CLI run was: the engine unreachable from the start, the engine lost
        mid-build (it no longer answers: its error lines are not the build's), or a failed
        step. The first two are DockerUnreachable, retried once the engine answers."""
        text = " ".join(progress.last_lines)
        address = (self.environment or {}).get("DOCKER_HOST") or \
            self.base_env.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        tail = (f" during the build of {svc.name}; nothing was deployed: check that dockerd is"
                " running (`docker info`) and DOCKER_HOST")
        if not progress.vertices and any(needle in text.lower() for needle in _LOST):
            return DockerUnreachable(
                f"cannot reach the Docker Engine at {address} ({one_line(text, 160)}){tail}")
        if progress.vertices and not self.docker_answers():
            return DockerUnreachable(
                f"lost the Docker Engine at {address} (connection cut){tail}")
        reason = progress.reason or (progress.last_lines[-1] if progress.last_lines
                                     else f"{self.cli.path} exited without saying why")
        try:
            text = svc.dockerfile.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        line = locate(text, progress.failed, progress.source_line)
        if progress.source_line is not None and "unknown instruction" in reason and (
                heredoc := heredoc_before(text, progress.source_line)) is not None:
            line, reason = heredoc, f"{reason}; {HEREDOC_HINT}"
        return BuildFailed(svc.name, one_line(reason, 400), progress.step_label(),
                           svc.dockerfile, line, list(progress.last_lines))


def _feed(context: IO[bytes], proc: subprocess.Popen[bytes]) -> None:
    """Stream the context tar to the CLI's stdin (a thread: the CLI prints while it reads),
    gzipped at the fastest level: the CLI tells a tar on stdin from a bare Dockerfile by
    parsing the first header only, and a first entry with a PAX or long-name header (a path
    over 100 bytes, a non-ASCII name) reads as "not a tar" ("ambiguous Dockerfile source");
    a compressed stream is always taken as an archive."""
    assert proc.stdin is not None
    gzip = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: the gzip container
    with contextlib.suppress(OSError, ValueError):
        while chunk := context.read(1 << 20):
            proc.stdin.write(gzip.compress(chunk))
        proc.stdin.write(gzip.flush())
    with contextlib.suppress(OSError, ValueError):
        proc.stdin.close()


class _StopWatcher:
    """Kills the CLI's process group when `stop` is set while it builds."""

    def __init__(self, proc: subprocess.Popen[bytes], stop: threading.Event | None) -> None:
        self.proc = proc
        self.stop = stop
        self.stopped = False
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        if stop is not None:
            self._thread = threading.Thread(target=self._wait, daemon=True)
            self._thread.start()

    def _wait(self) -> None:
        assert self.stop is not None
        while not self._done.wait(0.1):
            if self.stop.is_set():
                self.stopped = True
                _kill_group(self.proc)
                return

    def close(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=_KILL_GRACE_S)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """End the CLI and whatever it started, at once: the CLI answers SIGTERM by cancelling
    the build gracefully, waiting on the engine (5 s measured here, too long for a Ctrl-C),
    and the engine cancels the build by itself when the CLI's session goes away. Windows has
    no process groups: the CLI alone."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, getattr(signal, "SIGKILL", signal.SIGTERM))
        else:
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=_KILL_GRACE_S)
