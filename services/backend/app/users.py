"""User rows: create, look up, refresh a password hash."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from .db import transaction
from .timeutil import utc_now


class EmailTaken(ValueError):
    """Another account already uses this email address."""


@dataclass(frozen=True)
class User:
    id: int
    email: str
    name: str | None
    password_hash: str


def _row_to_user(row: sqlite3.Row | None) -> User | None:
    if row is None:
        return None
    return User(row["id"], row["email"], row["name"], row["password_hash"])


def create_user(conn: sqlite3.Connection, email: str, name: str | None, password_hash: str) -> User:
    try:
        with transaction(conn):
            cur = conn.execute(
                "INSERT INTO users (email, name, password_hash, created_at) VALUES (?, ?, ?, ?)",
                (email, name, password_hash, utc_now()),
            )
    except sqlite3.IntegrityError:
        raise EmailTaken(email) from None
    user_id = cur.lastrowid
    assert user_id is not None
    return User(user_id, email, name, password_hash)


def find_by_email(conn: sqlite3.Connection, email: str) -> User | None:
    row = conn.execute("SELECT * FROM users WHERE email = ?", (email,)).fetchone()
    return _row_to_user(row)


def get_user(conn: sqlite3.Connection, user_id: int) -> User | None:
    row = conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
    return _row_to_user(row)


def set_password_hash(conn: sqlite3.Connection, user_id: int, password_hash: str) -> None:
    with transaction(conn):
        conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))
