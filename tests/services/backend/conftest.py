"""Fixtures for the backend suite: the real app under uvicorn, real SQLite files, real servers.

Every test talks to a uvicorn subprocess on 127.0.0.1 over HTTP, the way the frontend and the
chatbot do. Nothing is mocked: SMTP and the chatbot are small real servers on loopback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ports import free_port

REPO = Path(__file__).resolve().parents[3]
BACKEND_DIR = REPO / "services" / "backend"
UVICORN = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port"]
BACKEND_ENV_VARS = (
    "DATABASE_URL",
    "CHATBOT_URL",
    "ENVIRONMENT",
    "CORS_ORIGINS",
    "JWT_SECRET_KEY",
    "JWT_EXPIRE_MINUTES",
    "SMTP_USER",
    "SMTP_PASS",
    "SMTP_HOST",
    "SMTP_PORT",
)
TEST_JWT_SECRET = "test-only-jwt-secret-0123456789abcdef0123456789"
# Root ignores file modes; dropping these capabilities makes it obey them like the pod's uid.
OBEY_FILE_MODES = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
PASSWORD = "correct horse battery"


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class BackendProcess:
    """One running `uvicorn app.main:app`, with its output captured to files."""

    proc: subprocess.Popen[bytes]
    base_url: str
    data_dir: Path
    env: dict[str, str]
    stdout_path: Path
    stderr_path: Path

    @property
    def db_path(self) -> Path:
        return self.data_dir / "lumina.db"

    def logs(self) -> str:
        return self.stdout_path.read_text() + self.stderr_path.read_text()

    def log_events(self) -> list[dict[str, Any]]:
        """The app's structured JSON log lines (uvicorn's own lines are skipped)."""
        events = []
        for line in self.stdout_path.read_text().splitlines():
            if line.startswith("{"):
                events.append(json.loads(line))
        return events

    def api(self) -> Api:
        return Api(httpx.Client(base_url=self.base_url, timeout=15, trust_env=False))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


class Api:
    """A thin HTTP client with the few calls most tests start with."""

    password = PASSWORD

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def register(self, email: str, password: str = PASSWORD, name: str | None = None):
        body: dict[str, Any] = {"email": email, "password": password}
        if name is not None:
            body["name"] = name
        return self.http.post("/api/auth/register", json=body)

    def login(self, email: str, password: str = PASSWORD) -> dict[str, str]:
        """Log in and return the Authorization header for the user."""
        r = self.http.post("/api/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def new_user(self, email: str) -> dict[str, str]:
        r = self.register(email)
        assert r.status_code == 201, r.text
        return self.login(email)

    def close(self) -> None:
        self.http.close()


@dataclass
class BackendLauncher:
    """Starts backends in a test's own directory and stops every one of them afterwards."""

    workdir: Path
    started: list[BackendProcess] = field(default_factory=list)

    def env(self, data_dir: Path, overrides: dict[str, str] | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in BACKEND_ENV_VARS}
        env.update(
            DATABASE_URL=f"sqlite://{data_dir}/lumina.db",
            CHATBOT_URL=f"http://127.0.0.1:{free_port()}",  # nothing listens there
            ENVIRONMENT="development",
            CORS_ORIGINS="http://localhost:3000",
            JWT_SECRET_KEY=TEST_JWT_SECRET,
        )
        for key, value in (overrides or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def start(
        self,
        data_dir: Path | None = None,
        env: dict[str, Any] | None = None,
        obey_file_modes: bool = False,
    ) -> BackendProcess:
        """Start uvicorn and wait until /api/health answers (with any status).

        obey_file_modes: when running as root, drop the capabilities that bypass file modes,
        so a read-only directory is read-only for the backend too (as for uid 10001 in a pod).
        """
        data_dir = data_dir or self.workdir / "data"
        port = free_port()
        n = len(self.started)
        stdout_path = self.workdir / f"backend-{n}.out"
        stderr_path = self.workdir / f"backend-{n}.err"
        full_env = self.env(data_dir, env)
        command = [*UVICORN, str(port)]
        if obey_file_modes and os.geteuid() == 0:
            command = OBEY_FILE_MODES + command
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            proc = subprocess.Popen(command, cwd=BACKEND_DIR, env=full_env, stdout=out, stderr=err)
        backend = BackendProcess(
            proc, f"http://127.0.0.1:{port}", data_dir, full_env, stdout_path, stderr_path
        )
        self.started.append(backend)

        def answering() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"backend exited with {proc.returncode}:\n{backend.logs()}")
            try:
                httpx.get(f"{backend.base_url}/api/health", timeout=1, trust_env=False)
            except httpx.TransportError:
                return False
            return True

        wait_until(answering, 20, "the backend to answer /api/health")
        return backend

    def run_to_exit(self, env: dict[str, Any], timeout: float = 20) -> subprocess.CompletedProcess:
        """Run a backend that is expected to refuse to start."""
        return subprocess.run(
            [*UVICORN, str(free_port())],
            cwd=BACKEND_DIR,
            env=self.env(self.workdir / "data", env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stop_all(self) -> None:
        for backend in self.started:
            backend.stop()


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[BackendLauncher]:
    launcher = BackendLauncher(tmp_path)
    yield launcher
    launcher.stop_all()


@pytest.fixture(scope="module")
def module_launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendLauncher]:
    """For backends shared by a module's tests (each test uses its own email addresses)."""
    launcher = BackendLauncher(tmp_path_factory.mktemp("backend"))
    yield launcher
    launcher.stop_all()


@pytest.fixture(scope="module")
def backend(module_launcher: BackendLauncher) -> BackendProcess:
    return module_launcher.start()


@pytest.fixture
def api(backend: BackendProcess) -> Iterator[Api]:
    client = backend.api()
    yield client
    client.close()


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FakeChatbot:
    """A real HTTP server on loopback standing in for the chatbot service (another team's code).

    It records every request and answers with whatever status/body the test sets.
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.status = 200
        self.body: bytes = json.dumps(
            {"reply": "Added 'buy milk'.", "actions": [{"tool": "add_todo", "result": {"id": 7}}]}
        ).encode()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                outer.requests.append(
                    RecordedRequest(
                        "POST",
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        self.rfile.read(length),
                    )
                )
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        self._running = True

    def shutdown(self) -> None:
        if self._running:
            self.server.shutdown()
            self.server.server_close()
            self._thread.join(timeout=5)
            self._running = False


@pytest.fixture(scope="module")
def module_fake_chatbot() -> Iterator[FakeChatbot]:
    server = FakeChatbot()
    yield server
    server.shutdown()


@dataclass
class SmtpCapture:
    """What the local SMTP server saw: logins and delivered messages."""

    host: str
    port: int
    logins: list[tuple[str, str]] = field(default_factory=list)
    messages: list[Any] = field(default_factory=list)  # email.message.Message
    tls_sessions: int = 0


def _self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1, so STARTTLS can be verified end to end."""
    cert, key = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[tuple[SmtpCapture, Path]]:
    """aiosmtpd on 127.0.0.1 offering STARTTLS and requiring AUTH over TLS, like Gmail's :587.

    Yields the capture and the CA file the backend must trust (passed as SSL_CERT_FILE).
    """
    import ssl
    from email import message_from_bytes

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = _self_signed_cert(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    capture = SmtpCapture("127.0.0.1", free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            capture.tls_sessions += 1 if session.ssl else 0
            msg = message_from_bytes(envelope.content)
            msg["X-Envelope-To"] = ",".join(envelope.rcpt_tos)
            capture.messages.append(msg)
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            capture.logins.append((auth_data.login.decode(), auth_data.password.decode()))
            ok = auth_data.login == b"mailer@example.com" and auth_data.password == b"app-pass"
            return AuthResult(success=ok)
        return AuthResult(success=False)

    controller = Controller(
        Handler(),
        hostname=capture.host,
        port=capture.port,
        tls_context=tls,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    controller.start()
    yield capture, cert
    controller.stop()
