"""Helpers for the frontend tests: the cached production build, server processes, stand-ins.

The frontend is built once per test session (and reused across sessions while its sources are
unchanged), then started as the same standalone `server.js` the image runs. Everything listens
on 127.0.0.1 only.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.ports import free_port

REPO = Path(__file__).resolve().parents[3]
FRONTEND_DIR = REPO / "services" / "frontend"
BACKEND_DIR = REPO / "services" / "backend"
VENV_PYTHON = REPO / ".venv" / "bin" / "python"

# Given to `next build` on purpose: if the proxy's backend URL were inlined at build time, the
# built server would keep calling this dead address instead of the one it is started with.
BUILD_TIME_API_URL = "http://127.0.0.1:9/build-time-url-must-not-be-used"

# Inputs of `next build`; a change to any of them invalidates the cached build.
BUILD_INPUTS = ("package.json", "package-lock.json", "next.config.mjs", "tsconfig.json",
                "next-env.d.ts", "app", "components", "lib", "public")
BUILD_STAMP = ".next/lumina-test-build.sha256"
INSTALL_STAMP = "node_modules/.lumina-test-lock.sha256"

# Next.js phones home with telemetry unless told not to; tests must stay on loopback.
NODE_ENV_BASE = {"NEXT_TELEMETRY_DISABLED": "1", "NPM_CONFIG_UPDATE_NOTIFIER": "false"}


def _digest(paths: list[Path], extra: str) -> str:
    sha = hashlib.sha256(extra.encode())
    for path in sorted(paths):
        sha.update(str(path.relative_to(FRONTEND_DIR)).encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()


def _build_input_files() -> list[Path]:
    files: list[Path] = []
    for name in BUILD_INPUTS:
        path = FRONTEND_DIR / name
        if path.is_dir():
            files.extend(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            files.append(path)
    return files


def _run(cmd: list[str], what: str, timeout: float) -> None:
    """Run a build step in the frontend dir; on failure show its output, not just an exit code."""
    env = {**os.environ, **NODE_ENV_BASE, "NEXT_PUBLIC_API_URL": BUILD_TIME_API_URL}
    result = subprocess.run(cmd, cwd=FRONTEND_DIR, env=env, capture_output=True, text=True,
                            timeout=timeout, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-4000:]
        raise AssertionError(
            f"{what} failed in {FRONTEND_DIR} (exit {result.returncode}):\n{output}"
        )


@dataclass(frozen=True)
class FrontendBuild:
    """A finished standalone build laid out like the image: server.js, .next/static, public/."""

    standalone_dir: Path

    @property
    def server_js(self) -> Path:
        return self.standalone_dir / "server.js"


def ensure_frontend_build() -> FrontendBuild:
    """`npm ci` and `next build` unless the previous build came from the same inputs; one test
    process at a time (parallel workers share services/frontend: who waited finds it built)."""
    if shutil.which("npm") is None:
        raise AssertionError("npm not found: the frontend tests need Node.js 20 and npm on PATH")
    frontend_fd = os.open(FRONTEND_DIR, os.O_RDONLY)
    try:
        fcntl.flock(frontend_fd, fcntl.LOCK_EX)
        return _build_frontend()
    finally:
        os.close(frontend_fd)


def _build_frontend() -> FrontendBuild:
    lock_digest = _digest([FRONTEND_DIR / "package-lock.json"], "")
    install_stamp = FRONTEND_DIR / INSTALL_STAMP
    # the stamp alone is not enough: an `npm ci` cut short (or run twice at once before the
    # lock) leaves it beside a node_modules without next
    if (not install_stamp.is_file() or install_stamp.read_text() != lock_digest
            or not (FRONTEND_DIR / "node_modules/.bin/next").exists()):
        _run(["npm", "ci", "--no-audit", "--no-fund"], "npm ci", timeout=300)
        install_stamp.write_text(lock_digest)

    build_digest = _digest(_build_input_files(), BUILD_TIME_API_URL)
    build_stamp = FRONTEND_DIR / BUILD_STAMP
    standalone = FRONTEND_DIR / ".next" / "standalone"
    if not (build_stamp.is_file() and build_stamp.read_text() == build_digest
            and (standalone / "server.js").is_file()):
        _run(["npm", "run", "build"], "npm run build", timeout=400)
        # The standalone output leaves static assets out; the Dockerfile copies them the same way.
        shutil.copytree(FRONTEND_DIR / ".next" / "static", standalone / ".next" / "static",
                        dirs_exist_ok=True)
        shutil.copytree(FRONTEND_DIR / "public", standalone / "public", dirs_exist_ok=True)
        build_stamp.write_text(build_digest)
    return FrontendBuild(standalone_dir=standalone)


class ManagedProcess:
    """A child process whose output goes to a log file that failures can quote."""

    def __init__(self, name: str, cmd: list[str], cwd: Path, env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail(self, chars: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_http_ok(self, url: str, timeout: float = 60) -> None:
        """Poll until `url` answers 200; fail early with the log if the process died."""
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode} before "
                                     f"{url} answered:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
                    last_error = f"HTTP {response.status}"
            except (urllib.error.URLError, OSError) as error:
                last_error = str(error)
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: {url} not ready after {timeout}s ({last_error}):\n"
                             f"{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


@dataclass
class FrontendServer:
    url: str
    process: ManagedProcess


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Reply = tuple[int, dict[str, str], bytes]


@dataclass
class StubUpstream:
    """A stand-in HTTP backend that records what reaches it and answers as told.

    Used where the test must see exactly what the proxy sent (headers, body, path), which the
    real backend does not expose.
    """

    name: str
    respond: Callable[[RecordedRequest], Reply] | None = None
    requests: list[RecordedRequest] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def default_reply(self, request: RecordedRequest) -> Reply:
        body = json.dumps({"backend": self.name, "method": request.method, "path": request.path})
        return 200, {"content-type": "application/json"}, body.encode()

    def start(self) -> StubUpstream:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                recorded = RecordedRequest(self.command, self.path,
                                           {k.lower(): v for k, v in self.headers.items()},
                                           self.rfile.read(length) if length else b"")
                upstream.requests.append(recorded)
                status, headers, body = (upstream.respond or upstream.default_reply)(recorded)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

            def log_message(self, format: str, *args: object) -> None:
                """Keep test output clean."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class FakeChatbot(StubUpstream):
    """Stands in for the chatbot service behind the real backend (`POST /chat`).

    The real chatbot is another team's service; this one keeps the browser test independent of
    it while honouring the same contract: it acts through the backend's REST API with the
    user's own bearer token. "add <title>" creates a todo that way; anything else is echoed.
    """

    backend_url: str = ""

    def __init__(self) -> None:
        super().__init__("chatbot")
        self.respond = self._chat

    def _chat(self, request: RecordedRequest) -> Reply:
        if (request.method, request.path) != ("POST", "/chat"):
            return 404, {"content-type": "application/json"}, b'{"detail":"not found"}'
        message = json.loads(request.body)["message"].strip()
        actions: list[dict[str, object]] = []
        if message.lower().startswith("add "):
            title = message[4:].strip()
            created = urllib.request.Request(
                f"{self.backend_url}/api/todos",
                data=json.dumps({"title": title}).encode(),
                method="POST",
                headers={"authorization": request.headers["authorization"],
                         "content-type": "application/json"},
            )
            with urllib.request.urlopen(created, timeout=10) as response:
                actions.append({"tool": "add_todo", "result": json.loads(response.read())})
            reply = f"Added “{title}” to your list."
        else:
            reply = f"You said: {message}"
        body = json.dumps({"reply": reply, "actions": actions}).encode()
        return 200, {"content-type": "application/json"}, body


def backend_import_error() -> str | None:
    """Why the real backend cannot start from the repo venv, or None when it can."""
    if not (BACKEND_DIR / "app" / "main.py").is_file():
        return f"{BACKEND_DIR}/app/main.py is missing"
    result = subprocess.run([str(VENV_PYTHON), "-c", "import app.main"], cwd=BACKEND_DIR,
                            capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        return result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "import failed"
    return None


def start_real_backend(
    chatbot_url: str, data_dir: Path, log_dir: Path
) -> tuple[str, ManagedProcess]:
    """Run the backend from services/backend with uvicorn on a free loopback port."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{data_dir}/lumina.db",
           "JWT_SECRET_KEY": "frontend-test-secret", "ENVIRONMENT": "development",
           "CHATBOT_URL": chatbot_url, "CORS_ORIGINS": "http://127.0.0.1"}
    for unset in ("SMTP_USER", "SMTP_PASS", "SMTP_HOST", "SMTP_PORT"):
        env.pop(unset, None)  # no welcome email leaves this machine
    proc = ManagedProcess("backend", [str(VENV_PYTHON), "-m", "uvicorn", "app.main:app",
                                      "--host", "127.0.0.1", "--port", str(port)],
                          cwd=BACKEND_DIR, env=env, log_dir=log_dir)
    url = f"http://127.0.0.1:{port}"
    proc.wait_http_ok(f"{url}/api/health", timeout=60)
    return url, proc


@dataclass
class LuminaStack:
    """The real backend (with a stand-in chatbot) behind the built frontend, all on loopback."""

    frontend_url: str
    backend_url: str
    chatbot: FakeChatbot
