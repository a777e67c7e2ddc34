"""The Acontext session mirror: the only code that talks to Acontext.

Messages are journaled locally first (``journal.py``), then a background writer stores them in the
session, in order, with ``store_message(..., format="openai")``. The agent never waits on Acontext
to answer the user; Acontext being down or failing only delays the copy. At the end the mirror
drains the writer, flushes the session until extraction has seen every message, reads the tasks.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from openai_basic.errors import ConfigError, ServiceError, SessionNotFoundError
from openai_basic.journal import Entry, Journal
from openai_basic.settings import Settings

if TYPE_CHECKING:
    from acontext import AcontextClient
    from acontext.errors import APIError as AcontextAPIError
    from acontext.errors import TransportError as AcontextTransportError

AGENT_NAME = "openai-basic"
PAGE_SIZE = 200  # the most the server returns per page
POLL_SECONDS = 0.5
FLUSH_OK = (0, 200)  # the real server answers status 200 on success
META_LIMIT = 60_000  # the server caps a message's meta at 64 KB
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 2.0
QUIET_SECONDS = 0.3
STALL_SECONDS = 3.0  # at exit, how long a failing Acontext may send nothing before we stop waiting
KEEP_TOOL_RESULTS = 5  # when a resumed session is over budget, older tool results go first

Progress = Callable[[int], None]
_IMPORT_LOCK = threading.Lock()


def load_sdk() -> ModuleType:
    """Import the ``acontext`` SDK (seconds) once, whichever thread asks first.

    Two threads importing the same package graph at once can see a half-initialised module, so
    every import of it goes through this lock.
    """
    with _IMPORT_LOCK:
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
class OpenedSession:
    session_id: str
    history: list[dict[str, Any]]
    system_prompt: str


class _Retry(Exception):
    """Acontext failed in a way worth trying again (down, timeout, 5xx, 429)."""


class AcontextMirror:
    """Mirrors one conversation into one Acontext session, through the journal."""

    def __init__(
        self, settings: Settings, *, on_problem: Callable[[str], None] | None = None
    ) -> None:
        self._settings = settings
        self._on_problem = on_problem
        self.journal = Journal(settings.state_dir / "journal.sqlite3")
        self.session_id = ""
        self._clients: tuple[AcontextClient, AcontextClient] | None = None
        self._clients_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._fatal: ConfigError | None = None
        self._failing = False
        self._sent_since_failure = False

    # -- the session ---------------------------------------------------------------------

    def create(self, *, model: str, system_prompt: str, user: str | None = None) -> OpenedSession:
        """Make the session id here; the writer creates it in Acontext (``use_uuid``) later."""
        session_id = str(uuid.uuid4())
        configs = {"agent": AGENT_NAME, "model": model, "system_prompt": system_prompt}
        self.journal.add_session(session_id, configs, user)
        self.session_id = session_id
        self.start()
        return OpenedSession(session_id, [], system_prompt)

    def resume(self, session_id: str, *, default_system_prompt: str) -> OpenedSession:
        """Load every message of a session, with those still waiting in the journal."""
        session_id = _checked_id(session_id)
        local = self.journal.uncreated_session(session_id)
        if local is not None:  # it never reached Acontext: the journal holds all of it
            history = self.journal.messages(session_id)
            configs = local.configs
        else:
            configs, history, client_ids = self._load(session_id, self._settings.context_tokens)
            for entry in self.journal.waiting(session_id):
                if entry.client_id in client_ids:
                    self.journal.mark_sent(entry.seq)
                else:
                    history.append(entry.message)
            self.journal.add_session(session_id, configs, None)
            self.journal.mark_created(session_id)
        self.session_id = session_id
        self.start()
        system_prompt = str(configs.get("system_prompt") or default_system_prompt)
        return OpenedSession(session_id, history, system_prompt)

    def append(self, message: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
        """Journal the message (milliseconds, local) and let the writer send it."""
        client_id = uuid.uuid4().hex
        self.journal.add(
            self.session_id, client_id, message, _bounded({**(meta or {}), "client_id": client_id})
        )
        self._wake.set()

    # -- the end of a conversation --------------------------------------------------------

    def sync(
        self, *, timeout: float, on_progress: Progress | None = None, session_id: str | None = None
    ) -> int:
        """Wait (bounded) for the writer to send what waits (of one session, or of all);
        return how many remain.

        The wait ends early when Acontext keeps failing and nothing has been sent for a while.
        """
        self.start()
        self._wake.set()
        started = progressed = time.monotonic()
        shown = last = -1
        while True:
            if self._fatal is not None:
                raise self._fatal
            waiting = self.journal.count_waiting(session_id)
            now = time.monotonic()
            if waiting != last:
                last, progressed = waiting, now
            stalled = self._failing and now - progressed > STALL_SECONDS
            if waiting == 0 or now >= started + timeout or stalled:
                return waiting
            if on_progress is not None and waiting != shown and now > started + QUIET_SECONDS:
                on_progress(waiting)  # a quick drain says nothing
                shown = waiting
            time.sleep(0.02)

    def finish(
        self, *, on_sync: Progress | None = None, on_wait: Callable[[int, int], None] | None = None
    ) -> TaskReport:
        """Drain the writer, flush until extraction has seen every message, read the tasks."""
        # leftovers of other sessions go on in the background, and with `agent sync`
        unsent = self.sync(
            timeout=self._settings.sync_wait_seconds,
            on_progress=on_sync,
            session_id=self.session_id,
        )
        if unsent:
            return TaskReport((), unsent=unsent)
        unprocessed = self.extract(on_wait)
        return TaskReport(self.tasks(self.session_id), unprocessed)

    def extract(self, on_wait: Callable[[int, int], None] | None = None) -> int:
        """Flush until nothing is pending or in process, or the wait runs out; return the rest."""
        deadline = time.monotonic() + self._settings.task_wait_seconds
        client, flush_client = self._api()
        with self._translate(self.session_id):
            while True:
                status = client.sessions.messages_observing_status(self.session_id)
                waiting = status.pending + status.in_process
                if waiting == 0 or time.monotonic() >= deadline:
                    return waiting
                if on_wait is not None:
                    on_wait(status.pending, status.in_process)
                if status.pending:  # one flush handles a bounded batch: repeat while any wait
                    result = flush_client.sessions.flush(self.session_id)
                    if result.status not in FLUSH_OK or result.errmsg:
                        detail = result.errmsg or f"status {result.status}"
                        raise ServiceError("Acontext", f"flush failed: {detail}")
                else:
                    time.sleep(POLL_SECONDS)

    def tasks(self, session_id: str) -> tuple[Task, ...]:
        session_id = _checked_id(session_id)
        client, _ = self._api()
        found: list[Task] = []
        cursor: str | None = None
        with self._translate(session_id):
            while True:
                page = client.sessions.get_tasks(session_id, limit=PAGE_SIZE, cursor=cursor)
                found.extend(_task(item) for item in page.items)
                cursor = page.next_cursor
                if not page.has_more or not cursor:
                    return tuple(sorted(found, key=lambda task: task.order))

    def check(self) -> None:
        """Raise unless Acontext answers and accepts the key."""
        client, _ = self._api()
        with self._translate():
            client.ping()

    def sessions(self, limit: int) -> list[SessionSummary]:
        """This agent's sessions (found by their configs), newest first."""
        client, _ = self._api()
        found = []
        with self._translate():
            page = client.sessions.list(
                filter_by_configs={"agent": AGENT_NAME}, limit=limit, time_desc=True
            )
            for session in page.items:
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

    def transcript(self, session_id: str) -> list[dict[str, Any]]:
        """Every message of a session as stored, untrimmed."""
        return self._load(_checked_id(session_id), budget=0)[1]

    def __enter__(self) -> AcontextMirror:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._writer is not None:
            self._writer.join(timeout=2)
        if self._clients is not None:
            for client in self._clients:
                client.close()
        self.journal.close()

    # -- the background writer -------------------------------------------------------------

    def start(self) -> None:
        if self._writer is None:
            # The writer imports the SDK, and with it httpx. openai looks httpx up in sys.modules
            # on every request, so a half-imported httpx breaks model calls: import it here first.
            import httpx  # noqa: F401

            self._writer = threading.Thread(
                target=self._write_loop, name="acontext-writer", daemon=True
            )
            self._writer.start()

    def _write_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._send_waiting()
            except ConfigError as exc:
                self._fatal = exc
                return
            except Exception as exc:  # never let the writer die: the journal keeps the messages
                failures = 1 if self._sent_since_failure else failures + 1  # back off while stuck
                self._sent_since_failure = False
                reason = str(exc) if isinstance(exc, _Retry) else f"{type(exc).__name__}: {exc}"
                waiting = self.journal.count_waiting()
                self._problem(f"{reason}; {waiting} messages wait in {self.journal.path}")
                self._stop.wait(min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MAX))
                continue
            if failures:
                failures = 0
                self._problem("")
            self._wake.wait()

    def _send_waiting(self) -> None:
        """Each session's messages in order; one session failing does not hold up the others."""
        failure: _Retry | None = None
        for session_id in self.journal.sessions_waiting(first=self.session_id):
            try:
                for entry in self.journal.waiting(session_id):
                    if self._stop.is_set():
                        return
                    self._send(entry)
            except _Retry as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def _send(self, entry: Entry) -> None:
        client, _ = self._api()
        APIError, TransportError = _errors()
        try:
            self._ensure_created(client, entry.session_id)
            if entry.attempted and entry.client_id in self._recent_client_ids(
                client, entry.session_id
            ):
                self._delivered(entry)  # stored before, but its answer was lost
                return
            self.journal.mark_attempted(entry.seq)
            client.sessions.store_message(
                entry.session_id,
                blob=entry.message,  # type: ignore[arg-type]
                format="openai",
                meta=entry.meta,
            )
        except TransportError as exc:
            raise _Retry(
                f"Acontext unreachable at {self._settings.acontext_base_url} "
                "(start one with `acontext server up`)"
            ) from exc
        except APIError as exc:
            if exc.status_code == 401:
                raise ConfigError(
                    f"ACONTEXT_API_KEY was rejected by {self._settings.acontext_base_url}"
                ) from exc
            if exc.status_code >= 500 or exc.status_code in (408, 429):
                raise _Retry(f"Acontext failed (HTTP {exc.status_code})") from exc
            self.journal.mark_rejected(entry.seq, f"HTTP {exc.status_code}: {exc.message}")
            return
        self._delivered(entry)

    def _delivered(self, entry: Entry) -> None:
        self.journal.mark_sent(entry.seq)
        self._sent_since_failure = True

    def _ensure_created(self, client: AcontextClient, session_id: str) -> None:
        pending = self.journal.uncreated_session(session_id)
        if pending is not None:  # idempotent on the real server: an existing id answers 200
            client.sessions.create(configs=pending.configs, user=pending.user, use_uuid=pending.id)
            self.journal.mark_created(session_id)

    def _recent_client_ids(self, client: AcontextClient, session_id: str) -> set[str]:
        page = client.sessions.get_messages(session_id, limit=PAGE_SIZE, time_desc=True)
        return {str(meta.get("client_id")) for meta in page.metas}

    def _problem(self, text: str) -> None:
        """Note that writing started or stopped failing; say so once each time."""
        if bool(text) == self._failing:
            return
        self._failing = bool(text)
        if self._on_problem is not None:
            self._on_problem(text or "Acontext is back; sending the waiting messages")

    # -- plumbing ----------------------------------------------------------------------------

    def _api(self) -> tuple[AcontextClient, AcontextClient]:
        """The SDK clients, made on first use (importing ``acontext`` takes seconds)."""
        with self._clients_lock:
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

    def _load(
        self, session_id: str, budget: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]], set[str]]:
        """Every message, page by page; fitted to the context budget by Acontext when too long."""
        client, _ = self._api()
        history: list[dict[str, Any]] = []
        client_ids: set[str] = set()
        tokens = 0
        cursor: str | None = None
        with self._translate(session_id):
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
        return configs, history, client_ids

    @contextmanager
    def _translate(self, session_id: str | None = None) -> Iterator[None]:
        APIError, TransportError = _errors()
        base_url = self._settings.acontext_base_url
        try:
            yield
        except TransportError as exc:
            raise ServiceError(
                "Acontext",
                f"cannot reach {base_url} ({exc}). "
                "Start a local server with `acontext server up`, or set ACONTEXT_BASE_URL.",
            ) from exc
        except APIError as exc:
            if exc.status_code == 401:
                raise ConfigError(f"ACONTEXT_API_KEY was rejected by {base_url}") from exc
            if exc.status_code == 404 and session_id:
                raise SessionNotFoundError(session_id) from exc
            raise ServiceError("Acontext", f"HTTP {exc.status_code}: {exc.message}") from exc


def _fit(budget: int) -> list[Any]:
    return [
        {"type": "remove_tool_result", "params": {"keep_recent_n_tool_results": KEEP_TOOL_RESULTS}},
        {"type": "token_limit", "params": {"limit_tokens": budget}},
    ]


def _errors() -> tuple[type[AcontextAPIError], type[AcontextTransportError]]:
    errors = load_sdk().errors
    return errors.APIError, errors.TransportError


def _task(item: Any) -> Task:
    return Task(
        order=item.order,
        description=item.data.task_description,
        status=item.status,
        progresses=tuple(item.data.progresses or ()),
        user_preferences=tuple(item.data.user_preferences or ()),
    )


def _bounded(meta: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(meta)) <= META_LIMIT:
        return meta
    return {"client_id": meta["client_id"], "meta_dropped": "over the server's 64 KB limit"}


def _checked_id(session_id: str) -> str:
    try:
        return str(uuid.UUID(session_id))
    except ValueError:
        raise ConfigError(f"{session_id!r} is not a session id (a UUID)") from None
