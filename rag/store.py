"""The app's own database: one SQLite file in the index folder, for feedback and conversations.

SQLite through the standard library: no server, one file next to the index it belongs to.
WAL journal (readers never block the writer) and a busy timeout (a second writer waits for
the lock instead of failing with "database is locked"), so several browser tabs, the CLI and
`rag eval` can use it at once.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

FILE_NAME = "rag.sqlite3"

_TABLES = (
    "CREATE TABLE IF NOT EXISTS feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL, "
    "rating INTEGER NOT NULL, conversation_id TEXT NOT NULL, record TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY, title TEXT NOT NULL, created_at TEXT NOT NULL, "
    "updated_at TEXT NOT NULL, messages TEXT NOT NULL)",
)


def database(folder: Path) -> Path:
    return folder / FILE_NAME


def connect(folder: Path, create: bool = True) -> sqlite3.Connection | None:
    """A connection in autocommit mode (each statement its own transaction); None when the file
    does not exist and `create` is false (reading an empty store makes no file)."""
    path = database(folder)
    if not create and not path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    if create:
        db.execute("PRAGMA journal_mode=WAL")  # kept in the file once set
        for table in _TABLES:
            db.execute(table)
    return db


def rows(folder: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """The rows a query returns; none when the database does not exist yet (reading makes no file)."""
    db = connect(folder, create=False)
    if db is None:
        return []
    with closing(db):
        return db.execute(sql, params).fetchall()
