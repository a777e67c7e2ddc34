"""The Acontext session mirror: the only code that talks to Acontext.

It creates or resumes a session, stores each message as it is produced, and at the end flushes the
session, waits for task extraction and reads the tasks back. SDK errors become package errors here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from openai_basic.errors import ConfigError, ServiceError, SessionNotFoundError
from openai_basic.settings import Settings

AGENT_NAME = "openai-basic"
PAGE_SIZE = 200  # the most the server gives per page
POLL_SECONDS = 0.5
FLUSH_OK = (0, 200)  # the real server answers status 200 on success


@dataclass(frozen=True)
class Task:
    """A task Acontext extracted from the conversation."""

    order: int
    description: str
    status: str
    progresses: tuple[str, ...]
    user_preferences: tuple[str, ...]


@dataclass(frozen=True)
class TaskReport:
    """The tasks, and how many messages extraction had not reached when we stopped waiting."""

    tasks: tuple[Task, ...]
    unprocessed: int


@dataclass(frozen=True)
class OpenedSession:
    session_id: str
    history: list[dict[str, Any]]
    system_prompt: str


class AcontextMirror:
    """Mirrors one conversation into one Acontext session."""

    def __init__(self, settings: Settings) -> None:
        from acontext import AcontextClient

        self._base_url = settings.acontext_base_url
        self._wait = settings.task_wait_seconds
        self._client = AcontextClient(
            api_key=settings.acontext_api_key, base_url=settings.acontext_base_url, timeout=30.0
        )
        # flush blocks while the server extracts tasks, longer than an ordinary request
        self._flush_client = AcontextClient(
            api_key=settings.acontext_api_key,
            base_url=settings.acontext_base_url,
            timeout=max(settings.task_wait_seconds, 30.0),
        )
        self.session_id = ""

    def create(self, *, model: str, system_prompt: str, user: str | None = None) -> OpenedSession:
        configs = {"agent": AGENT_NAME, "model": model, "system_prompt": system_prompt}
        with self._translate():
            session = self._client.sessions.create(configs=configs, user=user)
        self.session_id = session.id
        return OpenedSession(session.id, [], system_prompt)

    def resume(self, session_id: str, *, default_system_prompt: str) -> OpenedSession:
        """Load every message of an existing session, in OpenAI format, to go on with it."""
        session_id = _checked_id(session_id)
        with self._translate(session_id):
            self._client.sessions.messages_observing_status(session_id)  # 404 when unknown
            configs = self._client.sessions.get_configs(session_id).configs or {}
            history = self.load_messages(session_id)
        self.session_id = session_id
        system_prompt = str(configs.get("system_prompt") or default_system_prompt)
        return OpenedSession(session_id, history, system_prompt)

    def load_messages(self, session_id: str) -> list[dict[str, Any]]:
        history: list[dict[str, Any]] = []
        cursor: str | None = None
        with self._translate(session_id):
            while True:
                page = self._client.sessions.get_messages(
                    session_id, format="openai", limit=PAGE_SIZE, cursor=cursor
                )
                history.extend(page.items)
                cursor = page.next_cursor
                if not page.has_more or not cursor:
                    return history

    def append(self, message: dict[str, Any]) -> None:
        with self._translate(self.session_id):
            self._client.sessions.store_message(self.session_id, blob=message, format="openai")  # type: ignore[arg-type]

    def finish(self, on_wait: Callable[[int, int], None] | None = None) -> TaskReport:
        """Flush until extraction has seen every message (or the wait runs out), then read tasks."""
        unprocessed = self.extract(on_wait)
        return TaskReport(self.tasks(self.session_id), unprocessed)

    def extract(self, on_wait: Callable[[int, int], None] | None = None) -> int:
        deadline = time.monotonic() + self._wait
        sessions = self._client.sessions
        with self._translate(self.session_id):
            while True:
                status = sessions.messages_observing_status(self.session_id)
                waiting = status.pending + status.in_process
                if waiting == 0 or time.monotonic() >= deadline:
                    return waiting
                if on_wait is not None:
                    on_wait(status.pending, status.in_process)
                if status.pending:  # one flush handles a bounded batch: repeat while any wait
                    result = self._flush_client.sessions.flush(self.session_id)
                    if result.status not in FLUSH_OK or result.errmsg:
                        detail = result.errmsg or f"status {result.status}"
                        raise ServiceError("Acontext", f"flush failed: {detail}")
                else:
                    time.sleep(POLL_SECONDS)

    def tasks(self, session_id: str) -> tuple[Task, ...]:
        session_id = _checked_id(session_id)
        found: list[Task] = []
        cursor: str | None = None
        with self._translate(session_id):
            while True:
                page = self._client.sessions.get_tasks(session_id, limit=PAGE_SIZE, cursor=cursor)
                found.extend(
                    Task(
                        order=item.order,
                        description=item.data.task_description,
                        status=item.status,
                        progresses=tuple(item.data.progresses or ()),
                        user_preferences=tuple(item.data.user_preferences or ()),
                    )
                    for item in page.items
                )
                cursor = page.next_cursor
                if not page.has_more or not cursor:
                    return tuple(sorted(found, key=lambda task: task.order))

    def close(self) -> None:
        self._client.close()
        self._flush_client.close()

    @contextmanager
    def _translate(self, session_id: str | None = None) -> Iterator[None]:
        from acontext.errors import APIError, TransportError

        try:
            yield
        except TransportError as exc:
            raise ServiceError(
                "Acontext",
                f"cannot reach {self._base_url} ({exc}). "
                "Start a local server with `acontext server up`, or set ACONTEXT_BASE_URL.",
            ) from exc
        except APIError as exc:
            if exc.status_code == 401:
                raise ConfigError(f"ACONTEXT_API_KEY was rejected by {self._base_url}") from exc
            if exc.status_code == 404 and session_id:
                raise SessionNotFoundError(session_id) from exc
            raise ServiceError("Acontext", f"HTTP {exc.status_code}: {exc.message}") from exc


def _checked_id(session_id: str) -> str:
    try:
        return str(uuid.UUID(session_id))
    except ValueError:
        raise ConfigError(f"{session_id!r} is not a session id (a UUID)") from None
