"""Todo rows, always scoped to their owner: another user's todo is indistinguishable from none."""

from __future__ import annotations

import sqlite3
from datetime import date
from typing import Any

from .db import transaction
from .timeutil import utc_now

COLUMNS = "id, title, description, done, priority, due_date, created_at, updated_at"
UPDATABLE = frozenset({"title", "description", "done", "priority", "due_date"})


def _to_dict(row: sqlite3.Row) -> dict[str, Any]:
    todo = dict(row)
    todo["done"] = bool(todo["done"])
    return todo


def _db_value(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


def list_todos(conn: sqlite3.Connection, user_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM todos WHERE user_id = ? ORDER BY id", (user_id,)
    ).fetchall()
    return [_to_dict(r) for r in rows]


def get_todo(conn: sqlite3.Connection, user_id: int, todo_id: int) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM todos WHERE id = ? AND user_id = ?", (todo_id, user_id)
    ).fetchone()
    return _to_dict(row) if row else None


def create_todo(
    conn: sqlite3.Connection,
    user_id: int,
    title: str,
    description: str | None,
    priority: str,
    due_date: date | None,
) -> dict[str, Any]:
    now = utc_now()
    with transaction(conn):
        cur = conn.execute(
            "INSERT INTO todos (user_id, title, description, done, priority, due_date,"
            " created_at, updated_at) VALUES (?, ?, ?, 0, ?, ?, ?, ?)",
            (user_id, title, description, priority, _db_value(due_date), now, now),
        )
    todo_id = cur.lastrowid
    assert todo_id is not None
    todo = get_todo(conn, user_id, todo_id)
    assert todo is not None
    return todo


def update_todo(
    conn: sqlite3.Connection, user_id: int, todo_id: int, changes: dict[str, Any]
) -> dict[str, Any] | None:
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    assignments = [f"{name} = ?" for name in changes] + ["updated_at = ?"]
    values = [_db_value(v) for v in changes.values()] + [utc_now(), todo_id, user_id]
    with transaction(conn):
        cur = conn.execute(
            f"UPDATE todos SET {', '.join(assignments)} WHERE id = ? AND user_id = ?", values
        )
    if cur.rowcount == 0:
        return None
    return get_todo(conn, user_id, todo_id)


def delete_todo(conn: sqlite3.Connection, user_id: int, todo_id: int) -> bool:
    with transaction(conn):
        cur = conn.execute("DELETE FROM todos WHERE id = ? AND user_id = ?", (todo_id, user_id))
    return cur.rowcount > 0
