"""Fixtures for the chatbot suite: the real chatbot and the real backend as loopback processes.

The stack is started once per session: the backend (`uvicorn app.main:app`, real SQLite file),
a chatbot without an API key (offline interpreter; the backend's CHATBOT_URL points here) and
a chatbot whose OPENROUTER_BASE_URL points at a small fake OpenAI-compatible server. The fake
stands in for OpenRouter only, a third-party service this machine cannot reach.
Each test starts with two users whose todo lists are empty.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.ports import free_port

REPO = Path(__file__).resolve().parents[3]
CHATBOT_DIR = REPO / "services" / "chatbot"
BACKEND_DIR = REPO / "services" / "backend"
FAKE_API_KEY = "test-openrouter-key-never-real-5f3a"
FAKE_MODEL = "test/fake-model"
JWT_SECRET = "chatbot-suite-only-jwt-secret-0123456789abcdef"
PASSWORD = "correct horse battery"
_emails = itertools.count(1)


def base_env() -> dict[str, str]:
    """A clean environment: nothing from the caller's shell (no stray API key) leaks in."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "SYSTEMROOT")
    return {k: os.environ[k] for k in keep if k in os.environ} | {"PYTHONUNBUFFERED": "1"}


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, path: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.logs()}"
                )
            try:
                if (
                    httpx2.get(self.base_url + path, timeout=1.0, trust_env=False).status_code
                    == 200
                ):
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not healthy on {path} after {timeout} s:\n{self.logs()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def spawn(name: str, cmd: list[str], cwd: Path, env: dict[str, str], logs: Path) -> Service:
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    port = env.get("MCP_SERVER_PORT") or cmd[cmd.index("--port") + 1]
    return Service(name, proc, f"http://127.0.0.1:{port}", log_path)


def chatbot_env(port: int, backend_url: str, **extra: str) -> dict[str, str]:
    return base_env() | {
        "MCP_SERVER_HOST": "127.0.0.1",
        "MCP_SERVER_PORT": str(port),
        "ENVIRONMENT": "development",
        "BACKEND_URL": backend_url,
        **extra,
    }


# ---------------------------------------------------------------- fake OpenAI-compatible model


@dataclass
class FakeModel:
    """Scripted chat-completions endpoint; records every request it receives.

    Scenarios are picked by the user's message, so one server serves every LLM test:
    - "water the plants": call add_todo, then answer from the tool result it is sent back;
    - "bad arguments": call add_todo without a title, then repeat the error it is sent;
    - "keep going": call list_todos forever (the chatbot must stop on its own);
    - "bad key": answer 401 like a provider rejecting the key;
    - "provider hiccup": answer 400 with a message that echoes the key.
    """

    url: str
    api_key: str = FAKE_API_KEY
    model: str = FAKE_MODEL
    requests: list[dict[str, Any]] = field(default_factory=list)

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        user_text = next(m["content"] for m in body["messages"] if m["role"] == "user")
        tool_messages = [m for m in body["messages"] if m["role"] == "tool"]
        if "bad key" in user_text:
            return 401, {"error": {"message": "No auth credentials found", "code": 401}}
        if "provider hiccup" in user_text:
            return 400, {"error": {"message": f"model unavailable for key {FAKE_API_KEY}"}}
        if "keep going" in user_text:
            return 200, _tool_call(f"call_{len(tool_messages)}", "list_todos", {})
        if "bad arguments" in user_text:
            if not tool_messages:
                return 200, _tool_call("call_bad", "add_todo", {"priority": "high"})
            return 200, _final(f"The tool said: {json.loads(tool_messages[-1]['content'])}")
        if "water the plants" in user_text:
            if not tool_messages:
                args = {"title": "water the plants", "priority": "high", "due_date": "2031-05-06"}
                return 200, _tool_call("call_add", "add_todo", args)
            todo = json.loads(tool_messages[-1]["content"])
            return 200, _final(f"Added #{todo['id']} {todo['title']} for {todo['due_date']}.")
        return 200, _final("I only know the scripted test scenarios.")


def _completion(message: dict[str, Any], finish: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": FAKE_MODEL,
        "choices": [{"index": 0, "finish_reason": finish, "message": message}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _tool_call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }
    return _completion({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls")


def _final(text: str) -> dict[str, Any]:
    return _completion({"role": "assistant", "content": text}, "stop")


@pytest.fixture(scope="session")
def fake_model() -> Iterator[FakeModel]:
    port = free_port()
    model = FakeModel(url=f"http://127.0.0.1:{port}/api/v1")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                model.requests.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
            status, payload = (
                model.answer(body)
                if self.path == "/api/v1/chat/completions"
                else (404, {"error": {"message": f"no route {self.path}"}})
            )
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield model
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------- the running stack


@dataclass
class Stack:
    backend: Service
    chatbot: Service  # offline interpreter; the backend's CHATBOT_URL
    llm_chatbot: Service  # talks to the fake model
    http: httpx2.Client

    def new_user(self) -> User:
        email = f"user{next(_emails)}-{os.getpid()}@example.com"
        r = self.http.post(
            f"{self.backend.base_url}/api/auth/register",
            json={"email": email, "password": PASSWORD},
        )
        assert r.status_code == 201, r.text
        user_id = r.json()["id"]
        r = self.http.post(
            f"{self.backend.base_url}/api/auth/login", json={"email": email, "password": PASSWORD}
        )
        assert r.status_code == 200, r.text
        return User(self, user_id, email, r.json()["access_token"])


@dataclass
class User:
    """A registered backend user and helpers that act with their token."""

    stack: Stack
    id: int
    email: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def chat(self, message: str, service: Service | None = None) -> dict[str, Any]:
        """POST /chat straight to a chatbot, as the backend does; asserts a 200 answer."""
        target = service or self.stack.chatbot
        r = self.stack.http.post(
            f"{target.base_url}/chat",
            headers=self.auth,
            json={"message": message, "user": {"id": self.id, "email": self.email}},
        )
        assert r.status_code == 200, r.text
        return r.json()

    def todos(self) -> list[dict[str, Any]]:
        """The user's todos read from the backend itself, never through the chatbot."""
        r = self.stack.http.get(f"{self.stack.backend.base_url}/api/todos", headers=self.auth)
        assert r.status_code == 200, r.text
        return r.json()

    def add(self, title: str, **fields: Any) -> dict[str, Any]:
        r = self.stack.http.post(
            f"{self.stack.backend.base_url}/api/todos",
            headers=self.auth,
            json={"title": title, **fields},
        )
        assert r.status_code == 201, r.text
        return r.json()


@pytest.fixture(scope="session")
def stack(fake_model: FakeModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not (BACKEND_DIR / "app" / "main.py").is_file():
        pytest.fail(f"the real backend is missing: {BACKEND_DIR / 'app' / 'main.py'}")
    work = tmp_path_factory.mktemp("chatbot-stack")
    backend_port, chatbot_port, llm_port = free_port(), free_port(), free_port()
    backend_url = f"http://127.0.0.1:{backend_port}"
    backend_env = base_env() | {
        "DATABASE_URL": f"sqlite:///{work}/lumina.db",
        "JWT_SECRET_KEY": JWT_SECRET,
        "ENVIRONMENT": "development",
        "CHATBOT_URL": f"http://127.0.0.1:{chatbot_port}",
        "CORS_ORIGINS": "http://localhost:3000",
    }
    services = [
        spawn(
            "backend",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(backend_port),
            ],
            BACKEND_DIR,
            backend_env,
            work,
        ),
        spawn(
            "chatbot",
            [sys.executable, "-m", "chatbot"],
            CHATBOT_DIR,
            chatbot_env(chatbot_port, backend_url),
            work,
        ),
        spawn(
            "llm-chatbot",
            [sys.executable, "-m", "chatbot"],
            CHATBOT_DIR,
            chatbot_env(
                llm_port,
                backend_url,
                OPENROUTER_API_KEY=FAKE_API_KEY,
                OPENROUTER_BASE_URL=fake_model.url,
                OPENROUTER_MODEL=FAKE_MODEL,
            ),
            work,
        ),
    ]
    http = httpx2.Client(timeout=30.0, trust_env=False)
    try:
        services[0].wait_healthy("/api/health")
        for service in services[1:]:
            service.wait_healthy("/health")
        yield Stack(*services, http=http)
    finally:
        http.close()
        for service in services:
            service.stop()


@pytest.fixture(scope="session")
def _registered(stack: Stack) -> tuple[User, User]:
    # Two accounts for the whole session (password hashing is deliberately slow); each test
    # starts from an empty list instead, see `fresh`.
    return stack.new_user(), stack.new_user()


def fresh(user: User) -> User:
    """`user` with every todo deleted through the backend API, so each test starts empty."""
    for todo in user.todos():
        r = user.stack.http.delete(
            f"{user.stack.backend.base_url}/api/todos/{todo['id']}", headers=user.auth
        )
        assert r.status_code == 204, r.text
    return user


@pytest.fixture
def user(_registered: tuple[User, User]) -> User:
    return fresh(_registered[0])


@pytest.fixture
def other_user(_registered: tuple[User, User]) -> User:
    return fresh(_registered[1])
