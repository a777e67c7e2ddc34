"""Learning spaces and skills: what the agent remembers from one session to the next.

With learning on (``--learn``, ``AGENT_LEARN``) each session is attached to a learning space.
Acontext distils what happened in it into skills (a ``SKILL.md`` and its files), and the next
session gives the model those skills: their names and descriptions in the system prompt, and the
SDK's skill tools (``get_skill``, ``get_skill_file``) to read them, run by the SDK's own
``execute_tool``.

The space is ``AGENT_LEARNING_SPACE``, else the one remembered in the journal for the user, else
one made for the user and remembered. Attaching a session is a write like any other: the mirror's
writer calls ``send_learn`` right after creating the session, before its first message, as the
docs advise. The rest happens beside the conversation: the recall, loaded while the user types,
and the wait for learning at the end. Reading a space's skills (``agent skills``) is ``skills.py``.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from openai_basic.acontext_api import AcontextApi, load_sdk, retryable
from openai_basic.errors import AgentError, JournalError, SpaceNotFoundError
from openai_basic.journal import LEARN_FAILED, LEARN_WAITING, Journal, Learn
from openai_basic.output import Output
from openai_basic.preload import preload
from openai_basic.settings import Settings
from openai_basic.skills import SkillInfo, in_space, known_space, list_skills, listed_skills
from openai_basic.text import plural

if TYPE_CHECKING:  # tools.py imports pydantic: only a conversation needs it, not `agent --help`
    from acontext import AcontextClient

    from openai_basic.acontext_api import TaskReport
    from openai_basic.mirror import AcontextMirror
    from openai_basic.tools import Tool

FINAL_STATUSES = ("completed", "failed")
POLL_SECONDS = 0.2  # learning's first pass takes about 0.3 s after the flush on a fast LLM
RECALL_WAIT_SECONDS = 10.0  # once the SDK is imported, how long the first turn waits for skills
CLAIM_WAIT_SECONDS = 15.0  # how long to wait for another process making the user's space
RECALL_HINT = (
    "Skills learned in earlier sessions with this user are listed below. When one fits the "
    "request, read it with get_skill and get_skill_file before you answer."
)


@dataclass(frozen=True)
class SkillChange:
    skill: SkillInfo
    change: Literal["created", "updated"]


@dataclass(frozen=True)
class LearningOutcome:
    """What learning from a session came to.

    ``status`` is the learn record's last status, or ``waiting`` while the session is not in
    Acontext yet, or ``unknown`` when it could not be read; ``problem`` says in one line what
    went wrong (the run's exit code is then 1).
    """

    space_id: str
    status: str
    changes: tuple[SkillChange, ...] = ()
    skills: int = 0  # how many skills the space has now
    problem: str = ""

    def payload(self) -> dict[str, Any]:
        return {"space_id": self.space_id, "status": self.status, "problem": self.problem}


@dataclass(frozen=True)
class Recall:
    """A space's skills as the model gets them: a prompt to add and the tools to read them."""

    space_id: str
    skills: tuple[SkillInfo, ...]
    prompt: str  # the SDK's context prompt: names and descriptions; "" without skills
    tools: tuple[Tool, ...]

    def system_prompt(self, base: str) -> str:
        """The system prompt sent to the model (the session's configs keep ``base``)."""
        if not self.prompt:
            return base
        return "\n\n".join(part for part in (base, RECALL_HINT, self.prompt) if part)


def skill_payload(change: SkillChange) -> dict[str, Any]:
    skill = change.skill
    return {
        "id": skill.id,
        "name": skill.name,
        "description": skill.description,
        "change": change.change,
    }


# -- the writer's part: the space and the learn call ---------------------------------------


def space_for(client: AcontextClient, journal: Journal, user: str, tag: str) -> str:
    """The space remembered for the user ("" for none); made and remembered when there is none.

    A claim on the user's space keeps two processes in one folder from making two.
    """
    deadline = time.monotonic() + CLAIM_WAIT_SECONDS
    while True:
        known = journal.remembered_space(user)
        if known:
            return known
        with journal.claim(_claim_name(user)) as mine:
            if mine:
                known = journal.remembered_space(user)
                if known:
                    return known
                space = client.learning_spaces.create(user=user or None, meta={"agent": tag})
                return journal.remember_space(user, space.id)
        if time.monotonic() > deadline:
            raise JournalError(
                f"another agent held the claim on the learning space of {user or 'no user'} "
                f"for {CLAIM_WAIT_SECONDS:g} s"
            )
        time.sleep(0.05)


def send_learn(client: AcontextClient, journal: Journal, learn: Learn, tag: str) -> str:
    """Attach the session to its space; "" when done (or done before), else why it never will
    be, which the journal keeps. Raises the SDK's errors worth trying again, and a 401."""
    errors = load_sdk().errors
    space_id = learn.space_id or space_for(client, journal, learn.user, tag)
    try:
        client.learning_spaces.learn(space_id, session_id=learn.session_id)
    except errors.APIError as exc:
        if exc.status_code == 401 or retryable(exc.status_code):
            raise
        if exc.status_code != 409:  # 409: attached already, which is what was asked
            problem = (
                f"session {learn.session_id} was not attached to learning space {space_id}: "
                f"{exc.message or f'HTTP {exc.status_code}'}"
            )
            journal.mark_learn_failed(learn.session_id, space_id, problem)
            if learn.space_id is None and exc.status_code == 404:
                journal.forget_space(learn.user, space_id)  # deleted: the next run makes one
            return problem
    journal.mark_learned(learn.session_id, space_id)
    return ""


def _claim_name(user: str) -> str:
    return "space-" + hashlib.sha256(user.encode("utf-8", "surrogatepass")).hexdigest()[:24]


# -- recall ----------------------------------------------------------------------------------


def load_recall(client: AcontextClient, space_id: str, *, timeout: float) -> Recall:
    """The space's skills, their context prompt, and the SDK's skill tools bound to them.

    The SDK refuses two skills of one name in a context; a space can hold two (its writer does
    not check), so the newest of each name is given.
    """
    preload("skills")
    from acontext.agent.skill import SKILL_TOOLS

    from openai_basic.tools import schema_tool

    listed = listed_skills(client, space_id)
    newest: dict[str, SkillInfo] = {}
    for skill in sorted(listed, key=lambda skill: _instant(skill.updated_at)):
        newest[skill.name] = skill
    if not newest:
        return Recall(space_id, listed, "", ())
    context = SKILL_TOOLS.format_context(client, [skill.id for skill in newest.values()])
    tools = tuple(
        schema_tool(
            schema,
            functools.partial(_run_skill_tool, context, schema["function"]["name"]),
            timeout=timeout,
        )
        for schema in SKILL_TOOLS.to_openai_tool_schema()
    )
    return Recall(space_id, listed, context.get_context_prompt(), tools)


def _run_skill_tool(context: Any, name: str, arguments: dict[str, Any]) -> str:
    """One skill tool call, run by the SDK; what it raises, the registry tells the model."""
    from acontext.agent.skill import SKILL_TOOLS

    return SKILL_TOOLS.execute_tool(context, name, arguments)


class RecallLoad:
    """A space's skills, loaded for the model in a thread of their own. A chat starts one for
    the known space before its first message, so that they load while the user types."""

    def __init__(self, api: AcontextApi, space: Callable[[], str], *, timeout: float) -> None:
        self.recall: Recall | None = None
        self.failure = ""  # why there is no recall ("" for an unknown space: told at the end)
        self._done = threading.Event()
        threading.Thread(
            target=self._load, args=(api, space, timeout), name="recall", daemon=True
        ).start()

    def wait(self, seconds: float) -> bool:
        return self._done.wait(seconds)

    @property
    def skills(self) -> tuple[SkillInfo, ...] | None:
        """The space's skills as loaded; None until they are, or when they could not be."""
        return self.recall.skills if self._done.is_set() and self.recall is not None else None

    def _load(self, api: AcontextApi, space: Callable[[], str], timeout: float) -> None:
        try:
            with api.translate():
                space_id = space()  # may make the space
            with in_space(api, space_id):
                self.recall = load_recall(api.client, space_id, timeout=timeout)
        except SpaceNotFoundError:  # attaching fails on it too, and the run ends saying so
            self.failure = ""
        except (AgentError, ValueError) as exc:  # ValueError: the SDK's refusal of a context
            self.failure = str(exc)
        except Exception as exc:  # never let it end the conversation: it goes on without skills
            self.failure = f"{type(exc).__name__}: {exc}"
        finally:
            self._done.set()


def prefetch_recall(settings: Settings, user: str | None, api: AcontextApi) -> RecallLoad | None:
    """Start loading the known space's skills before there is a session; None when no space is
    known yet (the session's attach makes one)."""
    space_id = known_space(settings, user)
    if space_id is None:
        return None
    return RecallLoad(api, lambda: space_id, timeout=settings.tool_timeout_seconds)


# -- one conversation's learning ---------------------------------------------------------------


class SessionLearning:
    """The learning of one conversation: attaching it, recalling the space's skills while the
    user types, and at the end, waiting for what Acontext learned from it.

    It makes no request until ``attach`` (with learning on, at the start) or ``skills``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        mirror: AcontextMirror,
        out: Output,
        user: str | None,
        prefetched: RecallLoad | None = None,
    ) -> None:
        self._settings = settings
        self._mirror = mirror
        self._out = out
        self._user = user or ""
        self._loads = [prefetched] if prefetched else []
        self._loading = prefetched  # the load the model has not been given yet

    @property
    def _session_id(self) -> str:
        return self._mirror.session_id

    def attach(self) -> bool:
        """Attach the session (through the journal) and start loading the space's skills;
        False when it was attached already (then only the skills are loaded)."""
        journal = self._mirror.journal
        known = journal.learn(self._session_id)
        if known is None:
            self._mirror.learn(self._settings.learning_space or None, self._user)
        self._start_loading()
        return known is None

    def recall(self) -> Recall | None:
        """The skills loaded since ``attach``, once; None when there are none to give."""
        loading, self._loading = self._loading, None
        if loading is None:
            return None
        load_sdk()  # importing it is not Acontext's delay
        preload("skills")
        with self._out.spinner("recalling what was learned"):
            loaded = loading.wait(RECALL_WAIT_SECONDS)
        if not loaded:
            self._out.status(
                f"acontext: the skills did not load within {RECALL_WAIT_SECONDS:g} s; "
                "going on without them"
            )
            return None
        recall = loading.recall
        if recall is None:
            if loading.failure:
                self._out.status(
                    f"acontext: cannot recall skills: {loading.failure}; going on without them"
                )
            return None
        if not recall.skills:
            self._out.status(f"learning space {recall.space_id} has no skills yet")
            return None
        self._out.status(
            f"recalled {plural(len(recall.skills), 'skill')} from learning space {recall.space_id}"
        )
        return recall

    def skills(self) -> tuple[str, list[SkillInfo]] | None:
        """The space and its skills (``/skills``); None when there is no space yet."""
        learn = self._mirror.journal.learn(self._session_id)
        space_id = (learn.space_id if learn else None) or self._known_space()
        if not space_id:
            return None
        return space_id, list_skills(self._mirror.api, space_id)

    def conclude(self, report: TaskReport) -> LearningOutcome | None:
        """After the tasks: wait for learning (bounded), then see which skills it created or
        updated. None when the session is not attached."""
        learn = self._mirror.journal.learn(self._session_id)
        if learn is None:
            return None
        space_id = learn.space_id or ""
        if learn.state == LEARN_FAILED:
            return LearningOutcome(space_id, "not attached", problem=learn.error)
        if learn.state == LEARN_WAITING or report.unsent:
            self._out.status(
                "Acontext learns from this session once it is sent (at the next start or with "
                "`agent sync`); see its skills then with: agent skills"
            )
            return LearningOutcome(space_id, "waiting")
        try:
            return self._learned(space_id)
        except AgentError as exc:
            return LearningOutcome(
                space_id, "unknown", problem=f"cannot follow the learning: {exc}"
            )

    def _learned(self, space_id: str) -> LearningOutcome:
        api, session_id = self._mirror.api, self._session_id
        with api.translate(), self._out.spinner("Acontext is learning from the session"):
            record = _wait_for_learning(
                api.client,
                space_id,
                session_id,
                seconds=self._settings.learn_wait_seconds,
                on_status=self._out.learning,
            )
        if record.status == "failed":
            problem = f"Acontext failed to learn from session {session_id}"
            return LearningOutcome(space_id, record.status, problem=problem)
        if record.status != "completed":
            problem = (
                f"learning from session {session_id} did not finish within "
                f"{self._settings.learn_wait_seconds:g} s (last status: {record.status}); "
                "see its skills later with: agent skills"
            )
            return LearningOutcome(space_id, record.status, problem=problem)
        after = list_skills(api, space_id)
        changes = _changes(self._before, after, record.created_at)
        return LearningOutcome(space_id, record.status, changes, len(after))

    @property
    def _before(self) -> tuple[SkillInfo, ...] | None:
        """The space's skills at the start, from the first load that got them."""
        return next((load.skills for load in self._loads if load.skills is not None), None)

    def _known_space(self) -> str | None:
        return self._settings.learning_space or self._mirror.journal.remembered_space(self._user)

    def _start_loading(self) -> None:
        if self._loading is None:
            timeout = self._settings.tool_timeout_seconds
            self._loading = RecallLoad(self._mirror.api, self._space, timeout=timeout)
            self._loads.append(self._loading)

    def _space(self) -> str:
        """The space: the setting, or the user's, made if need be (by the first to get there:
        this load or the writer)."""
        return self._settings.learning_space or space_for(
            self._mirror.api.client, self._mirror.journal, self._user, self._settings.session_tag
        )


def _wait_for_learning(
    client: AcontextClient,
    space_id: str,
    session_id: str,
    *,
    seconds: float,
    on_status: Callable[[str], None],
) -> Any:
    """Read the learn record until it is completed or failed, or ``seconds`` pass; each new
    status is told. Returns the last record read."""
    deadline = time.monotonic() + seconds
    status = ""
    while True:
        record = client.learning_spaces.get_session(space_id, session_id=session_id)
        if record.status != status:
            status = record.status
            on_status(status)
        if status in FINAL_STATUSES or time.monotonic() >= deadline:
            return record
        time.sleep(POLL_SECONDS)


def _changes(
    before: tuple[SkillInfo, ...] | None, after: list[SkillInfo], attached_at: str
) -> tuple[SkillChange, ...]:
    """The skills created or updated since the start; without a list from the start (Acontext
    was down then), those changed since the session was attached."""
    if before is None:
        since = _instant(attached_at)
        return tuple(
            SkillChange(skill, "created" if _instant(skill.created_at) > since else "updated")
            for skill in after
            if _instant(skill.updated_at) > since
        )
    earlier = {skill.id: skill for skill in before}
    changes = []
    for skill in after:
        known = earlier.get(skill.id)
        if known is None:
            changes.append(SkillChange(skill, "created"))
        elif _instant(skill.updated_at) > _instant(known.updated_at):
            changes.append(SkillChange(skill, "updated"))
    return tuple(changes)


def _instant(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return datetime.min
