"""Acontext, read and flushed: the SDK clients and every call that is not storing a message.

``agent tasks``, ``history``, ``sessions`` and ``doctor`` use this module alone, so they touch no
journal. The mirror uses it to resume a session and, at the end, to flush it and read its tasks.
Each call's SDK errors become this package's errors here, in one place.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from openai_basic.errors import ConfigError, ServiceError, SessionNotFoundError
from openai_basic.preload import preload
from openai_basic.settings import Settings

if TYPE_CHECKING:
    from acontext import AcontextClient

PAGE_SIZE = 200  # the most the server returns per page
POLL_SECONDS = 0.5
FLUSH_OK = (0, 200)  # the real server answers status 200 on success
KEEP_TOOL_RESULTS = 5  # when a resumed session is over budget, older tool results go first
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)  # flush and reads: a passing 5xx is not the end of the run

T = TypeVar("T")


def load_sdk() -> ModuleType:
    """The ``acontext`` SDK, once the preload thread has imported it (see ``preload``)."""
    preload("acontext")
    import acontext
    import acontext.errors

    return acontext


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
    """The tasks; messages extraction had not reached; messages still only in the journal."""

    tasks: tuple[Task, ...]
    unprocessed: int = 0
    unsent: int = 0


@dataclass(frozen=True)
class SessionSummary:
    """A session of this agent, as ``agent sessions`` lists it."""

    id: str
    created_at: str
    messages: int
    first_message: str
    model: str


@dataclass(frozen=True)
class StoredSession:
    """A session as Acontext holds it: configs, messages, and the client ids in their meta."""

    configs: dict[str, Any]
    history: list[dict[str, Any]]
    client_ids: set[str]


class AcontextApi:
    """The SDK clients, made on first use (importing ``acontext`` takes seconds)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._clients: tuple[AcontextClient, AcontextClient] | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> AcontextClient:
        return self._both()[0]

    def check(self) -> None:
        """Raise unless Acontext answers and accepts the key."""
        with self.translate():
            self.client.ping()

    def tasks(self, session_id: str) -> tuple[Task, ...]:
        session_id = checked_id(session_id)
        found: list[Task] = []
        cursor: str | None = None
        while True:
            read = functools.partial(self._tasks_page, session_id, cursor)
            page = self._retried(session_id, read)
            found.extend(_task(item) for item in page.items)
            cursor = page.next_cursor
            if not page.has_more or not cursor:
                return tuple(sorted(found, key=lambda task: task.order))

    def _tasks_page(self, session_id: str, cursor: str | None) -> Any:
        return self.client.sessions.get_tasks(session_id, limit=PAGE_SIZE, cursor=cursor)

    def extract(
        self, session_id: str, *, seconds: float, on_wait: Callable[[int, int], None] | None
    ) -> int:
        """Flush until nothing is pending or in process, or ``seconds`` pass; return the rest."""
        deadline = time.monotonic() + seconds
        flush_client = self._both()[1]
        while True:
            status = self._retried(
                session_id, lambda: self.client.sessions.messages_observing_status(session_id)
            )
            waiting = status.pending + status.in_process
            if waiting == 0 or time.monotonic() >= deadline:
                return waiting
            if on_wait is not None:
                on_wait(status.pending, status.in_process)
            if status.pending:  # one flush handles a bounded batch: repeat while any wait
                result = self._retried(session_id, lambda: flush_client.sessions.flush(session_id))
                if result.status not in FLUSH_OK or result.errmsg:
                    detail = result.errmsg or f"status {result.status}"
                    raise ServiceError("Acontext", f"flush failed: {detail}")
            else:
                time.sleep(POLL_SECONDS)

    def newest_session(self) -> str | None:
        """The id of this agent's newest session, if it has one."""
        with self.translate():
            items = self._listed(limit=1)
        return str(items[0].id) if items else None

    def sessions(self, limit: int) -> list[SessionSummary]:
        """This agent's sessions (found by the tag in their configs), newest first."""
        client = self.client
        found = []
        with self.translate():
            for session in self._listed(limit):
                status = client.sessions.messages_observing_status(session.id)
                first = client.sessions.get_messages(session.id, format="openai", limit=10).items
                said = [m.get("content") for m in first if m.get("role") == "user"]
                found.append(
                    SessionSummary(
                        id=session.id,
                        created_at=session.created_at,
                        messages=status.observed + status.in_process + status.pending,
                        first_message=str(said[0]) if said else "",
                        model=str((session.configs or {}).get("model", "")),
                    )
                )
        return found

    def _listed(self, limit: int) -> list[Any]:
        """This agent's sessions as the SDK gives them, newest first (raises the SDK's errors)."""
        tag = self._settings.session_tag
        page = self.client.sessions.list(
            filter_by_configs={"agent": tag}, limit=limit, time_desc=True
        )
        return list(page.items)

    def transcript(self, session_id: str) -> list[dict[str, Any]]:
        """Every message of a session as stored, untrimmed."""
        return self.load(checked_id(session_id), budget=0).history

    def load(self, session_id: str, budget: int) -> StoredSession:
        """Every message, page by page; fitted to the context budget by Acontext when too long."""
        client = self.client
        history: list[dict[str, Any]] = []
        client_ids: set[str] = set()
        tokens = 0
        cursor: str | None = None
        with self.translate(session_id):
            client.sessions.messages_observing_status(session_id)  # 404 when unknown
            configs = client.sessions.get_configs(session_id).configs or {}
            while True:
                page = client.sessions.get_messages(
                    session_id, format="openai", limit=PAGE_SIZE, cursor=cursor
                )
                history.extend(page.items)
                client_ids.update(str(meta.get("client_id")) for meta in page.metas)
                tokens += page.this_time_tokens
                cursor = page.next_cursor
                if not page.has_more or not cursor:
                    break
            if budget and tokens > budget:
                # the server's edit strategies trim a copy, never what is stored, and keep each
                # tool call with its result
                history = client.sessions.get_messages(
                    session_id, format="openai", edit_strategies=_fit(budget)
                ).items
        return StoredSession(configs, history, client_ids)

    def recent_client_ids(self, session_id: str) -> set[str]:
        """The client ids of the session's latest messages (raises the SDK's errors)."""
        page = self.client.sessions.get_messages(session_id, limit=PAGE_SIZE, time_desc=True)
        return {str(meta.get("client_id")) for meta in page.metas}

    def __enter__(self) -> AcontextApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._clients is not None:
            for client in self._clients:
                client.close()

    @contextmanager
    def translate(self, session_id: str | None = None) -> Iterator[None]:
        """The SDK's errors as this package's, with what to do about them."""
        errors = load_sdk().errors
        base_url = self._settings.acontext_base_url
        try:
            yield
        except errors.TransportError as exc:
            raise ServiceError(
                "Acontext",
                f"cannot reach {base_url} ({exc}). "
                "Start a local server with `acontext server up`, or set ACONTEXT_BASE_URL.",
            ) from exc
        except errors.APIError as exc:
            if exc.status_code == 401:
                raise ConfigError(f"ACONTEXT_API_KEY was rejected by {base_url}") from exc
            if exc.status_code == 404 and session_id:
                raise SessionNotFoundError(session_id) from exc
            raise ServiceError("Acontext", f"HTTP {exc.status_code}: {exc.message}") from exc

    def _retried(self, session_id: str, call: Callable[[], T]) -> T:
        """``call``, tried again after a failure that may pass (down, 5xx, 429)."""
        for delay in (*RETRY_DELAYS, None):
            try:
                with self.translate(session_id):
                    return call()
            except ServiceError as exc:
                if delay is None or not _passing(exc):
                    raise
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _both(self) -> tuple[AcontextClient, AcontextClient]:
        with self._lock:
            if self._clients is None:
                AcontextClient = load_sdk().AcontextClient
                s = self._settings
                self._clients = (
                    AcontextClient(
                        api_key=s.acontext_api_key, base_url=s.acontext_base_url, timeout=30.0
                    ),
                    # flush blocks while the server extracts tasks: it has a long timeout
                    AcontextClient(
                        api_key=s.acontext_api_key,
                        base_url=s.acontext_base_url,
                        timeout=max(s.task_wait_seconds, 30.0),
                    ),
                )
            return self._clients


def retryable(status_code: int) -> bool:
    """An HTTP status worth trying again: the server may answer otherwise in a moment."""
    return status_code >= 500 or status_code in (408, 429)


def checked_id(session_id: str) -> str:
    try:
        return str(uuid.UUID(session_id))
    except ValueError:
        raise ConfigError(f"{session_id!r} is not a session id (a UUID)") from None


def _passing(exc: ServiceError) -> bool:
    cause = exc.__cause__
    status = getattr(cause, "status_code", None)
    return status is None or retryable(int(status))


def _fit(budget: int) -> list[Any]:
    return [
        {"type": "remove_tool_result", "params": {"keep_recent_n_tool_results": KEEP_TOOL_RESULTS}},
        {"type": "token_limit", "params": {"limit_tokens": budget}},
    ]


def _task(item: Any) -> Task:
    return Task(
        order=item.order,
        description=item.data.task_description,
        status=item.status,
        progresses=tuple(item.data.progresses or ()),
        user_preferences=tuple(item.data.user_preferences or ()),
    )
