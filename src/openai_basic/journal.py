"""The local journal: every message is written here before it goes anywhere else.

SQLite from the standard library, in WAL mode, readable by the owner only. The background writer in
``mirror.py`` sends entries to Acontext in order and marks them sent; whatever it could not send
stays here for the next start or ``agent sync``.

Several processes may share one journal (two agents in one folder, ``agent sync`` while one
chats). A process sends a session's messages only while it holds that session's claim, an OS lock
on a file of the state folder, so each session has one sender at a time. The lock goes with the
process that holds it, so a crashed sender never blocks the others.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import sqlite3
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openai_basic.errors import ConfigError, JournalError, StateError
from openai_basic.text import valid_data

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
CREATE TABLE IF NOT EXISTS learning_spaces (
    user TEXT PRIMARY KEY,
    id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS learns (
    session_id TEXT PRIMARY KEY,
    space_id TEXT,
    user TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
"""
# A learn waits to be sent (right after its session is created), was sent, or was refused. A
# learn without a space id goes to the space remembered for its user ('' for none).
LEARN_WAITING, LEARNED, LEARN_FAILED = 0, 1, 2
# A rejected message holds its session: nothing after it is sent until it is skipped.
WAITING, SENT, REJECTED, SKIPPED = 0, 1, 2, 3
JOURNAL_FILE = "journal.sqlite3"
BUSY_SECONDS = 15  # how long a write waits for another process's write to finish
_HELD = (
    f"EXISTS (SELECT 1 FROM messages r WHERE r.session_id = m.session_id AND r.state = {REJECTED})"
)


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
class Held:
    """A message Acontext rejected; the later messages of its session wait behind it."""

    session_id: str
    client_id: str
    kind: str
    error: str
    behind: int


@dataclass(frozen=True)
class Learn:
    """A session to attach to a learning space, and how far that went."""

    session_id: str
    space_id: str | None
    user: str
    state: int
    error: str


@dataclass(frozen=True)
class PendingSession:
    id: str
    configs: dict[str, Any]
    user: str | None


class Journal:
    """A thread-safe handle on the journal of a state folder."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / JOURNAL_FILE
        self._claims = state_dir / "claims"
        self._lock = threading.Lock()
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._claims.mkdir(mode=0o700, exist_ok=True)
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))  # private before SQLite
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(_unusable(state_dir, exc)) from exc
        try:
            self._db.execute(f"PRAGMA busy_timeout={BUSY_SECONDS * 1000}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a crash of the process
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self._db.close()
            # another process holding it too long passes; a damaged file needs the user
            failure = JournalError if "locked" in str(exc) else StateError
            raise failure(_explain(self.path, exc)) from exc

    # -- writing ---------------------------------------------------------------------------

    def add_session(self, session_id: str, configs: dict[str, Any], user: str | None) -> None:
        self._run(
            "INSERT OR IGNORE INTO sessions (id, configs, user) VALUES (?, ?, ?)",
            session_id,
            json.dumps(valid_data(configs)),
            user,
        )

    def mark_created(self, session_id: str) -> None:
        self._run("UPDATE sessions SET created = 1 WHERE id = ?", session_id)

    def add(
        self, session_id: str, client_id: str, message: dict[str, Any], meta: dict[str, Any]
    ) -> None:
        self._run(
            "INSERT INTO messages (session_id, client_id, blob, meta) VALUES (?, ?, ?, ?)",
            session_id,
            client_id,
            json.dumps(valid_data(message)),
            json.dumps(valid_data(meta)),
        )

    def discard(self, session_id: str) -> None:
        """Forget a session that never reached Acontext, and its messages, at once."""
        with self._lock, self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "DELETE FROM messages WHERE session_id = "
                    "(SELECT id FROM sessions WHERE id = ? AND NOT created)",
                    (session_id,),
                )
                self._db.execute("DELETE FROM sessions WHERE id = ? AND NOT created", (session_id,))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def mark_attempted(self, seq: int) -> None:
        self._run("UPDATE messages SET attempted = 1 WHERE seq = ?", seq)

    def mark_sent(self, seq: int) -> None:
        self._run("UPDATE messages SET state = ? WHERE seq = ?", SENT, seq)

    def mark_rejected(self, seq: int, error: str) -> None:
        self._run("UPDATE messages SET state = ?, error = ? WHERE seq = ?", REJECTED, error, seq)

    def skip(self, client_id: str) -> list[Entry]:
        """Give up on a rejected message, and on the tool answers to its tool calls."""
        found = self._entries("WHERE client_id = ? AND state = ?", client_id, REJECTED)
        if not found:
            raise ConfigError(f"no rejected message {client_id!r} in {self.path}")
        rejected = found[0]
        calls = {call.get("id") for call in rejected.message.get("tool_calls") or []}
        after = (entry for entry in self.unsent(rejected.session_id) if entry.seq > rejected.seq)
        answers = itertools.takewhile(
            lambda entry: (
                entry.message.get("role") == "tool" and entry.message.get("tool_call_id") in calls
            ),
            after,
        )
        skipped = [rejected, *answers]
        for entry in skipped:
            self._run("UPDATE messages SET state = ? WHERE seq = ?", SKIPPED, entry.seq)
        return skipped

    def retry_held(self) -> int:
        """Let every rejected message be tried again (after its cause was fixed)."""
        with self._lock, self._errors():
            return self._db.execute(
                "UPDATE messages SET state = ? WHERE state = ?", (WAITING, REJECTED)
            ).rowcount

    # -- reading ---------------------------------------------------------------------------

    def uncreated_session(self, session_id: str) -> PendingSession | None:
        with self._lock, self._errors():
            row = self._db.execute(
                "SELECT id, configs, user FROM sessions WHERE id = ? AND NOT created", (session_id,)
            ).fetchone()
        return PendingSession(row[0], valid_data(json.loads(row[1])), row[2]) if row else None

    def newest_unsent_session(self, tag: str) -> str | None:
        """The newest session tagged ``tag`` (in its configs) that has messages but has not
        reached Acontext yet."""
        with self._lock, self._errors():
            rows = self._db.execute(
                "SELECT id, configs FROM sessions s WHERE NOT created AND EXISTS "
                "(SELECT 1 FROM messages m WHERE m.session_id = s.id) ORDER BY rowid DESC"
            ).fetchall()
            return next((row[0] for row in rows if json.loads(row[1]).get("agent") == tag), None)

    def sendable(self, session_id: str) -> list[Entry]:
        """A session's unsent messages in order; none while a rejected message holds it."""
        return self._entries(
            f"WHERE state = ? AND session_id = ? AND NOT {_HELD} ORDER BY seq",
            WAITING,
            session_id,
        )

    def unsent(self, session_id: str) -> list[Entry]:
        """A session's messages not in Acontext yet, rejected ones included, in order."""
        return self._entries(
            "WHERE state IN (?, ?) AND session_id = ? ORDER BY seq",
            WAITING,
            REJECTED,
            session_id,
        )

    def sessions_waiting(self, *, first: str = "") -> list[str]:
        """Sessions with messages to send, ``first`` first, then by their oldest message."""
        with self._lock, self._errors():
            rows = self._db.execute(
                f"SELECT session_id FROM messages m WHERE state = ? AND NOT {_HELD} "
                "GROUP BY session_id ORDER BY session_id != ?, MIN(seq)",
                (WAITING, first),
            ).fetchall()
        return [row[0] for row in rows]

    def count_waiting(self, session_id: str | None = None) -> int:
        """Messages that can be sent (those behind a rejected message are counted in ``held``)."""
        where = "AND session_id = ?" if session_id else ""
        params = (WAITING, session_id) if session_id else (WAITING,)
        with self._lock, self._errors():
            row = self._db.execute(
                f"SELECT COUNT(*) FROM messages m WHERE state = ? AND NOT {_HELD} {where}", params
            ).fetchone()
        return int(row[0])

    def held(self, session_id: str | None = None) -> list[Held]:
        """The rejected messages that hold their sessions, oldest first."""
        with self._lock, self._errors():
            rows = self._db.execute(
                "SELECT session_id, client_id, blob, error, (SELECT COUNT(*) FROM messages w "
                "WHERE w.session_id = m.session_id AND w.state = ?) FROM messages m "
                "WHERE state = ? AND (? IS NULL OR session_id = ?) ORDER BY seq",
                (WAITING, REJECTED, session_id, session_id),
            ).fetchall()
            return [
                Held(row[0], row[1], kind(json.loads(row[2])), str(row[3] or ""), int(row[4]))
                for row in rows
            ]

    def messages(self, session_id: str) -> list[dict[str, Any]]:
        """Every message of a session, whatever its state, in order."""
        return [
            entry.message
            for entry in self._entries("WHERE session_id = ? ORDER BY seq", session_id)
        ]

    # -- learning spaces: the space of each user, and the sessions to attach ------------------

    def remembered_space(self, user: str) -> str | None:
        with self._lock, self._errors():
            row = self._db.execute(
                "SELECT id FROM learning_spaces WHERE user = ?", (user,)
            ).fetchone()
        return str(row[0]) if row else None

    def remember_space(self, user: str, space_id: str) -> str:
        """Remember the user's space, unless another process did first; return the one kept."""
        self._run("INSERT OR IGNORE INTO learning_spaces (user, id) VALUES (?, ?)", user, space_id)
        return self.remembered_space(user) or space_id

    def forget_space(self, user: str, space_id: str) -> None:
        self._run("DELETE FROM learning_spaces WHERE user = ? AND id = ?", user, space_id)

    def add_learn(self, session_id: str, space_id: str | None, user: str) -> None:
        self._run(
            "INSERT OR IGNORE INTO learns (session_id, space_id, user) VALUES (?, ?, ?)",
            session_id,
            space_id,
            user,
        )

    def learn(self, session_id: str) -> Learn | None:
        with self._lock, self._errors():
            row = self._db.execute(
                "SELECT session_id, space_id, user, state, error FROM learns WHERE session_id = ?",
                (session_id,),
            ).fetchone()
        return Learn(row[0], row[1], row[2], row[3], row[4] or "") if row else None

    def mark_learned(self, session_id: str, space_id: str) -> None:
        self._run(
            "UPDATE learns SET state = ?, space_id = ? WHERE session_id = ?",
            LEARNED,
            space_id,
            session_id,
        )

    def mark_learn_failed(self, session_id: str, space_id: str | None, error: str) -> None:
        self._run(
            "UPDATE learns SET state = ?, space_id = ?, error = ? WHERE session_id = ?",
            LEARN_FAILED,
            space_id,
            error,
            session_id,
        )

    def sessions_to_learn(self) -> list[str]:
        """Sessions in Acontext already whose learn waits (a resumed session, ``/learn``)."""
        with self._lock, self._errors():
            rows = self._db.execute(
                "SELECT l.session_id FROM learns l JOIN sessions s ON s.id = l.session_id "
                "WHERE l.state = ? AND s.created",
                (LEARN_WAITING,),
            ).fetchall()
        return [row[0] for row in rows]

    @contextmanager
    def claim(self, session_id: str) -> Iterator[bool]:
        """Hold the right to send this session, if no other sender holds it (yields whether)."""
        try:
            fd = os.open(self._claims / f"{session_id}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as exc:
            raise JournalError(_explain(self._claims, exc)) from exc
        try:
            if not _try_lock(fd):
                yield False
                return
            try:
                yield True
            finally:
                _unlock(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- plumbing ----------------------------------------------------------------------------

    def _run(self, sql: str, *params: Any) -> None:
        with self._lock, self._errors():
            self._db.execute(sql, params)

    def _entries(self, where: str, *params: Any) -> list[Entry]:
        """The messages ``where`` says, as entries (``m`` names the row)."""
        with self._lock, self._errors():
            rows = self._db.execute(
                "SELECT seq, session_id, client_id, blob, meta, attempted FROM messages m " + where,
                params,
            ).fetchall()
            return [_entry(*row) for row in rows]

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, ValueError) as exc:  # ValueError: a row that is not JSON
            raise JournalError(_explain(self.path, exc)) from exc


def _entry(
    seq: int, session_id: str, client_id: str, blob: str, meta: str, attempted: int
) -> Entry:
    """An entry; text an older version stored unencodable is repaired on the way."""
    message, meta_data = valid_data(json.loads(blob)), valid_data(json.loads(meta))
    return Entry(seq, session_id, client_id, message, meta_data, bool(attempted))


def kind(message: dict[str, Any]) -> str:
    """What a message is, in a few words: "user", "assistant with tool calls"."""
    calls = " with tool calls" if message.get("tool_calls") else ""
    return f"{message.get('role')}{calls}"


def _explain(path: Path, exc: Exception) -> str:
    """One line: what is wrong with the journal, and what to do."""
    text = str(exc)
    if isinstance(exc, OSError):
        return _unusable(path.parent, exc)
    if "disk is full" in text or "database or disk is full" in text:
        return (
            f"the disk holding {path} is full: free some space "
            "(what it could not keep is sent to Acontext directly)"
        )
    if "locked" in text:
        return (
            f"{path} stayed locked by another process for {BUSY_SECONDS} s: "
            "let the other agent finish, then try again"
        )
    if "readonly" in text:
        return f"{path} is read-only: set AGENT_STATE_DIR to a folder you can write"
    if isinstance(exc, sqlite3.DatabaseError | ValueError):  # not a database, malformed
        return (
            f"the journal {path} is damaged ({text}): move it aside to start a new one "
            "(messages not yet sent that were in it are lost)"
        )
    return f"the journal {path} failed: {text}"


def _unusable(state_dir: Path, exc: OSError | sqlite3.Error) -> str:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOTDIR, errno.EEXIST):
        reason = "it is a file, not a folder"
    return (
        f"cannot use the state folder {state_dir} ({reason}): "
        "set AGENT_STATE_DIR to a folder you can write"
    )


if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        # flock locks belong to the open file, so two senders in one process exclude each other too
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
