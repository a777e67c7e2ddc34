"""Contract tests for the fake Acontext's learning spaces and skills, driven through the real
``acontext`` SDK (and its ``SKILL_TOOLS``), checked against what the real server answered."""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from acontext import AcontextClient
from acontext.agent.skill import SKILL_TOOLS
from acontext.errors import APIError, TimeoutError, TransportError

from tests.fakes.acontext_server import FakeAcontext, start_fake_acontext
from tests.fakes.learning import domain_name

Private = tuple[FakeAcontext, AcontextClient]

TEMPLATES = {
    "daily-logs": (
        "Track daily activity logs and summaries for the user. TRIGGER BY: read/edit user memory"
    ),
    "user-general-facts": "Capture and organize general facts about the user by topic",
}
FLIGHT = "Find me the cheapest flight from Helsinki to Oslo on Friday. I prefer aisle seats."
FLIGHT_BACK = "Book the cheapest flight back on Sunday; I prefer morning departures."
LEARNED = "cheapest-flight"  # domain_name of both requests
LEARNED_DESCRIPTION = (
    "Cheapest Flight: the user's stated preferences and the tasks done for the user"
)
# Fields of each object, as the real server sent them.
SPACE_KEYS = {"id", "user_id", "meta", "created_at", "updated_at"}
RECORD_KEYS = {"id", "learning_space_id", "session_id", "status", "created_at", "updated_at"}
SKILL_KEYS = {
    *("id", "user_id", "name", "description", "disk_id", "file_index", "meta"),
    *("created_at", "updated_at"),
}


def conversation(request: str) -> list[dict[str, Any]]:
    """A user request, a tool call, its result and the assistant's reply."""
    call = {"id": "call_1", "type": "function", "function": {"name": "book", "arguments": "{}"}}
    return [
        {"role": "user", "content": request},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Booked, ref QX7."},
        {"role": "assistant", "content": "Done: booked, reference QX7."},
    ]


def store_all(client: AcontextClient, session_id: str, blobs: list[dict[str, Any]]) -> None:
    for blob in blobs:
        client.sessions.store_message(session_id, blob=blob)  # type: ignore[arg-type]


def learned_session(client: AcontextClient, space_id: str, request: str = FLIGHT) -> str:
    """A session learned the way issue 11 asks: learn() first, then the turns, then flush."""
    session_id = client.sessions.create(user="alice").id
    client.learning_spaces.learn(space_id, session_id=session_id)
    store_all(client, session_id, conversation(request))
    client.sessions.flush(session_id)
    return session_id


def names(client: AcontextClient, space_id: str) -> list[str]:
    return [skill.name for skill in client.learning_spaces.list_skills(space_id)]


def reads(client: AcontextClient, space_id: str, session_id: str, count: int) -> list[str]:
    return [
        client.learning_spaces.get_session(space_id, session_id=session_id).status
        for _ in range(count)
    ]


def api_error(exc: pytest.ExceptionInfo[APIError]) -> tuple[int, int | None, str | None]:
    return exc.value.status_code, exc.value.code, exc.value.message


def raw(fake: FakeAcontext, method: str, path: str, body: Any = None) -> httpx.Response:
    """One request without the SDK, to see status codes and whole envelopes."""
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    return httpx.request(method, fake.base_url + path, json=body, headers=headers)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAcontext]:
    """One server for the module: tests use their own spaces and leave its knobs alone."""
    with start_fake_acontext() as server:
        yield server


@pytest.fixture(scope="module")
def client(fake: FakeAcontext) -> Iterator[AcontextClient]:
    with AcontextClient(api_key=fake.api_key, base_url=fake.base_url, timeout=5) as sdk:
        yield sdk


@pytest.fixture
def private() -> Iterator[Private]:
    """A fresh server and client, for tests that turn the learning knobs."""
    with (
        start_fake_acontext() as server,
        AcontextClient(api_key=server.api_key, base_url=server.base_url, timeout=5) as sdk,
    ):
        yield server, sdk


# -- spaces -----------------------------------------------------------------------


def test_a_new_space_has_the_two_template_skills(
    fake: FakeAcontext, client: AcontextClient
) -> None:
    space = client.learning_spaces.create(user="alice", meta={"app": "travel"})
    assert space.user_id == client.sessions.create(user="alice").user_id is not None
    assert (space.meta, space.created_at) == ({"app": "travel"}, space.updated_at)
    assert client.learning_spaces.get(space.id) == space

    skills = client.learning_spaces.list_skills(space.id)
    assert {s.name: s.description for s in skills} == TEMPLATES
    for skill in skills:
        assert skill.user_id == space.user_id
        assert [(f.path, f.mime) for f in skill.file_index] == [
            ("SKILL.md", "text/markdown; charset=utf-8")
        ]
        text = client.skills.get_file(skill_id=skill.id, file_path="SKILL.md").content
        assert text is not None
        assert text.raw.startswith(
            f'---\nname: "{skill.name}"\ndescription: "{skill.description}"\n---\n'
        )

    bare = client.learning_spaces.create()
    assert (bare.user_id, bare.meta) == (None, None)


def test_envelopes_and_status_codes_match_the_recordings(fake: FakeAcontext) -> None:
    created = raw(fake, "POST", "/learning_spaces", {"user": "alice"})
    assert created.status_code == 201
    assert created.headers["content-type"] == "application/json; charset=utf-8"
    assert created.json()["code"] == 0 and created.json()["msg"] == ""
    assert set(created.json()["data"]) == SPACE_KEYS
    space_id = created.json()["data"]["id"]
    session_id = raw(fake, "POST", "/session", {}).json()["data"]["id"]

    learned = raw(fake, "POST", f"/learning_spaces/{space_id}/learn", {"session_id": session_id})
    assert (learned.status_code, set(learned.json()["data"])) == (201, RECORD_KEYS)
    assert learned.json()["data"]["status"] == "pending"
    listed = raw(fake, "GET", f"/learning_spaces/{space_id}/sessions").json()["data"]
    assert [set(record) for record in listed] == [RECORD_KEYS]

    skills = raw(fake, "GET", f"/learning_spaces/{space_id}/skills").json()["data"]
    assert [set(skill) for skill in skills] == [SKILL_KEYS, SKILL_KEYS]
    file = raw(fake, "GET", f"/agent_skills/{skills[0]['id']}/file?file_path=SKILL.md")
    assert set(file.json()["data"]) == {"path", "mime", "content"}  # no "url" for text
    assert file.json()["data"]["content"]["type"] == "text"

    excluded = raw(fake, "DELETE", f"/learning_spaces/{space_id}/skills/{skills[0]['id']}")
    assert excluded.json() == {"code": 0, "msg": "ok"}
    included = raw(
        fake, "POST", f"/learning_spaces/{space_id}/skills", {"skill_id": skills[0]["id"]}
    )
    assert included.status_code == 201
    assert set(included.json()["data"]) == {"id", "learning_space_id", "skill_id", "created_at"}
    deleted = raw(fake, "DELETE", f"/learning_spaces/{space_id}")
    assert (deleted.status_code, deleted.json()) == (200, {"code": 0, "msg": "ok"})


def test_list_spaces_filters_and_pages(private: Private) -> None:
    client = private[1]
    made = [client.learning_spaces.create(user="alice", meta={"n": i}) for i in range(3)]
    client.learning_spaces.create(user="bob")

    newest = client.learning_spaces.list(user="alice", limit=2, time_desc=True)
    assert [s.id for s in newest.items] == [made[2].id, made[1].id]
    assert newest.has_more is True and newest.next_cursor
    rest = client.learning_spaces.list(
        user="alice", limit=2, time_desc=True, cursor=newest.next_cursor
    )
    assert ([s.id for s in rest.items], rest.has_more, rest.next_cursor) == (
        [made[0].id],
        False,
        None,
    )
    assert [s.id for s in client.learning_spaces.list(filter_by_meta={"n": 1}).items] == [
        made[1].id
    ]
    assert len(client.learning_spaces.list().items) == 4


def test_update_merges_meta_and_delete_keeps_skills(
    fake: FakeAcontext, client: AcontextClient
) -> None:
    space = client.learning_spaces.create(meta={"a": 1})
    updated = client.learning_spaces.update(space.id, meta={"b": 2})
    assert updated.meta == {"a": 1, "b": 2}
    assert updated.updated_at > space.updated_at

    session_id = learned_session(client, space.id)
    skills = client.learning_spaces.list_skills(space.id)
    client.learning_spaces.delete(space.id)
    with pytest.raises(APIError) as exc:
        client.learning_spaces.get(space.id)
    assert api_error(exc) == (404, 404, "learning space not found")
    assert [client.skills.get(s.id).name for s in skills] == list(TEMPLATES)
    # its learn records went with it: the session can be learned elsewhere
    other = client.learning_spaces.create()
    assert client.learning_spaces.learn(other.id, session_id=session_id).status == "pending"


def test_exclude_and_include_skills(fake: FakeAcontext, client: AcontextClient) -> None:
    space = client.learning_spaces.create()
    daily, facts = client.learning_spaces.list_skills(space.id)
    for skill in (daily, facts, facts):  # excluding is idempotent
        client.learning_spaces.exclude_skill(space.id, skill_id=skill.id)
    assert client.learning_spaces.list_skills(space.id) == []

    link = client.learning_spaces.include_skill(space.id, skill_id=daily.id)
    assert (link.learning_space_id, link.skill_id) == (space.id, daily.id)
    assert names(client, space.id) == ["daily-logs"]
    with pytest.raises(APIError) as exc:
        client.learning_spaces.include_skill(space.id, skill_id=daily.id)
    assert api_error(exc) == (409, 409, "skill already included in this space")

    other_daily = client.learning_spaces.list_skills(client.learning_spaces.create().id)[0]
    with pytest.raises(APIError) as exc:
        client.learning_spaces.include_skill(space.id, skill_id=other_daily.id)
    assert api_error(exc) == (409, 409, "skill with name 'daily-logs' already exists in this space")


# -- learning ---------------------------------------------------------------------


def test_learn_before_the_first_message_then_flush_learns_a_skill(
    fake: FakeAcontext, client: AcontextClient
) -> None:
    space = client.learning_spaces.create(user="alice")
    session_id = client.sessions.create(user="alice").id
    record = client.learning_spaces.learn(space.id, session_id=session_id)
    assert (record.learning_space_id, record.session_id, record.status) == (
        space.id,
        session_id,
        "pending",
    )
    store_all(client, session_id, conversation(FLIGHT))
    assert fake.learning.learned_before_first_message(session_id) is True
    assert reads(client, space.id, session_id, 2) == ["pending", "pending"]  # messages wait

    client.sessions.flush(session_id)
    done = client.learning_spaces.wait_for_learning(
        space.id, session_id=session_id, timeout=10, poll_interval=0.01
    )
    assert (done.id, done.status, done.created_at) == (record.id, "completed", record.created_at)
    assert done.updated_at > record.updated_at
    assert client.learning_spaces.list_sessions(space.id) == [done]
    assert [t.status for t in client.sessions.get_tasks(session_id).items] == ["success"]

    skills = client.learning_spaces.list_skills(space.id)
    assert [s.name for s in skills] == [*TEMPLATES, LEARNED]
    learned = skills[-1]
    assert (learned.description, learned.user_id) == (LEARNED_DESCRIPTION, space.user_id)
    assert [(f.path, f.mime) for f in learned.file_index] == [("SKILL.md", "text/markdown")]
    assert client.skills.get(learned.id) == learned
    file = client.skills.get_file(skill_id=learned.id, file_path="SKILL.md")
    assert (file.path, file.mime, file.url) == ("SKILL.md", "text/markdown", None)
    assert file.content is not None
    assert file.content.raw == (
        f'---\nname: "{LEARNED}"\ndescription: "{LEARNED_DESCRIPTION}"\n---\n'
        "# Cheapest Flight\n\n"
        "What the user asked for in earlier sessions and the preferences the user stated. "
        "Read it before handling a similar request.\n\n"
        f"## User Preferences\n- {FLIGHT}\n\n"
        f"## Tasks Done\n- {FLIGHT}\n"
    )


def test_reads_move_the_status_and_the_skill_is_written_at_completed(
    fake: FakeAcontext, client: AcontextClient
) -> None:
    space = client.learning_spaces.create()
    session_id = learned_session(client, space.id)
    assert names(client, space.id) == list(TEMPLATES)  # written when the run completes
    assert fake.learning.record(session_id).status == "pending"  # peeking moves nothing

    seen = [client.learning_spaces.get_session(space.id, session_id=session_id) for _ in range(3)]
    assert [r.status for r in seen] == ["skill_writing", "completed", "completed"]
    assert seen[0].updated_at < seen[1].updated_at == seen[2].updated_at
    assert names(client, space.id) == [*TEMPLATES, LEARNED]


def test_a_later_session_updates_the_skill_in_place(
    fake: FakeAcontext, client: AcontextClient
) -> None:
    space = client.learning_spaces.create()
    first = learned_session(client, space.id, FLIGHT)
    client.learning_spaces.wait_for_learning(space.id, session_id=first, poll_interval=0.01)
    before = client.learning_spaces.list_skills(space.id)[-1]

    second = learned_session(client, space.id, FLIGHT_BACK)
    client.learning_spaces.wait_for_learning(space.id, session_id=second, poll_interval=0.01)
    skills = client.learning_spaces.list_skills(space.id)
    after = skills[-1]
    assert [s.name for s in skills] == [*TEMPLATES, LEARNED]
    assert (after.id, after.created_at) == (before.id, before.created_at)
    assert after.updated_at > before.updated_at
    text = fake.learning.skill_file(after.id)
    assert f"## User Preferences\n- {FLIGHT}\n- {FLIGHT_BACK}\n" in text
    assert f"## Tasks Done\n- {FLIGHT}\n- {FLIGHT_BACK}\n" in text


def test_the_default_skill_name_is_the_tasks_domain_in_kebab_case() -> None:
    assert domain_name(FLIGHT) == domain_name(FLIGHT_BACK) == "cheapest-flight"
    assert domain_name("I prefer window seats. Book a train to Turku.") == "window-seats"
    assert domain_name("Please, and then?") == "general-tasks"


def test_a_read_before_any_message_completes_at_once_and_later_turns_learn_again(
    fake: FakeAcontext, client: AcontextClient
) -> None:
    space = client.learning_spaces.create()
    session_id = client.sessions.create().id
    learned = client.learning_spaces.learn(space.id, session_id=session_id)
    early = client.learning_spaces.get_session(space.id, session_id=session_id)
    assert (early.status, early.updated_at) == ("completed", learned.updated_at)
    assert names(client, space.id) == list(TEMPLATES)

    store_all(client, session_id, conversation(FLIGHT))
    client.sessions.flush(session_id)
    assert reads(client, space.id, session_id, 2) == ["skill_writing", "completed"]
    assert names(client, space.id) == [*TEMPLATES, LEARNED]


def test_a_session_without_task_tracking_completes_with_nothing_learned(
    fake: FakeAcontext, client: AcontextClient
) -> None:
    space = client.learning_spaces.create()
    session_id = client.sessions.create(disable_task_tracking=True).id
    client.learning_spaces.learn(space.id, session_id=session_id)
    store_all(client, session_id, conversation(FLIGHT))
    client.sessions.flush(session_id)
    assert reads(client, space.id, session_id, 2) == ["completed", "completed"]
    assert names(client, space.id) == list(TEMPLATES)


def test_learn_after_a_task_succeeded_stays_pending_for_good(
    fake: FakeAcontext, client: AcontextClient
) -> None:
    space = client.learning_spaces.create()
    session_id = client.sessions.create().id
    store_all(client, session_id, conversation(FLIGHT))
    client.sessions.flush(session_id)  # the task is success before learn()
    client.learning_spaces.learn(space.id, session_id=session_id)
    assert fake.learning.learned_before_first_message(session_id) is False

    with pytest.raises(TimeoutError) as exc:
        client.learning_spaces.wait_for_learning(
            space.id, session_id=session_id, timeout=0.05, poll_interval=0.01
        )
    assert str(exc.value).endswith("(last status: pending)")
    assert names(client, space.id) == list(TEMPLATES)


def test_learn_after_processing_still_learns_while_no_task_succeeded(
    fake: FakeAcontext, client: AcontextClient
) -> None:
    space = client.learning_spaces.create()
    session_id = client.sessions.create().id
    store_all(client, session_id, conversation(FLIGHT)[:2])  # no reply yet: the task runs
    client.sessions.flush(session_id)
    client.learning_spaces.learn(space.id, session_id=session_id)

    assert reads(client, space.id, session_id, 3) == ["pending", "skill_writing", "completed"]
    assert [t.status for t in client.sessions.get_tasks(session_id).items] == ["success"]
    assert names(client, space.id) == [*TEMPLATES, LEARNED]


# -- knobs ------------------------------------------------------------------------


def test_timeline_knob_can_fail_or_hang_learning(private: Private) -> None:
    fake, client = private
    space = client.learning_spaces.create()
    fake.learning.timeline = ("skill_writing", "failed")
    failed = learned_session(client, space.id)
    wait = client.learning_spaces.wait_for_learning
    assert wait(space.id, session_id=failed, poll_interval=0.01).status == "failed"
    assert names(client, space.id) == list(TEMPLATES)

    for timeline, last in [(("skill_writing",), "skill_writing"), ((), "pending")]:
        fake.learning.timeline = timeline
        hung = learned_session(client, space.id)
        with pytest.raises(TimeoutError) as exc:
            wait(space.id, session_id=hung, timeout=0.05, poll_interval=0.01)
        assert str(exc.value).endswith(f"(last status: {last})")
    assert names(client, space.id) == list(TEMPLATES)


def test_a_completed_that_moves_again_writes_at_the_last_one(private: Private) -> None:
    fake, client = private
    fake.learning.timeline = ("completed", "skill_writing", "completed")
    space = client.learning_spaces.create()
    session_id = learned_session(client, space.id)
    first = client.learning_spaces.wait_for_learning(space.id, session_id=session_id)
    assert first.status == "completed"
    assert names(client, space.id) == list(TEMPLATES)  # more was still to come
    assert reads(client, space.id, session_id, 2) == ["skill_writing", "completed"]
    assert names(client, space.id) == [*TEMPLATES, LEARNED]


def test_finish_plays_the_rest_of_learning_without_reads(private: Private) -> None:
    fake, client = private
    fake.learning.timeline = ("pending", "distilling", "skill_writing", "completed")
    space = client.learning_spaces.create()
    session_id = learned_session(client, space.id)
    fake.learning.finish(session_id)
    assert fake.learning.record(session_id).status == "completed"
    assert names(client, space.id) == [*TEMPLATES, LEARNED]
    assert not [r for r in fake.requests if "/sessions/" in r.path]


def test_skill_namer_knob_names_the_learned_skill(private: Private) -> None:
    fake, client = private
    fake.learning.skill_namer = lambda task: "trip-planning"
    space = client.learning_spaces.create()
    session_id = learned_session(client, space.id)
    fake.learning.finish(session_id)
    learned = client.learning_spaces.list_skills(space.id)[-1]
    assert learned.name == "trip-planning"
    assert learned.description == (
        "Trip Planning: the user's stated preferences and the tasks done for the user"
    )


def test_auto_process_learns_as_messages_are_stored(private: Private) -> None:
    fake, client = private
    fake.auto_process = True
    space = client.learning_spaces.create()
    session_id = client.sessions.create().id
    client.learning_spaces.learn(space.id, session_id=session_id)
    store_all(client, session_id, conversation(FLIGHT))
    done = client.learning_spaces.wait_for_learning(
        space.id, session_id=session_id, poll_interval=0.01
    )
    assert done.status == "completed"
    assert names(client, space.id) == [*TEMPLATES, LEARNED]


# -- SKILL_TOOLS ----------------------------------------------------------------


def test_skill_tools_work_against_the_fake(fake: FakeAcontext, client: AcontextClient) -> None:
    space = client.learning_spaces.create()
    session_id = learned_session(client, space.id)
    client.learning_spaces.wait_for_learning(space.id, session_id=session_id, poll_interval=0.01)
    skills = client.learning_spaces.list_skills(space.id)
    asked = len(fake.requests)
    ctx = SKILL_TOOLS.format_context(client, [s.id for s in skills])
    assert [r.path for r in fake.requests[asked:]] == [f"/agent_skills/{s.id}" for s in skills]

    assert ctx.get_context_prompt() == "\n".join(
        [
            "<available_skills>",
            *(
                f"<skill>\n<name>{s.name}</name>\n<description>{s.description}</description>\n</skill>"
                for s in skills
            ),
            "</available_skills>",
        ]
    )
    assert SKILL_TOOLS.tool_exists("get_skill") and SKILL_TOOLS.tool_exists("get_skill_file")
    learned = skills[-1]
    assert SKILL_TOOLS.execute_tool(ctx, "get_skill", {"skill_name": LEARNED}) == (
        f"Skill: {LEARNED} (ID: {learned.id})\nDescription: {LEARNED_DESCRIPTION}\n"
        "Files: 1 file(s)\n  - SKILL.md (text/markdown)"
    )
    args = {"skill_name": LEARNED, "file_path": "SKILL.md"}
    assert SKILL_TOOLS.execute_tool(ctx, "get_skill_file", args) == (
        f"File 'SKILL.md' (MIME: text/markdown) from skill '{LEARNED}':\n\nContent (type: text):\n"
        + fake.learning.skill_file(learned.id).strip()
    )

    with pytest.raises(
        ValueError, match="Available skills: daily-logs, user-general-facts, cheapest"
    ):
        SKILL_TOOLS.execute_tool(ctx, "get_skill", {"skill_name": "hotel-booking"})
    with pytest.raises(APIError) as exc:
        SKILL_TOOLS.execute_tool(ctx, "get_skill_file", {**args, "file_path": "notes.md"})
    assert api_error(exc) == (404, 404, "file not found")

    other = client.learning_spaces.list_skills(client.learning_spaces.create().id)
    with pytest.raises(ValueError, match="Duplicate skill name 'daily-logs'"):
        SKILL_TOOLS.format_context(client, [s.id for s in skills + other])


def test_skills_download_and_download_zip(
    fake: FakeAcontext, client: AcontextClient, tmp_path: Path
) -> None:
    space = client.learning_spaces.create()
    fake.learning.finish(learned_session(client, space.id))
    learned = client.learning_spaces.list_skills(space.id)[-1]
    text = fake.learning.skill_file(learned.id)

    with zipfile.ZipFile(io.BytesIO(client.skills.download_zip(learned.id))) as archive:
        assert archive.namelist() == ["SKILL.md"]
        assert archive.read("SKILL.md").decode() == text
    answer = raw(fake, "GET", f"/agent_skills/{learned.id}/download_zip")
    assert answer.headers["content-type"] == "application/zip"
    assert answer.headers["content-disposition"] == (
        f"attachment; filename=\"{LEARNED}.zip\"; filename*=UTF-8''{LEARNED}.zip"
    )

    downloaded = client.skills.download(skill_id=learned.id, path=str(tmp_path / LEARNED))
    assert (downloaded.name, downloaded.files) == (LEARNED, ["SKILL.md"])
    assert (tmp_path / LEARNED / "SKILL.md").read_text() == text


# -- errors, as recorded ------------------------------------------------------------


@dataclass(frozen=True)
class World:
    client: AcontextClient
    space: str
    session: str
    unlearned: str
    skill: str
    unknown: str


@pytest.fixture(scope="module")
def world(client: AcontextClient) -> World:
    space = client.learning_spaces.create().id
    session = client.sessions.create().id
    client.learning_spaces.learn(space, session_id=session)
    skill = client.learning_spaces.list_skills(space)[0].id
    unlearned = client.sessions.create().id
    return World(client, space, session, unlearned, skill, str(uuid.uuid4()))


ERRORS: dict[str, tuple[Callable[[World], Any], tuple[int, int, str]]] = {
    "get unknown space": (
        lambda w: w.client.learning_spaces.get(w.unknown),
        (404, 404, "learning space not found"),
    ),
    "get malformed space id": (
        lambda w: w.client.learning_spaces.get("not-a-uuid"),
        (400, 400, "parameter error"),
    ),
    "update unknown space": (
        lambda w: w.client.learning_spaces.update(w.unknown, meta={"k": "v"}),
        (404, 404, "learning space not found"),
    ),
    "delete unknown space": (
        lambda w: w.client.learning_spaces.delete(w.unknown),
        (404, 404, "learning space not found"),
    ),
    "learn unknown space": (
        lambda w: w.client.learning_spaces.learn(w.unknown, session_id=w.unlearned),
        (404, 404, "learning space not found"),
    ),
    "learn unknown session": (
        lambda w: w.client.learning_spaces.learn(w.space, session_id=w.unknown),
        (404, 404, "session not found"),
    ),
    "learn malformed session id": (
        lambda w: w.client.learning_spaces.learn(w.space, session_id="not-a-uuid"),
        (400, 400, "parameter error"),
    ),
    "learn malformed space id": (
        lambda w: w.client.learning_spaces.learn("not-a-uuid", session_id=w.unlearned),
        (400, 400, "parameter error"),
    ),
    "learn the same session twice": (
        lambda w: w.client.learning_spaces.learn(w.space, session_id=w.session),
        (409, 409, "session already learned by another space"),
    ),
    "learn a session another space learned": (
        lambda w: w.client.learning_spaces.learn(
            w.client.learning_spaces.create().id, session_id=w.session
        ),
        (409, 409, "session already learned by another space"),
    ),
    "list skills of unknown space": (
        lambda w: w.client.learning_spaces.list_skills(w.unknown),
        (404, 404, "learning space not found"),
    ),
    "get session not in space": (
        lambda w: w.client.learning_spaces.get_session(w.space, session_id=w.unlearned),
        (404, 404, "learning space session not found"),
    ),
    "wait for session not in space": (
        lambda w: w.client.learning_spaces.wait_for_learning(w.space, session_id=w.unlearned),
        (404, 404, "learning space session not found"),
    ),
    "get session of unknown space": (
        lambda w: w.client.learning_spaces.get_session(w.unknown, session_id=w.session),
        (404, 404, "learning space not found"),
    ),
    "get unknown skill": (
        lambda w: w.client.skills.get(w.unknown),
        (404, 500, "database error"),
    ),
    "get missing file": (
        lambda w: w.client.skills.get_file(skill_id=w.skill, file_path="notes.md"),
        (404, 404, "file not found"),
    ),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_as_the_real_server_answers_them(world: World, case: str) -> None:
    call, expected = ERRORS[case]
    with pytest.raises(APIError) as exc:
        call(world)
    assert api_error(exc) == expected
    assert exc.value.payload == {"code": expected[1], "msg": expected[2]}


# -- faults ---------------------------------------------------------------------------


def test_fault_injection_reaches_the_learning_routes(private: Private) -> None:
    fake, client = private
    space = client.learning_spaces.create()
    session_id = client.sessions.create().id
    fake.fail_next(1, path_contains="/learn")
    with pytest.raises(APIError) as exc:
        client.learning_spaces.learn(space.id, session_id=session_id)
    assert api_error(exc) == (503, 503, "injected failure")
    with pytest.raises(KeyError):
        fake.learning.record(session_id)  # not applied

    fake.fail_next(1, path_contains="/learn", drop_after_write=True)
    with pytest.raises(TransportError):
        client.learning_spaces.learn(space.id, session_id=session_id)
    with pytest.raises(APIError) as exc:  # applied, answer lost: the retry meets it
        client.learning_spaces.learn(space.id, session_id=session_id)
    assert api_error(exc) == (409, 409, "session already learned by another space")


def test_stop_and_restart_keep_spaces_skills_and_records(private: Private) -> None:
    fake, client = private
    space = client.learning_spaces.create()
    session_id = learned_session(client, space.id)
    fake.stop()
    with pytest.raises(TransportError):
        client.learning_spaces.list_skills(space.id)
    fake.restart()
    done = client.learning_spaces.wait_for_learning(
        space.id, session_id=session_id, poll_interval=0.01
    )
    assert done.status == "completed"
    assert names(client, space.id) == [*TEMPLATES, LEARNED]
