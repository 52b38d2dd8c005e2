"""Copy changed files into running containers (live update), in as few round trips as possible.

ExecUpdater goes through the Kubernetes exec API, so it works on every cluster: ONE exec runs a
`sh -c` script that removes the deleted paths, extracts a tar read from stdin over `/`, then runs
the `run` commands in order. The tar's length is put into the script (`head -c N | tar ...`):
the exec channel protocol the Python client speaks (v4) cannot half-close stdin, so tar must not
wait for an end of file. `tar -xpmf - -C / --no-same-owner` is understood by GNU tar (Debian
images) and busybox tar alike: modes kept (-p, even for a non-root user), mtime = now (-m, so
reloaders see a change), files owned by the container's user, missing parent dirs created.

DockerUpdater talks to the Docker daemon that runs the pod's container (shared-daemon setups):
an exec prepares (deletes, parent dirs, a writability check as the container's user), the files
go in with put_archive (copyUIDGID: owned by the container's user), and an exec runs `run`.

Both report failures as UpdateFailed with a kind the pipeline can act on (fall back to a rebuild)
and a one-line message naming the pod/container.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import stat
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import docker
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from devloop.image.errors import docker_lost_detail, is_docker_lost
from devloop.k8s import retry, timeouts
from devloop.k8s.errors import api_message, one_line
from devloop.k8s.pods import read_pod, split_container_id
from devloop.live.plan import within

KINDS = ("exec_refused", "tar_missing", "not_writable", "disk_full", "gone", "run_failed",
         "other")
MARK = "@@devloop-phase "  # printed by the scripts before each phase: which one failed
CHUNK = 256 * 1024
MAX_SCRIPT = 128 * 1024  # the script travels in the exec URL / argv: stay far below their limits


@dataclass(frozen=True)
class Target:
    namespace: str
    pod: str
    container: str
    container_id: str = ""  # "docker://<id>", "containerd://<id>" or "" (unknown)

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.pod}/{self.container}"


class UpdateFailed(Exception):
    """A sync that did not happen (or only partly): the pipeline falls back to a rebuild.

    kind: one of KINDS; path: the container path refused (not_writable), if known;
    output: the last lines the container printed (run_failed), for a detail view.
    """

    def __init__(self, kind: str, message: str, path: str | None = None,
                 output: str = "") -> None:
        super().__init__(one_line(message))
        self.kind = kind if kind in KINDS else "other"
        self.path = path
        self.output = output


@dataclass(frozen=True)
class UpdateResult:
    files: int
    deletes: int
    bytes: int
    seconds: float
    method: str  # "exec" | "docker"


class ContainerUpdater(Protocol):
    name: str

    def update(self, target: Target, copies: Sequence[tuple[Path, str]],
               deletes: Sequence[str], run: Sequence[str]) -> UpdateResult: ...


# the archive and the scripts ------------------------------------------------------------------
_TAR_END = 2 * tarfile.BLOCKSIZE  # two zero blocks end an archive


class SourcesChanged(Exception):
    """Local files vanished, or changed size, between the plan and the copy: the caller
    re-reads them and plans again (a copy already sent is redone by that plan, since the
    intent recorded on the pod is left unconfirmed)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        shown = ", ".join(p.name for p in paths[:3]) + (" ..." if len(paths) > 3 else "")
        super().__init__(f"{shown} vanished or changed size while being synced")
        self.paths = list(paths)


@dataclass(frozen=True)
class _Entry:
    local: Path
    header: bytes
    size: int  # bytes of content promised in the header (0 for a symlink)
    regular: bool


class Archive:
    """A tar of files under their container paths (relative to /, extracted with -C /),
    streamed in chunks instead of held in memory.

    Every file is stat'ed up front, so the exact length is known before a byte is sent (the
    exec script reads exactly that many: `head -c N`). A file that vanishes or changes size
    while it is sent is padded to the size promised, so the stream stays a valid tar, and
    named in `changed`: the caller raises SourcesChanged once the copy is over.

    owner: uid/gid in the headers; tar in the container ignores them (--no-same-owner), the
    Docker daemon's put_archive applies them. No directory entries: tar would chmod existing
    parents (e.g. /app) and fail as non-root; missing parents are created by the extraction.
    Symlinks stay symlinks, like COPY.
    """

    def __init__(self, copies: Sequence[tuple[Path, str]], owner: tuple[int, int] = (0, 0)
                 ) -> None:
        now = int(time.time())
        self.entries: list[_Entry] = []
        self.modes: dict[str, int] = {}  # {container path: mode} of the regular files
        self.changed: list[Path] = []
        vanished = []
        for local, dest in copies:
            if not dest.startswith("/"):
                raise ValueError(f"container path must be absolute: {dest!r}")
            try:
                st = os.lstat(local)
                info = tarfile.TarInfo(dest.lstrip("/"))
                if stat.S_ISLNK(st.st_mode):
                    info.type, info.linkname = tarfile.SYMTYPE, os.readlink(local)
                elif stat.S_ISREG(st.st_mode):
                    info.size = st.st_size
                    self.modes[dest] = st.st_mode & 0o7777
                else:  # became a directory, a FIFO...: the plan is out of date
                    vanished.append(local)
                    continue
            except FileNotFoundError:
                vanished.append(local)
                continue
            info.mode = st.st_mode & 0o7777
            info.uid, info.gid = owner
            info.uname = info.gname = ""
            info.mtime = now
            header = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
            self.entries.append(_Entry(local, header, info.size, info.isreg()))
        if vanished:
            raise SourcesChanged(vanished)
        body = sum(len(e.header) + _padded(e.size) for e in self.entries) + _TAR_END
        self.size = _padded(body, tarfile.RECORDSIZE) if self.entries else 0

    def chunks(self, chunk: int = 0) -> Iterator[bytes]:
        """The archive, `chunk` bytes at a time (CHUNK by default); exactly `size` bytes."""
        if not self.entries:
            return
        buf = bytearray()
        sent = 0
        for piece in self._pieces():
            buf += piece
            while len(buf) >= (chunk or CHUNK):
                out = bytes(buf[:chunk or CHUNK])
                del buf[:chunk or CHUNK]
                sent += len(out)
                yield out
        buf += bytes(self.size - sent - len(buf))
        if buf:
            yield bytes(buf)

    def _pieces(self) -> Iterator[bytes]:
        for entry in self.entries:
            yield entry.header
            if entry.regular:
                yield from self._content(entry)
            pad = _padded(entry.size) - entry.size
            if pad:
                yield bytes(pad)

    def _content(self, entry: _Entry) -> Iterator[bytes]:
        """Exactly entry.size bytes of the file (zeros for what is missing)."""
        left = entry.size
        try:
            with open(entry.local, "rb") as handle:
                while left:
                    data = handle.read(min(left, CHUNK))
                    if not data:
                        break
                    left -= len(data)
                    yield data
                if handle.read(1):
                    self.changed.append(entry.local)  # it grew: what was sent is a prefix
        except OSError:
            pass
        if left:
            self.changed.append(entry.local)
            yield bytes(left)

    def check(self) -> None:
        """After the copy: SourcesChanged when a file changed while it was sent."""
        if self.changed:
            raise SourcesChanged(self.changed)


def _padded(size: int, unit: int = tarfile.BLOCKSIZE) -> int:
    return -(-size // unit) * unit


def _phase(name: str) -> str:
    return f"echo '{MARK}{name}'"


def _run_lines(run: Sequence[str]) -> list[str]:
    return [f"{_phase(f'run:{i}')}; sh -c {shlex.quote(cmd)} || exit $?"
            for i, cmd in enumerate(run)]


def exec_script(deletes: Sequence[str], tar_bytes: int, run: Sequence[str],
                modes: Mapping[str, int] | None = None) -> str:
    """The one `sh -c` script of an ExecUpdater update (stderr merged: output keeps its order).

    modes: {container path: mode} of the regular files copied. A non-root busybox tar applies
    the umask even with -p, so modes are set again with one chmod per distinct mode.
    """
    lines = ["exec 2>&1"]
    if deletes:
        lines.append(f"{_phase('delete')}; rm -rf -- {_quoted(deletes)} || exit $?")
    if tar_bytes:
        lines.append(_phase("copy"))
        lines.append("command -v tar >/dev/null 2>&1 || { echo 'tar: not found'; exit 127; }")
        lines.append(f"head -c {tar_bytes} | tar -xpmf - -C / --no-same-owner || exit $?")
        by_mode: dict[int, list[str]] = {}
        for path, mode in (modes or {}).items():
            by_mode.setdefault(mode & 0o7777, []).append(path)
        lines += [f"chmod {mode:o} -- {_quoted(paths)} || exit $?"
                  for mode, paths in sorted(by_mode.items())]
    return "\n".join(lines + _run_lines(run))


def prepare_script(deletes: Sequence[str], dests: Sequence[str]) -> str:
    """DockerUpdater's first exec, as the container's user: put_archive writes as root, so this
    is where "not writable by the container's user" is found (and parents get its ownership).
    It prints the user's uid and gid (`MARK id U G`), the owner of the files put_archive adds.
    """
    lines = ["exec 2>&1", f"echo \"{MARK}id $(id -u) $(id -g)\""]
    if deletes:
        lines.append(f"{_phase('delete')}; rm -rf -- {_quoted(deletes)} || exit $?")
    if dests:
        lines.append(_phase("copy"))
        parents = sorted({str(Path(d).parent) for d in dests})
        lines.append(f"mkdir -p -- {_quoted(parents)} || exit $?")
        for dest in dests:
            parent = _word(str(Path(dest).parent))
            lines.append(f"[ -w {parent} ] || {{ echo \"can't open '\"{_word(dest)}\"':"
                         f" Permission denied\"; exit 2; }}")
    return "\n".join(lines)


def _fits(target: Target, script: str, paths: int) -> str:
    if len(script) > MAX_SCRIPT:
        raise UpdateFailed("other", f"cannot sync into {target.label}: {paths} paths are too"
                           " many for one live update; a rebuild brings them in")
    return script


def _quoted(paths: Sequence[str]) -> str:
    return " ".join(_word(p) for p in paths)


def _word(path: str) -> str:
    """One shell word for a container path. A name that is not UTF-8 (held surrogate-escaped)
    is rebuilt by printf from octal escapes: the script travels as UTF-8 text (the exec URL,
    Docker's JSON), which cannot carry those bytes."""
    raw = os.fsencode(path)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        escaped = "".join(chr(b) if 32 <= b < 127 and chr(b) not in "\\'" else f"\\0{b:03o}"
                          for b in raw)
        return f"\"$(printf '%b' '{escaped}')\""
    return shlex.quote(path)


# classification -------------------------------------------------------------------------------
# '...' or GNU's curly quotes, opening after a space: not the ' of "can't"
_QUOTED = re.compile("(?:^|\\s)['\u2018`]([^'\u2019`]+)['\u2019`]")
_GNU_TAR = re.compile(r"^tar: (.+?): (?:Cannot|Can't)", re.IGNORECASE)


_NOT_FOUND = re.compile(r"(?:^|\s)([\w.+-]+): (?:command )?not found", re.MULTILINE)


def _refused_path(line: str) -> str | None:
    found = _QUOTED.search(line) or _GNU_TAR.search(line)
    if not found:
        return None
    path = found.group(1)
    return path if path.startswith("/") else "/" + path  # tar names are relative to /


def classify(target: Target, output: str, code: int | None, run: Sequence[str]) -> UpdateFailed:
    """The failure behind a script's non-zero exit, from its phase markers and output."""
    phase, after = "", []
    for line in output.splitlines():
        if line.startswith(MARK):
            phase, after = line[len(MARK):].strip(), []
        elif line.strip():
            after.append(line.strip())
    text = "\n".join(after)
    where = f"cannot sync into {target.label}"
    low = text.lower()
    if "no space left" in low:
        return UpdateFailed("disk_full", f"{where}: no space left on the container's disk"
                            " (free space in the image or raise its ephemeral storage)",
                            output=text)
    if phase.startswith("run:"):
        index = int(phase.split(":", 1)[1])
        tail = " | ".join(after[-3:]) or "no output"
        return UpdateFailed("run_failed", f"{target.label}: run step `{run[index]}` failed"
                            f" (exit {code}): {tail}", output=text)
    for line in after:
        lowered = line.lower()
        if "permission denied" in lowered or "read-only file system" in lowered or (
                "cannot open" in lowered):
            path = _refused_path(line)
            return UpdateFailed("not_writable", f"{where}: {path or 'a destination'} is not"
                                " writable by the container's user (" + line[-120:] + ")",
                                path=path, output=text)
    missing = _NOT_FOUND.search(text)
    if missing or code in (126, 127) or "executable file not found" in low:
        tool = missing.group(1) if missing else ("tar" if phase == "copy" else "sh")
        return UpdateFailed("tar_missing", f"{where}: the image has no {tool}; live update"
                            " needs sh, tar, head, rm, mkdir and id in the image (or set"
                            " live_update: false)", output=text)
    last = after[-1] if after else "no output"
    return UpdateFailed("other", f"{where}: {phase or 'exec'} failed (exit {code}): {last}",
                        output=text)


# Kubernetes exec ------------------------------------------------------------------------------
_HANDSHAKE = re.compile(r"Handshake status (\d+)")
_KUBELET_DIAL = re.compile(r"error dialing backend|:10250\b", re.IGNORECASE)
# the websocket client's words for a connection that dropped or never opened
_DROPPED = re.compile(r"connection (?:reset|refused|aborted)|broken pipe|timed out|"
                      r"remote end closed|EOF occurred", re.IGNORECASE)
_MESSAGE = re.compile(r'"message"\s*:\s*"((?:[^"\\]|\\.)*)"')


class ExecUpdater:
    """Live update through the Kubernetes exec API: one exec (one websocket) per update."""

    name = "exec"

    def __init__(self, api_client_factory: Callable[[], k8s.ApiClient], *,
                 timeout_s: float = 60.0, policy: retry.RetryPolicy = retry.DEFAULT,
                 on_retry: Callable[[retry.Retry], object] | None = None) -> None:
        """api_client_factory: a fresh ApiClient per update, because kubernetes.stream patches
        the client it is given (a shared one would break every other call made meanwhile).
        Only opening the exec is retried (policy, on_retry: told of each retry): once the
        script runs, a second run could repeat its `run` steps."""
        self._factory = api_client_factory
        self._timeout = timeout_s
        self._policy = policy
        self._on_retry = on_retry

    def update(self, target: Target, copies: Sequence[tuple[Path, str]],
               deletes: Sequence[str], run: Sequence[str]) -> UpdateResult:
        began = time.monotonic()
        archive = Archive(copies)
        script = _fits(target, exec_script(deletes, archive.size, run, archive.modes),
                       len(copies) + len(deletes))
        api_client = self._factory()
        try:
            core = k8s.CoreV1Api(api_client)
            output, code, status = self._exec(core, target, script, archive)
            if code != 0:
                if code is None:  # no exit status: the exec was cut off or refused mid-way
                    raise self._not_done(core, target, status or "the exec ended without a"
                                         " status")
                raise classify(target, output, code, run)
        finally:
            with contextlib.suppress(Exception):
                api_client.close()
        archive.check()
        return UpdateResult(len(copies), len(deletes), archive.size, time.monotonic() - began,
                            self.name)

    def _exec(self, core: k8s.CoreV1Api, target: Target, script: str,
              archive: Archive) -> tuple[str, int | None, str]:
        """(output, exit code or None, status message) of the script."""
        try:
            ws = retry.call(lambda: stream(
                core.connect_get_namespaced_pod_exec, target.pod, target.namespace,
                container=target.container, command=["sh", "-c", script],
                stdin=bool(archive.size), stdout=True, stderr=True, tty=False, binary=True,
                _preload_content=False, _request_timeout=self._timeout),
                what=f"exec into {target.label}", policy=self._policy,
                transient=exec_transient, on_retry=self._on_retry)
        except ApiException as exc:
            raise self._not_done(core, target, _handshake_detail(exc)) from None
        deadline = time.monotonic() + self._timeout
        try:
            with contextlib.suppress(Exception):
                ws.sock.settimeout(self._timeout)
            for chunk in archive.chunks():
                try:
                    ws.write_stdin(chunk)
                except Exception:  # the script ended early (a failed delete): read why
                    break
            lost = ""
            while ws.is_open():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise UpdateFailed("other", f"cannot sync into {target.label}: no answer"
                                       f" within {self._timeout:.0f} s")
                try:
                    ws.update(timeout=min(left, 1.0))
                except Exception as exc:  # dropped without a close frame (pod or node gone)
                    lost = one_line(f"connection lost: {exc or type(exc).__name__}", 200)
                    break
            raw = ws.read_channel(1) or b""
            raw += ws.read_channel(2) or b""
            code, status = _exit_status(ws.read_channel(3) or b"")
            return raw.decode("utf-8", errors="replace"), code, status or lost
        finally:
            with contextlib.suppress(Exception):
                ws.close()

    def _not_done(self, core: k8s.CoreV1Api, target: Target, detail: str) -> UpdateFailed:
        """gone (the pod or its container was replaced) or exec_refused, from the pod itself."""
        where = f"cannot sync into {target.label}"
        try:
            pod = read_pod(core, target.pod, target.namespace, timeouts.QUICK)
        except ApiException as exc:
            if exc.status == 404:
                return UpdateFailed("gone", f"{where}: the pod is gone")
            return UpdateFailed("exec_refused", f"{where}: exec refused ({detail});"
                                f" reading the pod failed too: {api_message(exc)}")
        except Exception:
            return UpdateFailed("exec_refused", f"{where}: exec refused ({detail})")
        if pod.deleting:
            return UpdateFailed("gone", f"{where}: the pod is being deleted")
        now = pod.running_id(target.container)
        if target.container_id and now and now != target.container_id:
            return UpdateFailed("gone", f"{where}: the container was restarted (now {now[:24]})")
        state = "" if now else " (the container is not running)"
        hint = exec_hint(detail)
        return UpdateFailed("exec_refused", f"{where}: exec refused{state}: {detail}"
                            + (f"; {hint}" if hint else ""))


def exec_hint(detail: str) -> str:
    """What to check, for the cause a failed exec's detail (`HTTP 403: ...`) names, and only
    for it: "" when the cause is not one of these."""
    status = re.match(r"HTTP (\d+)", detail)
    code = int(status.group(1)) if status else None
    if _KUBELET_DIAL.search(detail):
        return ("the API server cannot reach the kubelet on the pod's node (port 10250): check"
                " the node is Ready (kubectl get nodes) and its kubelet is running")
    if code == 403:
        return ("check RBAC allows you to create pods/exec in this namespace (kubectl auth"
                " can-i create pods/exec)")
    if code == 404:
        return "the pod or its container is gone (deleted or replaced)"
    return ""


def exec_transient(exc: BaseException) -> bool:
    """Whether opening an exec may succeed if tried again: 429, 5xx and dropped connections,
    but not the API server failing to dial the kubelet (a node problem: retrying within
    seconds does not fix it, and the hint says what to check)."""
    if not isinstance(exc, ApiException) or exc.status:
        return retry.is_transient(exc)
    text = str(exc.reason or "")
    if _KUBELET_DIAL.search(text):
        return False
    status = _HANDSHAKE.search(text)
    if status:  # the client wraps the handshake's answer in an ApiException of status 0
        return retry.is_transient(ApiException(status=int(status.group(1))))
    return bool(_DROPPED.search(text))


def _handshake_detail(exc: ApiException) -> str:
    """`HTTP 404: pods "x" not found` from the websocket client's multi-line reason."""
    text = str(exc.reason or exc)
    status = _HANDSHAKE.search(text)
    message = _MESSAGE.search(text)
    parts = [f"HTTP {status.group(1)}"] if status else []
    if message:
        parts.append(message.group(1).replace('\\"', '"'))
    return one_line(": ".join(parts) if parts else text, 200)


def _exit_status(raw: bytes) -> tuple[int | None, str]:
    """(exit code, message) from the error channel's Status; (None, why) when there is none."""
    if not raw:
        return None, ""
    try:
        status = json.loads(raw)
    except ValueError:
        return None, one_line(raw.decode("utf-8", errors="replace"), 200)
    if status.get("status") == "Success":
        return 0, ""
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            with contextlib.suppress(ValueError, TypeError):
                return int(cause.get("message")), ""
    return None, one_line(str(status.get("message") or status.get("reason") or status), 200)


# Docker ---------------------------------------------------------------------------------------
class DockerUpdater:
    """Live update through the Docker daemon that runs the container (only where `holds`).

    The first sync into a container (and any sync with deletes or into a directory not seen
    before) runs a prepare exec as the container's user: deletes, parent dirs, writability, the
    user's uid/gid. Those answers are remembered per container ID, so the usual edit-save of
    an already synced file is a single put_archive, without starting a process in the container.
    A restarted container has a new ID and is prepared again.
    """

    name = "docker"
    REMEMBERED = 64  # containers whose prepare answers are kept
    PREPARE_TRIES = 3  # runs of the prepare script when the engine loses its output

    def __init__(self, client: docker.DockerClient) -> None:
        self._api = client.api
        self._lock = threading.Lock()
        self._ready: dict[str, tuple[tuple[int, int], set[str]]] = {}  # id -> owner, dirs ok
        self._here: dict[str, bool] = {}  # container ID -> provably on this engine

    def holds(self, target: Target) -> bool:
        """Whether the pod's container provably runs on this engine, the one devloop uses.

        Proof, never a guess from the delivery or the context name: the kubelet's full
        `docker://<64 hex>` ID names a container here (IDs are random per engine; a prefix or a
        name never counts), and the Kubernetes labels a dockershim/cri-dockerd runtime sets, when
        present, name the same pod. The engine ID of `docker info` is no proof: engines sharing
        /etc/docker (a second dockerd on one host) report the same one. Answers are kept per ID.
        """
        runtime, cid = split_container_id(target.container_id)
        if runtime != "docker" or not re.fullmatch(r"[0-9a-f]{64}", cid):
            return False
        with self._lock:
            known = self._here.get(cid)
        if known is not None:
            return known
        try:
            info = self._api.inspect_container(cid)
        except Exception:  # not here (404), or the engine is unreachable: not proven
            return False
        labels = (info.get("Config") or {}).get("Labels") or {}
        here = info.get("Id") == cid and all(
            labels.get(key, value) == value for key, value in (
                ("io.kubernetes.pod.name", target.pod),
                ("io.kubernetes.pod.namespace", target.namespace),
                ("io.kubernetes.container.name", target.container)))
        with self._lock:
            self._here[cid] = here
            while len(self._here) > self.REMEMBERED:
                self._here.pop(next(iter(self._here)))
        return here

    def update(self, target: Target, copies: Sequence[tuple[Path, str]],
               deletes: Sequence[str], run: Sequence[str]) -> UpdateResult:
        began = time.monotonic()
        runtime, cid = split_container_id(target.container_id)
        if runtime != "docker":
            raise UpdateFailed("other", f"cannot sync into {target.label} through Docker: its"
                               f" container ID is {target.container_id or 'unknown'!r}")
        dests = [d for _, d in copies]
        dirs = {str(Path(d).parent) for d in dests}
        with self._lock:
            owner, known = self._ready.get(cid, ((0, 0), None))
        if deletes or known is None or not dirs <= known:
            with self._lock:  # a failure below must not leave stale answers behind
                self._ready.pop(cid, None)
            script = _fits(target, prepare_script(deletes, dests), len(dests) + len(deletes))
            owner = self._prepare(target, cid, script)
            known = {d for d in known or () if not any(within(d, g) for g in deletes)} | dirs
        archive = Archive(copies, owner)
        if archive.size:
            self._put(target, cid, archive)
        with self._lock:
            self._ready[cid] = (owner, known)
            while len(self._ready) > self.REMEMBERED:
                self._ready.pop(next(iter(self._ready)))
        archive.check()
        if run:
            self._run_script(target, cid, "\n".join(["exec 2>&1", *_run_lines(run)]), run)
        return UpdateResult(len(copies), len(deletes), archive.size, time.monotonic() - began,
                            self.name)

    def _prepare(self, target: Target, cid: str, script: str) -> tuple[int, int]:
        """Run the prepare script; its `id` line names the owner of the copied files. The
        engine sometimes loses a short exec's output (moby/moby#27289, docker-py#2042): the
        script is idempotent, so it runs again rather than files silently becoming root's."""
        for _ in range(self.PREPARE_TRIES):
            owner = _owner(self._run_script(target, cid, script, ()))
            if owner is not None:
                return owner
        raise UpdateFailed("other", f"cannot sync into {target.label} through Docker: the"
                           f" engine returned no output of the container's `id`"
                           f" {self.PREPARE_TRIES} times; a rebuild brings the change in")

    def _run_script(self, target: Target, cid: str, script: str, run: Sequence[str]) -> str:
        try:
            exec_id = self._api.exec_create(cid, ["sh", "-c", script], stdout=True,
                                            stderr=True)["Id"]
            output = self._api.exec_start(exec_id).decode("utf-8", errors="replace")
            code = self._api.exec_inspect(exec_id).get("ExitCode")
        except Exception as exc:
            raise _docker_failure(target, exc) from None
        if code != 0:
            raise classify(target, output, code, run)
        return output

    def _put(self, target: Target, cid: str, archive: Archive) -> None:
        """Streamed (a chunked request body). The daemon keeps the headers' uid/gid
        (copyUIDGID would look the user up in the image's /etc/passwd, which fails for a bare
        numeric runAsUser)."""
        try:
            self._api.put_archive(cid, "/", archive.chunks())
        except Exception as exc:
            raise _docker_failure(target, exc) from None


def _owner(output: str) -> tuple[int, int] | None:
    """The uid and gid the prepare script printed, or None when its output was lost."""
    for line in output.splitlines():
        if line.startswith(f"{MARK}id "):
            with contextlib.suppress(ValueError):
                uid, gid = line.split()[2:4]
                return int(uid), int(gid)
    return None


def _docker_failure(target: Target, exc: Exception) -> UpdateFailed:
    """The daemon's refusal, or the engine lost mid-sync (exec_refused: the exec API is tried
    instead); anything else is a bug and raised as it is."""
    where = f"cannot sync into {target.label} through Docker"
    if not isinstance(exc, docker.errors.APIError):
        if not is_docker_lost(exc):
            raise exc
        return UpdateFailed("exec_refused", f"{where}: the Docker Engine went away"
                            f" ({docker_lost_detail(exc)})")
    detail = one_line(str(exc.explanation or exc), 200)
    low = detail.lower()
    if isinstance(exc, docker.errors.NotFound):
        return UpdateFailed("gone", f"{where}: the container is gone ({detail})")
    if "no space left" in low:
        return UpdateFailed("disk_full", f"{where}: no space left ({detail})")
    if "read-only" in low or "permission denied" in low:
        return UpdateFailed("not_writable", f"{where}: {detail}")
    return UpdateFailed("exec_refused", f"{where}: {detail}")
