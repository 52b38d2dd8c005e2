"""SQLite on a volume that outlives pods: restarts, forward migrations, unusable storage."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from argon2 import PasswordHasher

if TYPE_CHECKING:  # conftest is loaded by pytest; importing it at run time could pick another
    from conftest import BackendLauncher

RUNNING_AS_ROOT = os.geteuid() == 0

# The schema exactly as release 1 (user_version 1) wrote it: no priority, no due_date.
V1_SCHEMA = """
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    name          TEXT,
    password_hash TEXT    NOT NULL,
    created_at    TEXT    NOT NULL
);
CREATE TABLE todos (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    title       TEXT    NOT NULL,
    description TEXT,
    done        INTEGER NOT NULL DEFAULT 0 CHECK (done IN (0, 1)),
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);
PRAGMA user_version = 1;
"""


def test_data_survives_a_killed_process(launcher: BackendLauncher, tmp_path: Path) -> None:
    data_dir = tmp_path / "volume"
    first = launcher.start(data_dir, env={"DATABASE_URL": f"sqlite://{data_dir}/lumina.db"})
    api = first.api()
    auth = api.new_user("durable@example.com")
    for title in ("one", "two", "three"):
        api.http.post("/api/todos", json={"title": title, "priority": "high"}, headers=auth)
    todos = api.http.get("/api/todos", headers=auth).json()
    api.http.patch(f"/api/todos/{todos[1]['id']}", json={"done": True}, headers=auth)
    todos = api.http.get("/api/todos", headers=auth).json()

    first.stop(signal.SIGKILL)  # the pod is replaced without a graceful shutdown

    # The SQLAlchemy-style four-slash URL names the same absolute file.
    second = launcher.start(data_dir, env={"DATABASE_URL": f"sqlite:///{data_dir}/lumina.db"})
    api2 = second.api()
    assert api2.http.get("/api/todos", headers=auth).json() == todos  # old token still valid
    assert api2.http.get("/api/todos", headers=api2.login("durable@example.com")).json() == todos
    assert api2.register("durable@example.com").status_code == 409
    assert {p.name for p in data_dir.iterdir()} <= {"lumina.db", "lumina.db-wal", "lumina.db-shm"}


def test_release_1_database_migrates_forward_keeping_rows(
    launcher: BackendLauncher, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    db_file = data_dir / "lumina.db"
    with closing(sqlite3.connect(db_file)) as conn:
        conn.executescript(V1_SCHEMA)
        conn.execute(
            "INSERT INTO users (email, name, password_hash, created_at) VALUES (?, ?, ?, ?)",
            (
                "old@example.com",
                "Old",
                PasswordHasher().hash("old password 1"),
                "2025-01-01T00:00:00Z",
            ),
        )
        conn.executemany(
            "INSERT INTO todos (user_id, title, description, done, created_at, updated_at)"
            " VALUES (1, ?, ?, ?, '2025-01-02T00:00:00Z', '2025-01-03T00:00:00Z')",
            [("water plants", "the big ones", 0), ("call mum", None, 1)],
        )
        conn.commit()

    backend = launcher.start(data_dir)
    api = backend.api()
    assert api.http.get("/api/health").json() == {"status": "ok", "database": "ok"}
    auth = api.login("old@example.com", "old password 1")
    todos = api.http.get("/api/todos", headers=auth).json()
    assert [
        (t["title"], t["description"], t["done"], t["priority"], t["due_date"], t["created_at"])
        for t in todos
    ] == [
        ("water plants", "the big ones", False, "medium", None, "2025-01-02T00:00:00Z"),
        ("call mum", None, True, "medium", None, "2025-01-02T00:00:00Z"),
    ]
    r = api.http.patch(
        f"/api/todos/{todos[0]['id']}",
        json={"priority": "high", "due_date": "2026-05-01"},
        headers=auth,
    )
    assert (r.json()["priority"], r.json()["due_date"]) == ("high", "2026-05-01")

    with closing(sqlite3.connect(db_file)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_database_from_a_newer_release_is_refused_not_touched(
    launcher: BackendLauncher, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with closing(sqlite3.connect(data_dir / "lumina.db")) as conn:
        conn.executescript(V1_SCHEMA + "PRAGMA user_version = 99;")

    backend = launcher.start(data_dir)
    r = backend.api().http.get("/api/health")
    assert r.status_code == 503
    assert "schema version 99 is newer than this backend" in r.json()["detail"]
    with closing(sqlite3.connect(data_dir / "lumina.db")) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 99


def test_health_is_503_when_the_database_file_is_corrupt(launcher: BackendLauncher) -> None:
    backend = launcher.start()
    api = backend.api()
    auth = api.new_user("corrupt@example.com")
    assert api.http.get("/api/health").status_code == 200

    backend.db_path.write_bytes(b"this is not an sqlite database" * 1000)

    r = api.http.get("/api/health")
    assert r.status_code == 503
    assert r.json()["status"] == "error"
    assert "file is not a database" in r.json()["detail"]
    listed = api.http.get("/api/todos", headers=auth)
    assert (listed.status_code, listed.json()) == (503, {"detail": "database unavailable"})


@pytest.mark.skipif(
    RUNNING_AS_ROOT and shutil.which("setpriv") is None,
    reason="as root, file modes are only enforced with setpriv (util-linux) available",
)
def test_health_follows_whether_the_data_volume_is_writable(
    launcher: BackendLauncher, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_dir.chmod(0o555)  # e.g. a volume mounted without fsGroup
    backend = launcher.start(data_dir, obey_file_modes=True)
    api = backend.api()

    r = api.http.get("/api/health")
    assert r.status_code == 503, r.text
    assert str(data_dir) in r.json()["detail"]
    assert any(e["event"] == "database unavailable at start-up" for e in backend.log_events())

    data_dir.chmod(0o755)  # fixed without restarting the pod: the backend recovers by itself
    assert api.http.get("/api/health").json() == {"status": "ok", "database": "ok"}
    auth = api.new_user("writable@example.com")
    api.http.post("/api/todos", json={"title": "survive"}, headers=auth)

    files = [data_dir, *data_dir.iterdir()]
    for path in files:  # the volume turns read-only under the running pod
        path.chmod(0o555 if path.is_dir() else 0o444)
    r = api.http.get("/api/health")
    assert r.status_code == 503
    assert "readonly" in r.json()["detail"]
    assert api.http.post("/api/todos", json={"title": "x"}, headers=auth).status_code == 503

    for path in files:
        path.chmod(0o755 if path.is_dir() else 0o644)
    assert api.http.get("/api/health").status_code == 200
    assert [t["title"] for t in api.http.get("/api/todos", headers=auth).json()] == ["survive"]
