"""The local journal: every message is written here before it goes anywhere else.

SQLite from the standard library, in WAL mode, readable by the owner only. The background writer in
``mirror.py`` sends entries to Acontext in order and marks them sent; whatever it could not send
stays here for the next start or ``agent sync``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    configs TEXT NOT NULL,
    user TEXT,
    created INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    client_id TEXT NOT NULL UNIQUE,
    blob TEXT NOT NULL,
    meta TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    attempted INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX IF NOT EXISTS waiting ON messages(state, seq);
"""
WAITING, SENT, REJECTED = 0, 1, 2


@dataclass(frozen=True)
class Entry:
    """One journaled message and what is known of its delivery."""

    seq: int
    session_id: str
    client_id: str
    message: dict[str, Any]
    meta: dict[str, Any]
    attempted: bool


@dataclass(frozen=True)
class PendingSession:
    id: str
    configs: dict[str, Any]
    user: str | None


class Journal:
    """A thread-safe handle on the journal file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))  # private before SQLite opens it
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a crash of the process
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def add_session(self, session_id: str, configs: dict[str, Any], user: str | None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO sessions (id, configs, user) VALUES (?, ?, ?)",
                (session_id, json.dumps(configs), user),
            )

    def mark_created(self, session_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE sessions SET created = 1 WHERE id = ?", (session_id,))

    def uncreated_session(self, session_id: str) -> PendingSession | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, configs, user FROM sessions WHERE id = ? AND NOT created", (session_id,)
            ).fetchone()
        return PendingSession(row[0], json.loads(row[1]), row[2]) if row else None

    def add(
        self, session_id: str, client_id: str, message: dict[str, Any], meta: dict[str, Any]
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO messages (session_id, client_id, blob, meta) VALUES (?, ?, ?, ?)",
                (session_id, client_id, json.dumps(message), json.dumps(meta)),
            )

    def waiting(self, session_id: str) -> list[Entry]:
        """A session's unsent entries, in the order they were written."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, session_id, client_id, blob, meta, attempted FROM messages "
                "WHERE state = ? AND session_id = ? ORDER BY seq",
                (WAITING, session_id),
            ).fetchall()
        return [
            Entry(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]), bool(r[5])) for r in rows
        ]

    def sessions_waiting(self, *, first: str = "") -> list[str]:
        """Sessions with unsent messages, ``first`` first, then by their oldest waiting message."""
        with self._lock:
            rows = self._db.execute(
                "SELECT session_id FROM messages WHERE state = ? GROUP BY session_id "
                "ORDER BY session_id != ?, MIN(seq)",
                (WAITING, first),
            ).fetchall()
        return [row[0] for row in rows]

    def count_waiting(self, session_id: str | None = None) -> int:
        if session_id:
            return self._one(
                "SELECT COUNT(*) FROM messages WHERE state = ? AND session_id = ?",
                WAITING,
                session_id,
            )
        return self._one("SELECT COUNT(*) FROM messages WHERE state = ?", WAITING)

    def messages(self, session_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT blob FROM messages WHERE session_id = ? ORDER BY seq", (session_id,)
            ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def mark_attempted(self, seq: int) -> None:
        self._set("UPDATE messages SET attempted = 1 WHERE seq = ?", seq)

    def mark_sent(self, seq: int) -> None:
        self._set("UPDATE messages SET state = ? WHERE seq = ?", SENT, seq)

    def mark_rejected(self, seq: int, error: str) -> None:
        self._set("UPDATE messages SET state = ?, error = ? WHERE seq = ?", REJECTED, error, seq)

    def count_rejected(self) -> int:
        return self._one("SELECT COUNT(*) FROM messages WHERE state = ?", REJECTED)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _set(self, sql: str, *params: Any) -> None:
        with self._lock:
            self._db.execute(sql, params)

    def _one(self, sql: str, *params: Any) -> int:
        with self._lock:
            return int(self._db.execute(sql, params).fetchone()[0])
