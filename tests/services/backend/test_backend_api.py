"""The REST API as the frontend and the chatbot use it: auth, todos, isolation, CORS."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import jwt

if TYPE_CHECKING:  # conftest is loaded by pytest; importing it at run time could pick another
    from conftest import Api, BackendProcess


def test_health_reports_database_ok(api: Api) -> None:
    r = api.http.get("/api/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "database": "ok"}


def test_register_login_me(api: Api, backend: BackendProcess) -> None:
    r = api.register("Ada@Example.com", name="Ada")
    assert r.status_code == 201
    created = r.json()
    assert created == {"id": created["id"], "email": "ada@example.com", "name": "Ada"}

    r = api.http.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": api.password}
    )
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer"
    claims = jwt.decode(body["access_token"], backend.env["JWT_SECRET_KEY"], algorithms=["HS256"])
    assert claims["exp"] > datetime.now(UTC).timestamp()  # tokens expire

    me = api.http.get("/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json() == created


def test_register_rejects_taken_email_case_insensitively(api: Api) -> None:
    assert api.register("grace@example.com").status_code == 201
    r = api.register("GRACE@example.com")
    assert r.status_code == 409
    assert "already exists" in r.json()["detail"]


def test_register_rejects_bad_input(api: Api) -> None:
    assert api.register("not-an-email").status_code == 422
    assert api.register("short@example.com", password="short").status_code == 422
    r = api.http.post("/api/auth/register", json={"email": "x@example.com"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "password"]


def test_login_failures_are_401(api: Api) -> None:
    assert api.register("linus@example.com").status_code == 201
    wrong = api.http.post(
        "/api/auth/login", json={"email": "linus@example.com", "password": "wrong password"}
    )
    unknown = api.http.post(
        "/api/auth/login", json={"email": "nobody@example.com", "password": api.password}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "incorrect email or password"}


def test_protected_routes_need_a_valid_unexpired_token(api: Api, backend: BackendProcess) -> None:
    api.register("ken@example.com")
    user_id = api.http.get("/api/auth/me", headers=api.login("ken@example.com")).json()["id"]

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    now = datetime.now(UTC)
    expired = jwt.encode(
        {"sub": str(user_id), "iat": now - timedelta(hours=2), "exp": now - timedelta(hours=1)},
        backend.env["JWT_SECRET_KEY"],
        algorithm="HS256",
    )
    forged = jwt.encode(
        {"sub": str(user_id), "exp": now + timedelta(hours=1)},
        "another-secret-" * 3,
        algorithm="HS256",
    )
    assert api.http.get("/api/auth/me").status_code == 401
    assert api.http.get("/api/todos", headers=bearer("garbage")).status_code == 401
    assert api.http.get("/api/todos", headers=bearer(forged)).status_code == 401
    r = api.http.get("/api/todos", headers=bearer(expired))
    assert r.status_code == 401
    assert "expired" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"


def test_todo_crud(api: Api) -> None:
    auth = api.new_user("margaret@example.com")
    r = api.http.post("/api/todos", json={"title": "  buy milk  "}, headers=auth)
    assert r.status_code == 201
    todo = r.json()
    assert todo["title"] == "buy milk"
    assert (todo["description"], todo["done"], todo["priority"], todo["due_date"]) == (
        None,
        False,
        "medium",
        None,
    )
    assert todo["created_at"] and todo["updated_at"]

    full = {
        "title": "file taxes",
        "description": "before April",
        "priority": "high",
        "due_date": "2026-04-15",
    }
    second = api.http.post("/api/todos", json=full, headers=auth).json()
    assert {k: second[k] for k in full} == full

    r = api.http.patch(
        f"/api/todos/{todo['id']}", json={"done": True, "priority": "low"}, headers=auth
    )
    assert r.status_code == 200
    assert (r.json()["done"], r.json()["priority"], r.json()["title"]) == (True, "low", "buy milk")

    r = api.http.patch(f"/api/todos/{second['id']}", json={"due_date": None}, headers=auth)
    assert r.json()["due_date"] is None

    listed = api.http.get("/api/todos", headers=auth).json()
    assert [t["id"] for t in listed] == [todo["id"], second["id"]]
    assert api.http.get(f"/api/todos/{todo['id']}", headers=auth).json()["done"] is True

    assert api.http.delete(f"/api/todos/{todo['id']}", headers=auth).status_code == 204
    assert api.http.get(f"/api/todos/{todo['id']}", headers=auth).status_code == 404
    assert [t["id"] for t in api.http.get("/api/todos", headers=auth).json()] == [second["id"]]


def test_todo_validation(api: Api) -> None:
    auth = api.new_user("barbara@example.com")
    bad_bodies = [
        {"title": ""},
        {"title": "x", "priority": "urgent"},
        {"title": "x", "due_date": "next tuesday"},
        {"title": "x", "completed": True},  # typo for `done` must not pass silently
    ]
    for body in bad_bodies:
        assert api.http.post("/api/todos", json=body, headers=auth).status_code == 422, body
    todo = api.http.post("/api/todos", json={"title": "ok"}, headers=auth).json()
    for body in ({"title": None}, {"done": None}, {"priority": "soon"}):
        r = api.http.patch(f"/api/todos/{todo['id']}", json=body, headers=auth)
        assert r.status_code == 422, body
    assert api.http.get(f"/api/todos/{todo['id']}", headers=auth).json()["title"] == "ok"


def test_users_only_see_their_own_todos(api: Api) -> None:
    alice = api.new_user("alice@example.com")
    bob = api.new_user("bob@example.com")
    secret = api.http.post("/api/todos", json={"title": "alice's secret"}, headers=alice).json()

    assert api.http.get("/api/todos", headers=bob).json() == []
    path = f"/api/todos/{secret['id']}"
    assert api.http.get(path, headers=bob).status_code == 404
    assert api.http.patch(path, json={"done": True}, headers=bob).status_code == 404
    assert api.http.delete(path, headers=bob).status_code == 404

    unchanged = api.http.get(path, headers=alice).json()
    assert unchanged == secret
    assert [t["title"] for t in api.http.get("/api/todos", headers=alice).json()] == [
        "alice's secret"
    ]


def test_cors_allows_only_configured_origins(api: Api) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    ok = api.http.options("/api/todos", headers={"Origin": "http://localhost:3000", **preflight})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "http://localhost:3000"
    bad = api.http.options("/api/todos", headers={"Origin": "http://evil.example", **preflight})
    assert "access-control-allow-origin" not in bad.headers


def test_logs_are_json_lines_without_secrets(backend: BackendProcess, api: Api) -> None:
    password = "very-private-password-42"
    assert api.register("logcheck@example.com", password=password).status_code == 201
    token = api.login("logcheck@example.com", password)["Authorization"].split()[1]
    api.http.get("/api/todos", headers={"Authorization": f"Bearer {token}"})

    events = backend.log_events()
    assert any(e["event"] == "user registered" for e in events)
    assert all({"ts", "level", "logger", "event"} <= e.keys() for e in events)
    logs = backend.logs()
    for secret in (password, token, backend.env["JWT_SECRET_KEY"]):
        assert secret not in logs


def test_welcome_email_is_skipped_with_a_log_line_without_smtp_credentials(
    backend: BackendProcess, api: Api
) -> None:
    assert "SMTP_USER" not in backend.env and "SMTP_PASS" not in backend.env
    assert api.register("nomail@example.com").status_code == 201

    def skipped() -> list[dict]:
        return [
            e
            for e in backend.log_events()
            if e["event"] == "welcome email skipped: SMTP_USER/SMTP_PASS not set"
            and e["to"] == "nomail@example.com"
        ]

    deadline = time.monotonic() + 10
    while not skipped() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert skipped(), backend.logs()
