"""The Acontext session mirror: the journal, the background writer, and the session's lifecycle.

Messages are journaled locally first (``journal.py``), then a background writer stores them in the
session, in order, with ``store_message(..., format="openai")``. The agent never waits on Acontext
to answer the user; Acontext being down or failing only delays the copy. At the end the mirror
drains the writer, then ``acontext_api.py`` flushes the session and reads the tasks.

Each message reaches its session once and in order: the writer sends a session only while it holds
the session's claim (``Journal.claim``), marks a message attempted before sending it, and checks
the session's stored client ids before sending an attempted one again. A message Acontext rejects
holds its session: nothing after it is sent until ``agent sync --skip`` says so.

A new session waits for its first answer. The mirror holds the session's claim from ``create``
until the first assistant message is journaled, or the conversation syncs or ends, so no writer
(of this process or another) sends it before; when the model refuses the settings first (a
rejected key, an unknown model), ``discard_unanswered`` forgets it and Acontext never sees it. A
crashed process lets go of the claim, and its journaled messages are sent as any others.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from openai_basic.acontext_api import (
    AcontextApi,
    TaskReport,
    checked_id,
    load_sdk,
    retryable,
)
from openai_basic.errors import AgentError, ConfigError, JournalError, ServiceError
from openai_basic.journal import LEARN_WAITING, Entry, Held, Journal, kind
from openai_basic.learning import send_learn
from openai_basic.preload import preload
from openai_basic.settings import Settings
from openai_basic.text import plural

META_LIMIT = 60_000  # the server caps a message's meta at 64 KB
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 2.0
CLAIM_POLL_SECONDS = 0.5  # how soon to look again at a session another process is sending
QUIET_SECONDS = 0.3
STALL_SECONDS = 3.0  # at exit, how long a failing Acontext may take no message before we stop
CLOSE_SECONDS = 2.0

Progress = Callable[[int], None]


@dataclass(frozen=True)
class OpenedSession:
    session_id: str
    history: list[dict[str, Any]]
    system_prompt: str


class _Retry(Exception):
    """Acontext failed in a way worth trying again (down, timeout, 5xx, 429)."""


class _Rejected(Exception):
    """Acontext refused the message itself (a 4xx): sending it again will not help."""


class AcontextMirror:
    """Mirrors one conversation into one Acontext session, through the journal.

    ``on_problem`` hears when writing starts or stops failing, ``on_held`` of each message
    Acontext rejects; both are called from the writer thread.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        on_problem: Callable[[str], None] | None = None,
        on_held: Callable[[Held], None] | None = None,
    ) -> None:
        self._settings = settings
        self._on_problem = on_problem
        self._on_held = on_held
        self.journal = Journal(settings.state_dir)
        self.api = AcontextApi(settings)
        self.session_id = ""
        self.journal_failure: JournalError | None = None
        self.delivered = 0  # messages this process got into Acontext
        self.learn_problems: list[str] = []  # sessions Acontext refused to attach to a space
        self._unjournaled: collections.deque[Entry] = collections.deque()
        self._unjournaled_held = False
        self._opening: contextlib.ExitStack | None = None  # holds a new session's claim
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._writer: threading.Thread | None = None
        self._fatal: AgentError | None = None
        self._failing_since: float | None = None
        self._delivered_at = 0.0

    # -- the session ---------------------------------------------------------------------

    def create(self, *, model: str, system_prompt: str, user: str | None = None) -> OpenedSession:
        """Make the session id here; the writer creates it in Acontext (``use_uuid``) later."""
        session_id = str(uuid.uuid4())
        configs = {
            "agent": self._settings.session_tag,
            "model": model,
            "system_prompt": system_prompt,
        }
        with contextlib.ExitStack() as opening:
            opening.enter_context(self.journal.claim(session_id))  # a new id: it is ours
            self.journal.add_session(session_id, configs, user)
            self._opening = opening.pop_all()
        self.session_id = session_id
        self.start()
        return OpenedSession(session_id, [], system_prompt)

    def resume(self, session_id: str, *, default_system_prompt: str) -> OpenedSession:
        """Load every message of a session, with those still waiting in the journal."""
        session_id = checked_id(session_id)
        local = self.journal.uncreated_session(session_id)
        if local is not None:  # it never reached Acontext: the journal holds all of it
            history = self.journal.messages(session_id)
            configs = local.configs
        else:
            stored = self.api.load(session_id, self._settings.context_tokens)
            history, configs = stored.history, stored.configs
            for entry in self.journal.unsent(session_id):
                if entry.client_id in stored.client_ids:
                    self.journal.mark_sent(entry.seq)
                else:
                    history.append(entry.message)
            self.journal.add_session(session_id, configs, None)
            self.journal.mark_created(session_id)
        self.session_id = session_id
        self.start()
        system_prompt = str(configs.get("system_prompt") or default_system_prompt)
        return OpenedSession(session_id, history, system_prompt)

    def learn(self, space_id: str | None, user: str) -> None:
        """Attach the session to a learning space (None: the user's, see ``learning.py``). The
        writer sends it right after creating the session, and before any more messages."""
        self.journal.add_learn(self.session_id, space_id, user)
        self._wake.set()

    def append(self, message: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
        """Journal the message (milliseconds, local) and let the writer send it.

        When the journal cannot be written (a full disk), the message and every later one are
        kept in memory instead, in order, and the writer sends them after the journaled ones;
        ``journal_failure`` says why. A new session's first answer lets the writer send it.
        """
        self._keep(message, meta)
        if message.get("role") == "assistant":
            self._let_go()

    def _keep(self, message: dict[str, Any], meta: dict[str, Any] | None) -> None:
        client_id = uuid.uuid4().hex
        meta = _bounded({**(meta or {}), "client_id": client_id})
        if self.journal_failure is None:
            try:
                self.journal.add(self.session_id, client_id, message, meta)
            except JournalError as exc:
                self.journal_failure = exc
            else:
                self._wake.set()
                return
        self._unjournaled.append(Entry(0, self.session_id, client_id, message, meta, False))
        self._wake.set()

    def discard_unanswered(self) -> bool:
        """Forget the new session if nothing in it was answered yet (the model refused the
        settings): its messages never left the journal. Returns whether it was forgotten."""
        if self._opening is None:
            return False
        try:
            self.journal.discard(self.session_id)
        except JournalError:  # then it is kept, and sent as any other
            self._let_go()
            return False
        self._unjournaled.clear()
        self._let_go()
        return True

    def _let_go(self) -> None:
        """Let the writers send the new session: it has an answer, or the conversation ends."""
        opening, self._opening = self._opening, None
        if opening is not None:
            opening.close()
            self._wake.set()

    def unsent(self, session_id: str | None = None) -> int:
        """Messages not in Acontext yet: waiting, rejected, or held behind a rejected one."""
        session_id = session_id or self.session_id
        return len(self.journal.unsent(session_id)) + len(self._unjournaled)

    def held(self) -> list[Held]:
        return self.journal.held(self.session_id)

    # -- the end of a conversation --------------------------------------------------------

    def sync(
        self, *, timeout: float, on_progress: Progress | None = None, session_id: str | None = None
    ) -> int:
        """Wait while the writer gets messages through (of one session, or of all); return how
        many can still be sent.

        The wait starts once the writer can send (importing the SDK is not Acontext's delay) and
        ends when nothing waits, when no message got through for ``timeout`` seconds, or when
        Acontext kept failing for ``STALL_SECONDS`` without a message getting through. A new
        session without an answer is sent too: a conversation syncs when it ends or is asked to.
        """
        self._let_go()
        self.start()
        self._wake.set()
        self._ready.wait()
        started = progressed = time.monotonic()
        shown = last = -1
        while True:
            if self._fatal is not None:
                raise self._fatal
            waiting = self._waiting(session_id)
            now = time.monotonic()
            if waiting != last:  # whichever process sent it
                last, progressed = waiting, now
            if waiting == 0 or now - progressed > timeout or self._stalled(now, progressed):
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
        self.sync(
            timeout=self._settings.sync_wait_seconds,
            on_progress=on_sync,
            session_id=self.session_id,
        )
        unsent = self.unsent()
        if unsent:
            return TaskReport((), unsent=unsent)
        unprocessed = self.api.extract(
            self.session_id, seconds=self._settings.task_wait_seconds, on_wait=on_wait
        )
        return TaskReport(self.api.tasks(self.session_id), unprocessed)

    def __enter__(self) -> AcontextMirror:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._let_go()
        if self._writer is not None:
            self._writer.join(timeout=CLOSE_SECONDS)
            if self._writer.is_alive():
                # still inside a request: closing the journal or the clients under it would kill
                # it mid-write. It is a daemon thread; what it was sending is marked attempted.
                return
        self.api.close()
        self.journal.close()

    # -- the background writer -------------------------------------------------------------

    def start(self) -> None:
        if self._writer is None:
            preload("openai")  # so that only the preload thread imports, while the writer waits
            self._writer = threading.Thread(
                target=self._write_loop, name="acontext-writer", daemon=True
            )
            self._writer.start()

    def _write_loop(self) -> None:
        try:
            self.api.client  # noqa: B018  (imports the SDK: seconds, before anything can be sent)
        except Exception as exc:
            self._fatal = ServiceError("Acontext", f"cannot load the acontext SDK: {exc}")
            return
        finally:
            self._ready.set()
        failures = 0
        while not self._stop.is_set():
            self._wake.clear()
            failed_at = time.monotonic()
            try:
                busy = self._send_waiting()
            except ConfigError as exc:  # a rejected key: no retry will help
                self._fatal = exc
                return
            except Exception as exc:  # never let the writer die: the journal keeps the messages
                failures = 1 if self._delivered_at > failed_at else failures + 1
                self._problem(_reason(exc, self.journal))
                self._stop.wait(min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MAX))
                continue
            failures = 0
            self._problem("")
            self._wake.wait(CLAIM_POLL_SECONDS if busy else None)

    def _send_waiting(self) -> bool:
        """Each session's messages in order; one session failing does not hold up the others.

        Returns whether another process holds the claim of a session with messages waiting.
        """
        failure: Exception | None = None
        busy = False
        sessions = self.journal.sessions_waiting(first=self.session_id)
        if self._unjournaled and self.session_id not in sessions:
            sessions.insert(0, self.session_id)
        sessions += [s for s in self.journal.sessions_to_learn() if s not in sessions]
        if self._opening is not None:  # a new session without an answer yet (see create)
            sessions = [session_id for session_id in sessions if session_id != self.session_id]
        for session_id in sessions:
            try:
                with self.journal.claim(session_id) as mine:
                    busy = busy or not mine
                    if mine:
                        self._send_session(session_id)
            except (_Retry, JournalError) as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        return busy

    def _send_session(self, session_id: str) -> None:
        """Send what waits (read again now that the claim is ours) until done or rejected.

        The journal is read again until it has nothing left: a message journaled while others
        were being sent goes before those kept in memory after it (on a full disk).
        """
        with self._write_errors():
            self._ensure_learned(session_id)  # one created already (resumed, `/learn`)
        while entries := self.journal.sendable(session_id):
            for entry in entries:
                if self._stop.is_set() or not self._send(entry):
                    return
        while session_id == self.session_id and self._unjournaled and not self._unjournaled_held:
            if self._stop.is_set() or not self._send(self._unjournaled[0]):
                return

    def _send(self, entry: Entry) -> bool:
        """Store one message; False when Acontext rejected it (its session is then held)."""
        try:
            with self._write_errors():
                self._store(entry)
        except _Rejected as rejection:
            self._rejected(entry, str(rejection))
            return False
        self._delivered(entry)
        return True

    def _store(self, entry: Entry) -> None:
        self._ensure_created(entry.session_id)
        if entry.attempted and entry.client_id in self.api.recent_client_ids(entry.session_id):
            return  # stored before, but its answer was lost
        self._attempting(entry)
        self.api.client.sessions.store_message(
            entry.session_id,
            blob=entry.message,  # type: ignore[arg-type]
            format="openai",
            meta=entry.meta,
        )

    @contextmanager
    def _write_errors(self) -> Iterator[None]:
        """The SDK's errors as the writer acts on them: try again, stop, or hold the session."""
        errors = load_sdk().errors
        base_url = self._settings.acontext_base_url
        try:
            yield
        except errors.TransportError as exc:
            raise _Retry(
                f"Acontext unreachable at {base_url} (start one with `acontext server up`)"
            ) from exc
        except errors.APIError as exc:
            if exc.status_code == 401:
                raise ConfigError(f"ACONTEXT_API_KEY was rejected by {base_url}") from exc
            if retryable(exc.status_code):
                raise _Retry(f"Acontext failed (HTTP {exc.status_code})") from exc
            raise _Rejected(f"HTTP {exc.status_code}: {exc.message}") from exc

    def _attempting(self, entry: Entry) -> None:
        if entry.seq:
            self.journal.mark_attempted(entry.seq)
        else:  # kept in memory: remember the attempt there
            self._unjournaled[0] = dataclasses.replace(entry, attempted=True)

    def _delivered(self, entry: Entry) -> None:
        if entry.seq:
            self.journal.mark_sent(entry.seq)
        else:
            self._unjournaled.popleft()
        self.delivered += 1
        self._delivered_at = time.monotonic()

    def _rejected(self, entry: Entry, error: str) -> None:
        if entry.seq:
            self.journal.mark_rejected(entry.seq, error)
            (held,) = self.journal.held(entry.session_id)  # sending stops at the first
        else:  # kept in memory, and held there
            self._unjournaled_held = True
            behind = len(self._unjournaled) - 1
            held = Held(entry.session_id, entry.client_id, kind(entry.message), error, behind)
        if self._on_held is not None:
            self._on_held(held)

    def _ensure_created(self, session_id: str) -> None:
        pending = self.journal.uncreated_session(session_id)
        if pending is not None:  # idempotent on the real server: an existing id answers 200
            self.api.client.sessions.create(
                configs=pending.configs, user=pending.user, use_uuid=pending.id
            )
            self.journal.mark_created(session_id)
            self._ensure_learned(session_id)

    def _ensure_learned(self, session_id: str) -> None:
        """Send the session's learn, if one waits: after its creation, before its messages."""
        learn = self.journal.learn(session_id)
        if learn is None or learn.state != LEARN_WAITING:
            return
        if self.journal.uncreated_session(session_id) is not None:
            return  # sent with the session's creation, before its first message
        problem = send_learn(self.api.client, self.journal, learn, self._settings.session_tag)
        if problem:
            self.learn_problems.append(problem)
            # a conversation tells its own session's problem once, as its last line
            if self._on_problem is not None and session_id != self.session_id:
                self._on_problem(problem)

    def _waiting(self, session_id: str | None) -> int:
        """Messages the writer can still send (held ones cannot), and learns waiting alone."""
        unjournaled = 0 if self._unjournaled_held else len(self._unjournaled)
        learns = [s for s in self.journal.sessions_to_learn() if session_id in (None, s)]
        return self.journal.count_waiting(session_id) + unjournaled + len(learns)

    def _stalled(self, now: float, progressed: float) -> bool:
        failing_since = self._failing_since
        return failing_since is not None and now - max(failing_since, progressed) > STALL_SECONDS

    def _problem(self, text: str) -> None:
        """Note that writing started or stopped failing; say so once each time."""
        if bool(text) == (self._failing_since is not None):
            return
        self._failing_since = time.monotonic() if text else None
        if self._on_problem is not None:
            self._on_problem(text or "Acontext is back; sending the waiting messages")


def _reason(exc: Exception, journal: Journal) -> str:
    if isinstance(exc, JournalError):
        return str(exc)
    reason = str(exc) if isinstance(exc, _Retry) else f"{type(exc).__name__}: {exc}"
    try:
        return f"{reason}; {plural(journal.count_waiting(), 'message')} waiting in {journal.path}"
    except JournalError:
        return reason


def _bounded(meta: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(meta)) <= META_LIMIT:
        return meta
    return {"client_id": meta["client_id"], "meta_dropped": "over the server's 64 KB limit"}
