"""The Acontext mirror against the contract-faithful fake, through the real SDK."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from openai_basic.errors import ConfigError, ServiceError, SessionNotFoundError
from openai_basic.mirror import AGENT_NAME, PAGE_SIZE, AcontextMirror, Task
from openai_basic.settings import Settings
from tests.fakes.acontext_server import FakeAcontext

TOOL_TURN: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather in Oslo?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "Sunny."},
    {"role": "assistant", "content": "It is sunny in Oslo."},
]


def as_returned(message: dict[str, Any]) -> dict[str, Any]:
    """What Acontext gives back: an assistant message with tool calls has no content key."""
    if message.get("tool_calls"):
        return {k: v for k, v in message.items() if k != "content"}
    return message


@pytest.fixture
def mirror(settings: Settings) -> Any:
    mirror = AcontextMirror(settings)
    yield mirror
    mirror.close()


def test_create_keeps_the_system_prompt_in_configs(mirror: Any, acontext: FakeAcontext) -> None:
    opened = mirror.create(model="gpt-4o-mini", system_prompt="Be kind.")
    assert opened.history == []
    assert acontext.session(opened.session_id).configs == {
        "agent": AGENT_NAME,
        "model": "gpt-4o-mini",
        "system_prompt": "Be kind.",
    }


def test_messages_are_stored_in_order_in_openai_format(mirror: Any, acontext: FakeAcontext) -> None:
    opened = mirror.create(model="m", system_prompt="Be kind.")
    for message in TOOL_TURN:
        mirror.append(message)
    assert acontext.stored_messages(opened.session_id) == [as_returned(m) for m in TOOL_TURN]
    posts = [r for r in acontext.requests if r.method == "POST" and r.path.endswith("/messages")]
    assert [r.body["format"] for r in posts] == ["openai"] * 4
    assert [r.body["blob"] for r in posts] == TOOL_TURN


def test_resume_loads_every_page_and_the_stored_system_prompt(
    mirror: Any, acontext: FakeAcontext
) -> None:
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"}
        for i in range(PAGE_SIZE * 2 + 7)
    ]
    session_id = acontext.add_session(configs={"system_prompt": "Stored."}, messages=messages)
    opened = mirror.resume(session_id, default_system_prompt="Default.")
    assert opened.history == messages
    assert opened.system_prompt == "Stored."
    pages = [r for r in acontext.requests if r.method == "GET" and r.path.endswith("/messages")]
    assert len(pages) == 3


def test_resume_without_a_stored_prompt_uses_the_default(
    mirror: Any, acontext: FakeAcontext
) -> None:
    session_id = acontext.add_session(messages=TOOL_TURN)
    opened = mirror.resume(session_id, default_system_prompt="Default.")
    assert opened.history == [as_returned(m) for m in TOOL_TURN]
    assert opened.system_prompt == "Default."


def test_resume_of_an_unknown_session_says_so(mirror: Any) -> None:
    unknown = str(uuid.uuid4())
    with pytest.raises(SessionNotFoundError, match=f"no Acontext session {unknown}"):
        mirror.resume(unknown, default_system_prompt="")


def test_resume_of_a_malformed_id_is_a_configuration_error(mirror: Any) -> None:
    with pytest.raises(ConfigError, match="'not-a-uuid' is not a session id"):
        mirror.resume("not-a-uuid", default_system_prompt="")


def test_finish_flushes_until_nothing_is_pending_then_reads_tasks(
    mirror: Any, acontext: FakeAcontext
) -> None:
    opened = mirror.create(model="m", system_prompt="s")
    for i in range(20):
        mirror.append({"role": "user", "content": f"task {i}"})
        mirror.append({"role": "assistant", "content": f"did {i}"})
    waits: list[tuple[int, int]] = []
    report = mirror.finish(on_wait=lambda pending, busy: waits.append((pending, busy)))
    flushes = [r for r in acontext.requests if r.path.endswith("/flush")]
    assert len(flushes) == 2  # 40 messages, at most 32 per flush
    assert waits == [(40, 0), (8, 0)]
    assert report.unprocessed == 0
    assert len(report.tasks) == 20
    assert report.tasks[0] == Task(
        order=1,
        description="task 0",
        status="success",
        progresses=("Agent responded to: task 0",),
        user_preferences=(),
    )
    assert acontext.session(opened.session_id).id == opened.session_id


def test_a_failed_flush_is_reported(mirror: Any, acontext: FakeAcontext) -> None:
    mirror.create(model="m", system_prompt="s")
    mirror.append({"role": "user", "content": "hi"})
    acontext.flush_status, acontext.flush_errmsg = 500, "extraction crashed"
    with pytest.raises(ServiceError, match="flush failed: extraction crashed"):
        mirror.finish()


def test_waiting_for_extraction_is_bounded(settings: Settings, acontext: FakeAcontext) -> None:
    from dataclasses import replace

    mirror = AcontextMirror(replace(settings, task_wait_seconds=0))
    mirror.create(model="m", system_prompt="s")
    mirror.append({"role": "user", "content": "hi"})
    report = mirror.finish()
    mirror.close()
    assert (report.unprocessed, report.tasks) == (1, ())


def test_tasks_keep_missing_progress_and_preferences_empty(
    mirror: Any, acontext: FakeAcontext
) -> None:
    opened = mirror.create(model="m", system_prompt="s")
    mirror.append({"role": "user", "content": "I prefer window seats. Book a flight."})
    report = mirror.finish()
    assert report.tasks == (
        Task(
            order=1,
            description="I prefer window seats. Book a flight.",
            status="running",
            progresses=(),
            user_preferences=("I prefer window seats. Book a flight.",),
        ),
    )
    assert mirror.tasks(opened.session_id) == report.tasks


def test_a_rejected_key_is_a_configuration_error(settings: Settings) -> None:
    from dataclasses import replace

    mirror = AcontextMirror(replace(settings, acontext_api_key="sk-ac-wrong"))
    with pytest.raises(ConfigError, match="ACONTEXT_API_KEY was rejected"):
        mirror.create(model="m", system_prompt="s")


def test_an_unreachable_server_names_the_url_and_how_to_start_one(
    mirror: Any, acontext: FakeAcontext
) -> None:
    acontext.stop()
    with pytest.raises(ServiceError) as caught:
        mirror.create(model="m", system_prompt="s")
    assert acontext.base_url in str(caught.value)
    assert "acontext server up" in str(caught.value)


def test_a_failed_store_is_a_service_error(mirror: Any, acontext: FakeAcontext) -> None:
    mirror.create(model="m", system_prompt="s")
    acontext.fail_next(1, status=503)
    with pytest.raises(ServiceError, match="HTTP 503"):
        mirror.append({"role": "user", "content": "hi"})
