"""Ordered schema migrations, keyed by SQLite's PRAGMA user_version.

Migration N (1-based) brings a database from user_version N-1 to N. Entries are only ever
appended: a released step is never edited, so every existing database (on a PVC that outlives
many pods) moves forward along the same path and keeps its rows.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # v1: first release, users and their todos.
    (
        """
        CREATE TABLE users (
            id            INTEGER PRIMARY KEY AUTOINCREMENT,
            email         TEXT    NOT NULL UNIQUE COLLATE NOCASE,
            name          TEXT,
            password_hash TEXT    NOT NULL,
            created_at    TEXT    NOT NULL
        )
        """,
        """
        CREATE TABLE todos (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            title       TEXT    NOT NULL,
            description TEXT,
            done        INTEGER NOT NULL DEFAULT 0 CHECK (done IN (0, 1)),
            created_at  TEXT    NOT NULL,
            updated_at  TEXT    NOT NULL
        )
        """,
    ),
    # v2: priority and due date; existing todos become medium priority with no due date.
    (
        """
        ALTER TABLE todos ADD COLUMN priority TEXT NOT NULL DEFAULT 'medium'
            CHECK (priority IN ('low', 'medium', 'high'))
        """,
        "ALTER TABLE todos ADD COLUMN due_date TEXT",
        "CREATE INDEX IF NOT EXISTS todos_user_id ON todos(user_id, id)",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)
