"""Learning spaces and skills, the part of the fake Acontext under ``/learning_spaces`` and
``/agent_skills``.

The fake server (:mod:`tests.fakes.acontext_server`) sends these routes to :class:`Learning`,
which shares its sessions, its lock and its clock.  Bodies, status codes and error envelopes are
the real server's, including where it differs from its swagger (400 for a malformed id, 404 for
an unknown space, HTTP 404 with ``{"code": 500, "msg": "database error"}`` for an unknown skill).

A new space is not empty: it gets the two template skills ``daily-logs`` and
``user-general-facts``.  Deleting a space removes its learn records, not its skills.

How learning moves (deterministic stand-in for the real server's background work)
    * ``learn()`` only attaches the session (one space per session): the record is ``pending``.
    * Processing an attached session's messages (flush, or ``auto_process``) hands its
      ``success`` tasks and the preferences recorded on its tasks to a *run*.
    * A read of a ``pending`` record without a run (``get_session``, ``list_sessions``, so
      ``wait_for_learning``), once none of the session's messages is pending or running: a
      failed message -> ``failed``; no task -> ``completed`` at once, nothing learned; no
      ``success`` task -> every task is set ``success`` and handed to a run; a task already
      ``success`` -> nothing, the record stays ``pending`` for good.
    * A run shows :attr:`Learning.timeline` to the reads that follow, one status per read
      (default ``skill_writing`` then ``completed``).  When it ends ``completed``, the skill
      writer writes what it was handed; a run ending otherwise writes nothing; an empty
      timeline hangs.  :meth:`Learning.finish` plays the rest of a run at once, as time would.
    * More processing of an attached session starts another run, from whatever status the
      record shows: ``completed`` means a pass finished, not that no more will come.

The skill writer puts each task into the space's skill named ``skill_namer(task description)``
(default :func:`domain_name`): updated in place (same id, new ``updated_at``) when the space has
a skill of that name, otherwise created and linked.  Its ``SKILL.md`` has YAML front matter
(name, description) and lists the user's stated preferences and the tasks done.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import uuid
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tests.fakes.wire import (
    DEFAULT_LIST_LIMIT,
    Answer,
    RawBody,
    Reply,
    canonical_uuid,
    json_object,
    jsonb_contains,
    ok,
    paginate,
    param_error,
    parse_bool,
    parse_limit,
)

if TYPE_CHECKING:
    from tests.fakes.acontext_server import FakeSession

__all__ = [
    "STATUSES",
    "FakeLearningRecord",
    "FakeLearningSpace",
    "FakeSkill",
    "Learning",
    "Lesson",
    "domain_name",
]

STATUSES = ("pending", "distilling", "queued", "skill_writing", "completed", "failed")
TEMPLATE_MIME = "text/markdown; charset=utf-8"  # as the real server lists its templates
LEARNED_MIME = "text/markdown"
_TEMPLATES = (
    (
        "daily-logs",
        "Track daily activity logs and summaries for the user. TRIGGER BY: read/edit user memory",
        "One file per day, `yyyy-mm-dd.md`, with a short summary of what the user did that day.",
    ),
    (
        "user-general-facts",
        "Capture and organize general facts about the user by topic",
        "One file per topic, `<topic>.md`, with the facts and preferences the user stated.",
    ),
)
_SPACE_ROUTE = re.compile(r"^/learning_spaces/([^/]+)(?:/(learn|sessions|skills)(?:/([^/]+))?)?$")
_SKILL_ROUTE = re.compile(r"^/agent_skills/([^/]+)(?:/(file|download_zip))?$")
_FILLER_WORDS = frozenset(
    {
        *("a", "an", "the", "i", "me", "my", "we", "our", "you", "your", "it", "this", "that"),
        *("is", "are", "be", "please", "can", "could", "would", "will", "want", "need", "like"),
        *("prefer", "find", "book", "get", "show", "tell", "make", "give", "then", "also"),
        *("and", "or", "for", "from", "to", "in", "on", "at", "of", "with", "by", "about"),
        *("next", "some", "any"),
    }
)


def domain_name(task_description: str) -> str:
    """The default skill name: the task's first two words that are not filler, kebab-case
    ("Find me the cheapest flight to Oslo" -> ``cheapest-flight``)."""
    words = re.findall(r"[a-z0-9]+", task_description.lower())
    words = [word for word in words if word not in _FILLER_WORDS]
    return "-".join(words[:2]) or "general-tasks"


@dataclass(frozen=True)
class Lesson:
    """What a run hands the skill writer about one task."""

    task: str
    preferences: tuple[str, ...]
    done: bool


@dataclass
class FakeSkill:
    """A skill: its files (path -> (mime, text)) and, for a learned one, what it was taught."""

    id: str
    user_id: str | None
    name: str
    description: str
    disk_id: str
    files: dict[str, tuple[str, str]]
    created_at: str
    updated_at: str
    preferences: list[str] = field(default_factory=list)
    tasks_done: list[str] = field(default_factory=list)


@dataclass
class _SkillLink:
    id: str
    skill_id: str
    created_at: str


@dataclass
class FakeLearningSpace:
    id: str
    user: str | None
    user_id: str | None
    meta: dict[str, Any] | None
    created_at: str
    updated_at: str
    seq: int
    links: list[_SkillLink] = field(default_factory=list)


@dataclass
class _Run:
    statuses: list[str]
    lessons: list[Lesson]


@dataclass
class FakeLearningRecord:
    """A session attached to a space by ``learn()``.

    ``messages_at_learn`` is how many messages the session had stored when ``learn()`` was
    called; ``run`` is the learning in progress, if any.
    """

    id: str
    space_id: str
    session_id: str
    status: str
    created_at: str
    updated_at: str
    messages_at_learn: int
    run: _Run | None = None
    tasks_taken: set[str] = field(default_factory=set)
    preferences_taken: set[str] = field(default_factory=set)


def _yaml_string(text: str) -> str:
    """A JSON string is a YAML string, quotes and colons included."""
    return json.dumps(text, ensure_ascii=False)


def _front_matter(name: str, description: str) -> str:
    return f"---\nname: {_yaml_string(name)}\ndescription: {_yaml_string(description)}\n---\n"


def _bullets(lines: list[str], empty: str) -> str:
    return "\n".join(f"- {line}" for line in lines) if lines else f"- {empty}"


def _learned_skill_md(skill: FakeSkill) -> str:
    return (
        _front_matter(skill.name, skill.description)
        + f"# {skill.name.replace('-', ' ').title()}\n\n"
        "What the user asked for in earlier sessions and the preferences the user stated. "
        "Read it before handling a similar request.\n\n"
        f"## User Preferences\n{_bullets(skill.preferences, 'none stated yet')}\n\n"
        f"## Tasks Done\n{_bullets(skill.tasks_done, 'none yet')}\n"
    )


class Learning:
    """The learning spaces and skills of one fake server.

    Knobs (read whenever learning moves):
        timeline: the statuses a run shows, one per read of its record, default
            ``("skill_writing", "completed")``; e.g. ``("pending", "skill_writing",
            "completed")`` for a slower one, ``("skill_writing", "failed")`` to fail,
            ``("completed", "skill_writing", "completed")`` for a status that moves again after
            a ``completed``, ``()`` to hang.
        skill_namer: task description -> the name of the skill it is written into.

    Helpers: :meth:`record`, :meth:`learned_before_first_message`, :meth:`finish`,
    :meth:`skill_file`.
    """

    def __init__(
        self,
        *,
        sessions: Mapping[str, FakeSession],
        lock: contextlib.AbstractContextManager[Any],
        clock: Callable[[], str],
        user_id: Callable[[str | None], str | None],
    ) -> None:
        self.timeline: tuple[str, ...] = ("skill_writing", "completed")
        self.skill_namer: Callable[[str], str] = domain_name
        self._sessions = sessions
        self._lock = lock
        self._now = clock
        self._user_id = user_id
        self._spaces: dict[str, FakeLearningSpace] = {}
        self._skills: dict[str, FakeSkill] = {}
        self._records: dict[str, FakeLearningRecord] = {}  # by session id
        self._seq = 0

    # -- test hooks -----------------------------------------------------------

    def record(self, session_id: str) -> FakeLearningRecord:
        """A copy of the session's learn record, read without moving it; KeyError if none."""
        with self._lock:
            return copy.deepcopy(self._records[str(uuid.UUID(session_id))])

    def learned_before_first_message(self, session_id: str) -> bool:
        """Whether ``learn()`` attached the session before its first message was stored
        (False when it was never learned, or its space was deleted)."""
        with self._lock:
            record = self._records.get(str(uuid.UUID(session_id)))
            return record is not None and record.messages_at_learn == 0

    def finish(self, session_id: str | None = None) -> None:
        """Play the rest of each run (of one session, or all) at once, as time passing would."""
        with self._lock:
            if session_id is None:
                records = list(self._records.values())
            else:
                records = [self._records[str(uuid.UUID(session_id))]]
            for record in records:
                if record.run is not None:
                    for status in record.run.statuses:
                        self._show(record, status)
                    self._end_run(record)

    def skill_file(self, skill_id: str, path: str = "SKILL.md") -> str:
        """The text of a skill's file; KeyError if either is missing."""
        with self._lock:
            return self._skills[str(uuid.UUID(skill_id))].files[path][1]

    # -- hooks for the server -------------------------------------------------

    def route(self, method: str, route: str, query: dict[str, str], body: Any) -> Answer:
        """Answer a route under ``/learning_spaces`` or ``/agent_skills``."""
        if route == "/learning_spaces":
            if method == "POST":
                return self._create_space(body)
            if method == "GET":
                return self._list_spaces(query)
        space_match = _SPACE_ROUTE.match(route)
        if space_match:
            space_id, sub, item = space_match.groups()
            answer = self._space_route(method, space_id, sub, item, body)
            if answer is not None:
                return answer
        skill_match = _SKILL_ROUTE.match(route)
        if skill_match and method == "GET":
            return self._skill_route(skill_match.group(1), skill_match.group(2), query)
        raise Reply(404, 404, "not found")

    def on_processed(self, session: FakeSession) -> None:
        """Messages of ``session`` were just processed: an attached session's new lessons go
        to a run.  Called with the server's lock held."""
        record = self._records.get(session.id)
        if record is not None:
            self._start_run(record, self._take_lessons(record, session))

    # -- learning ---------------------------------------------------------------

    def _take_lessons(self, record: FakeLearningRecord, session: FakeSession) -> list[Lesson]:
        """The tasks done and the preferences not handed to a run before."""
        lessons = []
        for task in session.tasks:
            preferences: tuple[str, ...] = ()
            if task.user_preferences and task.id not in record.preferences_taken:
                record.preferences_taken.add(task.id)
                preferences = tuple(task.user_preferences)
            done = task.status == "success" and task.id not in record.tasks_taken
            if done:
                record.tasks_taken.add(task.id)
            if preferences or done:
                lessons.append(Lesson(task.task_description, preferences, done))
        return lessons

    def _start_run(self, record: FakeLearningRecord, lessons: list[Lesson]) -> None:
        if not lessons:
            return
        if record.run is not None:  # the run in progress writes these too
            record.run.lessons.extend(lessons)
            return
        unknown = [s for s in self.timeline if s not in STATUSES]
        if unknown:
            raise ValueError(f"not learning statuses: {unknown}")
        record.run = _Run(list(self.timeline), lessons)

    def _read(self, record: FakeLearningRecord) -> None:
        """A read of the record moves it: the run's next status, or the rules for pending."""
        run = record.run
        if run is not None:
            if run.statuses:
                self._show(record, run.statuses.pop(0))
                if not run.statuses:
                    self._end_run(record)
        elif record.status == "pending":
            self._settle_pending(record)

    def _settle_pending(self, record: FakeLearningRecord) -> None:
        session = self._sessions.get(record.session_id)
        if session is None:
            return
        statuses = {m.session_task_process_status for m in session.messages}
        if statuses & {"pending", "running"}:
            return
        if "failed" in statuses:
            self._show(record, "failed")
        elif not session.tasks:
            record.status = "completed"  # at once, and updated_at stays, as recorded
        elif not any(task.status == "success" for task in session.tasks):
            now = self._now()
            for task in session.tasks:
                task.status, task.updated_at = "success", now
            self._start_run(record, self._take_lessons(record, session))
        # else a task is already success: the real server leaves the record pending for good

    def _show(self, record: FakeLearningRecord, status: str) -> None:
        if status != record.status:
            record.status, record.updated_at = status, self._now()

    def _end_run(self, record: FakeLearningRecord) -> None:
        run, record.run = record.run, None
        space = self._spaces.get(record.space_id)
        if run is not None and space is not None and record.status == "completed":
            for lesson in run.lessons:
                self._write(space, lesson)

    def _write(self, space: FakeLearningSpace, lesson: Lesson) -> None:
        """The skill writer: update the space's skill of the lesson's name, or create it."""
        name = self.skill_namer(lesson.task)
        skill = next((s for s in self._linked(space) if s.name == name), None)
        if skill is None:
            title = name.replace("-", " ").title()
            description = f"{title}: the user's stated preferences and the tasks done for the user"
            skill = self._new_skill(space, name, description)
        _add_new(skill.preferences, lesson.preferences)
        _add_new(skill.tasks_done, [lesson.task] if lesson.done else [])
        skill.files["SKILL.md"] = (LEARNED_MIME, _learned_skill_md(skill))
        skill.updated_at = self._now()

    # -- spaces ---------------------------------------------------------------

    def _space_route(
        self, method: str, space_id: str, sub: str | None, item: str | None, body: Any
    ) -> Answer | None:
        sid = canonical_uuid(space_id)
        table: dict[tuple[str, str | None, bool], Callable[[], Answer]] = {
            ("GET", None, False): lambda: self._get_space(sid),
            ("PATCH", None, False): lambda: self._update_space(sid, body),
            ("DELETE", None, False): lambda: self._delete_space(sid),
            ("POST", "learn", False): lambda: self._learn(sid, body),
            ("GET", "sessions", False): lambda: self._list_records(sid),
            ("GET", "sessions", True): lambda: self._get_record(sid, item or ""),
            ("GET", "skills", False): lambda: self._list_skills(sid),
            ("POST", "skills", False): lambda: self._include_skill(sid, body),
            ("DELETE", "skills", True): lambda: self._exclude_skill(sid, item or ""),
        }
        handler = table.get((method, sub, item is not None))
        return handler() if handler is not None else None

    def _create_space(self, body: Any) -> Answer:
        payload = json_object(body if body is not None else {})
        user, meta = payload.get("user"), payload.get("meta")
        if (user is not None and not isinstance(user, str)) or (
            meta is not None and not isinstance(meta, dict)
        ):
            raise param_error()
        with self._lock:
            now = self._now()
            self._seq += 1
            space = FakeLearningSpace(
                id=str(uuid.uuid4()),
                user=user or None,
                user_id=self._user_id(user or None),
                meta=copy.deepcopy(meta),
                created_at=now,
                updated_at=now,
                seq=self._seq,
            )
            self._spaces[space.id] = space
            for name, description, about in _TEMPLATES:
                skill = self._new_skill(space, name, description)
                text = _front_matter(name, description) + f"# {name}\n\n{about}\n"
                skill.files["SKILL.md"] = (TEMPLATE_MIME, text)
            return ok(_space_json(space), 201)

    def _list_spaces(self, query: dict[str, str]) -> Answer:
        limit = parse_limit(query.get("limit"), DEFAULT_LIST_LIMIT) or DEFAULT_LIST_LIMIT
        meta_filter: Any = None
        if query.get("filter_by_meta"):
            try:
                meta_filter = json.loads(query["filter_by_meta"])
            except ValueError as exc:
                raise param_error() from exc
            if not isinstance(meta_filter, dict):
                raise param_error()
        user = query.get("user") or None
        with self._lock:
            spaces = [
                s
                for s in self._spaces.values()
                if (user is None or s.user == user)
                and (not meta_filter or jsonb_contains(s.meta or {}, meta_filter))
            ]
            page, next_cursor, has_more = paginate(
                spaces,
                lambda s: s.seq,
                kind="learning_space",
                limit=limit,
                cursor=query.get("cursor"),
                desc=parse_bool(query.get("time_desc")),
            )
            data: dict[str, Any] = {"items": [_space_json(s) for s in page], "has_more": has_more}
        if next_cursor:
            data["next_cursor"] = next_cursor
        return ok(data)

    def _get_space(self, space_id: str) -> Answer:
        with self._lock:
            return ok(_space_json(self._space(space_id)))

    def _update_space(self, space_id: str, body: Any) -> Answer:
        meta = json_object(body).get("meta")
        if not isinstance(meta, dict):
            raise param_error()
        with self._lock:
            space = self._space(space_id)
            space.meta = {**(space.meta or {}), **copy.deepcopy(meta)}
            space.updated_at = self._now()
            return ok(_space_json(space))

    def _delete_space(self, space_id: str) -> Answer:
        with self._lock:
            self._space(space_id)
            del self._spaces[space_id]
            for session_id, record in list(self._records.items()):
                if record.space_id == space_id:
                    del self._records[session_id]
        return 200, {"code": 0, "msg": "ok"}

    def _space(self, space_id: str) -> FakeLearningSpace:
        space = self._spaces.get(space_id)
        if space is None:
            raise Reply(404, 404, "learning space not found")
        return space

    # -- learn records ----------------------------------------------------------

    def _learn(self, space_id: str, body: Any) -> Answer:
        session_id = json_object(body).get("session_id")
        if not isinstance(session_id, str):
            raise param_error()
        session_id = canonical_uuid(session_id)
        with self._lock:
            space = self._space(space_id)
            session = self._sessions.get(session_id)
            if session is None:
                raise Reply(404, 404, "session not found")
            if session_id in self._records:  # "another space" even when it is this one
                raise Reply(409, 409, "session already learned by another space")
            now = self._now()
            record = FakeLearningRecord(
                id=str(uuid.uuid4()),
                space_id=space.id,
                session_id=session_id,
                status="pending",
                created_at=now,
                updated_at=now,
                messages_at_learn=len(session.messages),
            )
            self._records[session_id] = record
            return ok(_record_json(record), 201)

    def _get_record(self, space_id: str, session_id: str) -> Answer:
        session_id = canonical_uuid(session_id)
        with self._lock:
            self._space(space_id)
            record = self._records.get(session_id)
            if record is None or record.space_id != space_id:
                raise Reply(404, 404, "learning space session not found")
            self._read(record)
            return ok(_record_json(record))

    def _list_records(self, space_id: str) -> Answer:
        with self._lock:
            self._space(space_id)
            records = [r for r in self._records.values() if r.space_id == space_id]
            for record in records:
                self._read(record)
            return ok([_record_json(r) for r in records])

    # -- skills -------------------------------------------------------------------

    def _new_skill(self, space: FakeLearningSpace, name: str, description: str) -> FakeSkill:
        now = self._now()
        skill = FakeSkill(
            id=str(uuid.uuid4()),
            user_id=space.user_id,
            name=name,
            description=description,
            disk_id=str(uuid.uuid4()),
            files={},
            created_at=now,
            updated_at=now,
        )
        self._skills[skill.id] = skill
        space.links.append(_SkillLink(str(uuid.uuid4()), skill.id, now))
        return skill

    def _linked(self, space: FakeLearningSpace) -> list[FakeSkill]:
        return [self._skills[link.skill_id] for link in space.links]

    def _skill(self, skill_id: str) -> FakeSkill:
        skill = self._skills.get(canonical_uuid(skill_id))
        if skill is None:
            raise Reply(404, 500, "database error")
        return skill

    def _list_skills(self, space_id: str) -> Answer:
        with self._lock:
            return ok([_skill_json(s) for s in self._linked(self._space(space_id))])

    def _include_skill(self, space_id: str, body: Any) -> Answer:
        skill_id = json_object(body).get("skill_id")
        if not isinstance(skill_id, str):
            raise param_error()
        with self._lock:
            space = self._space(space_id)
            skill = self._skill(skill_id)
            linked = self._linked(space)
            if skill in linked:
                raise Reply(409, 409, "skill already included in this space")
            if any(s.name == skill.name for s in linked):
                message = f"skill with name '{skill.name}' already exists in this space"
                raise Reply(409, 409, message)
            link = _SkillLink(str(uuid.uuid4()), skill.id, self._now())
            space.links.append(link)
            data = {
                "id": link.id,
                "learning_space_id": space.id,
                "skill_id": skill.id,
                "created_at": link.created_at,
            }
            return ok(data, 201)

    def _exclude_skill(self, space_id: str, skill_id: str) -> Answer:
        skill_id = canonical_uuid(skill_id)
        with self._lock:
            space = self._space(space_id)
            space.links = [link for link in space.links if link.skill_id != skill_id]
        return 200, {"code": 0, "msg": "ok"}

    def _skill_route(self, skill_id: str, sub: str | None, query: dict[str, str]) -> Answer:
        with self._lock:
            skill = copy.deepcopy(self._skill(skill_id))
        if sub is None:
            return ok(_skill_json(skill))
        if sub == "download_zip":
            return 200, _zip(skill)
        path = query.get("file_path")
        if not path:
            raise param_error()
        if path not in skill.files:
            raise Reply(404, 404, "file not found")
        mime, text = skill.files[path]
        return ok({"path": path, "mime": mime, "content": {"type": "text", "raw": text}})


def _add_new(items: list[str], new: Iterable[str]) -> None:
    items.extend(item for item in new if item not in items)


def _space_json(space: FakeLearningSpace) -> dict[str, Any]:
    return {
        "id": space.id,
        "user_id": space.user_id,
        "meta": copy.deepcopy(space.meta),
        "created_at": space.created_at,
        "updated_at": space.updated_at,
    }


def _record_json(record: FakeLearningRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "learning_space_id": record.space_id,
        "session_id": record.session_id,
        "status": record.status,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def _skill_json(skill: FakeSkill) -> dict[str, Any]:
    return {
        "id": skill.id,
        "user_id": skill.user_id,
        "name": skill.name,
        "description": skill.description,
        "disk_id": skill.disk_id,
        "file_index": [{"path": path, "mime": mime} for path, (mime, _) in skill.files.items()],
        "meta": None,
        "created_at": skill.created_at,
        "updated_at": skill.updated_at,
    }


def _zip(skill: FakeSkill) -> RawBody:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, (_, text) in skill.files.items():
            archive.writestr(path, text)
    filename = f"{skill.name}.zip"
    disposition = f"attachment; filename=\"{filename}\"; filename*=UTF-8''{quote(filename)}"
    return RawBody(buffer.getvalue(), "application/zip", {"Content-Disposition": disposition})
