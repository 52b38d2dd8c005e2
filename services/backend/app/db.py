"""SQLite access: connections with the right pragmas, forward migrations, a health probe.

One short-lived connection per request: SQLite opens in microseconds, and it keeps no state
that could go stale when the volume underneath changes (the health probe must notice that).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from .migrations import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger("app.db")

BUSY_TIMEOUT_MS = 5000


class DatabaseUnavailable(RuntimeError):
    """The database cannot be opened, written or migrated; the message says why."""


class Database:
    """Owns the database file path and knows how to open, migrate and probe it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._migrated = False

    def connect(self) -> sqlite3.Connection:
        """Open a connection in autocommit mode; callers group writes with `transaction`."""
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.row_factory = sqlite3.Row
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")  # durable across crashes in WAL mode
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def ensure_ready(self) -> None:
        """Create the directory and migrate the schema once per process; retried until it works.

        Retrying (instead of failing start-up) lets a pod whose volume was briefly unwritable
        recover without a restart, while /api/health reports 503 in the meantime.
        """
        if self._migrated:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self.connect()) as conn:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise DatabaseUnavailable(f"{self.path}: could not enable WAL (got {mode})")
                migrate(conn, self.path)
        except (OSError, sqlite3.Error) as exc:
            raise DatabaseUnavailable(f"{self.path}: {exc}") from exc
        self._migrated = True

    def check(self) -> None:
        """Prove the database is readable and writable right now (used by /api/health)."""
        self.ensure_ready()
        try:
            with closing(self.connect()) as conn:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version != SCHEMA_VERSION:
                    raise DatabaseUnavailable(
                        f"{self.path}: schema version {version}, expected {SCHEMA_VERSION}"
                    )
                conn.execute("SELECT 1 FROM users LIMIT 1").fetchone()  # reads real pages
                conn.execute("BEGIN IMMEDIATE")  # takes the write lock: fails when read-only
                conn.execute("ROLLBACK")
        except (OSError, sqlite3.Error) as exc:
            raise DatabaseUnavailable(f"{self.path}: {exc}") from exc


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT: take the write lock up front so busy_timeout applies."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Apply every migration above the database's user_version, each in its own transaction."""
    while True:
        with transaction(conn):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise DatabaseUnavailable(
                    f"{path}: schema version {version} is newer than this backend "
                    f"({SCHEMA_VERSION}); deploy a newer backend image"
                )
            if version == SCHEMA_VERSION:
                return version
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
        log.info("database migrated", extra={"fields": {"path": str(path), "to": version + 1}})
