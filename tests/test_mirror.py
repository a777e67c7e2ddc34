"""The Acontext mirror against the contract-faithful fake, through the real SDK."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

import openai_basic.mirror
from openai_basic.acontext_api import PAGE_SIZE, Task
from openai_basic.errors import ConfigError, ServiceError, SessionNotFoundError
from openai_basic.journal import Held, Journal
from openai_basic.mirror import AcontextMirror
from openai_basic.settings import Settings
from tests.conftest import as_returned, wait_for
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


@pytest.fixture
def mirror(settings: Settings) -> Iterator[AcontextMirror]:
    mirror = AcontextMirror(settings)
    yield mirror
    mirror.close()


def message_posts(acontext: FakeAcontext) -> list[Any]:
    return [r for r in acontext.requests if r.method == "POST" and r.path.endswith("/messages")]


def test_the_session_is_created_with_the_system_prompt_in_configs(
    mirror: AcontextMirror, acontext: FakeAcontext, settings: Settings
) -> None:
    opened = mirror.create(model="gpt-4o-mini", system_prompt="Be kind.")
    mirror.append({"role": "user", "content": "hi"})
    assert mirror.sync(timeout=5) == 0
    assert opened.history == []
    assert acontext.session(opened.session_id).configs == {
        "agent": settings.session_tag,
        "model": "gpt-4o-mini",
        "system_prompt": "Be kind.",
    }


def test_messages_are_stored_in_order_in_openai_format_with_a_client_id(
    mirror: AcontextMirror, acontext: FakeAcontext
) -> None:
    opened = mirror.create(model="m", system_prompt="Be kind.")
    for message in TOOL_TURN:
        mirror.append(message, {"model": "m"} if message["role"] == "assistant" else None)
    assert mirror.sync(timeout=5) == 0
    assert acontext.stored_messages(opened.session_id) == [as_returned(m) for m in TOOL_TURN]
    posts = message_posts(acontext)
    assert [r.body["format"] for r in posts] == ["openai"] * 4
    assert [r.body["blob"] for r in posts] == TOOL_TURN
    metas = acontext.stored_metas(opened.session_id)
    assert len({meta["client_id"] for meta in metas}) == 4
    assert metas[1]["model"] == "m" and "model" not in metas[0]


def test_a_new_session_without_an_answer_can_be_forgotten_and_one_with_an_answer_not(
    mirror: AcontextMirror, acontext: FakeAcontext, settings: Settings
) -> None:
    forgotten = mirror.create(model="m", system_prompt="s")
    mirror.append({"role": "user", "content": "hi"})
    assert mirror.discard_unanswered()
    assert mirror.sync(timeout=5) == 0
    journal = Journal(settings.state_dir)
    assert journal.messages(forgotten.session_id) == []
    assert journal.uncreated_session(forgotten.session_id) is None
    journal.close()
    assert acontext.requests == []

    kept = mirror.create(model="m", system_prompt="s")
    for message in TOOL_TURN[:2]:
        mirror.append(message)
    assert not mirror.discard_unanswered()
    assert mirror.sync(timeout=5) == 0
    assert acontext.stored_messages(kept.session_id) == [as_returned(m) for m in TOOL_TURN[:2]]


def test_the_journal_is_private_and_in_wal_mode(mirror: AcontextMirror) -> None:
    mirror.create(model="m", system_prompt="s")
    path = mirror.journal.path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_resume_loads_every_page_and_the_stored_system_prompt(
    mirror: AcontextMirror, acontext: FakeAcontext
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
    mirror: AcontextMirror, acontext: FakeAcontext
) -> None:
    session_id = acontext.add_session(messages=TOOL_TURN)
    opened = mirror.resume(session_id, default_system_prompt="Default.")
    assert opened.history == [as_returned(m) for m in TOOL_TURN]
    assert opened.system_prompt == "Default."


def test_resume_adds_messages_still_waiting_in_the_journal(
    settings: Settings, acontext: FakeAcontext
) -> None:
    first = AcontextMirror(settings)
    opened = first.create(model="m", system_prompt="s")
    first.append(TOOL_TURN[0])
    assert first.sync(timeout=5) == 0
    acontext.stop()
    for message in TOOL_TURN[1:]:
        first.append(message)
    assert first.sync(timeout=0.3) == 3
    first.close()
    acontext.restart()

    second = AcontextMirror(settings)
    resumed = second.resume(opened.session_id, default_system_prompt="s")
    assert resumed.history == [TOOL_TURN[0], *TOOL_TURN[1:]]
    assert second.sync(timeout=5) == 0
    second.close()
    assert acontext.stored_messages(opened.session_id) == [as_returned(m) for m in TOOL_TURN]


def test_a_session_that_never_reached_acontext_resumes_from_the_journal(
    settings: Settings, acontext: FakeAcontext
) -> None:
    acontext.stop()
    first = AcontextMirror(settings)
    opened = first.create(model="m", system_prompt="Local.")
    first.append({"role": "user", "content": "offline"})
    first.close()
    second = AcontextMirror(settings)
    resumed = second.resume(opened.session_id, default_system_prompt="Default.")
    second.close()
    assert resumed.history == [{"role": "user", "content": "offline"}]
    assert resumed.system_prompt == "Local."


def test_resume_of_an_unknown_session_says_so(mirror: AcontextMirror) -> None:
    unknown = str(uuid.uuid4())
    with pytest.raises(SessionNotFoundError, match=f"no Acontext session {unknown}"):
        mirror.resume(unknown, default_system_prompt="")


def test_resume_of_a_malformed_id_is_a_configuration_error(mirror: AcontextMirror) -> None:
    with pytest.raises(ConfigError, match="'not-a-uuid' is not a session id"):
        mirror.resume("not-a-uuid", default_system_prompt="")


def test_finish_flushes_until_nothing_is_pending_then_reads_tasks(
    mirror: AcontextMirror, acontext: FakeAcontext
) -> None:
    mirror.create(model="m", system_prompt="s")
    for i in range(20):
        mirror.append({"role": "user", "content": f"task {i}"})
        mirror.append({"role": "assistant", "content": f"did {i}"})
    waits: list[tuple[int, int]] = []
    report = mirror.finish(on_wait=lambda pending, busy: waits.append((pending, busy)))
    flushes = [r for r in acontext.requests if r.path.endswith("/flush")]
    assert len(flushes) == 2  # 40 messages, at most 32 per flush
    assert waits == [(40, 0), (8, 0)]
    assert (report.unprocessed, report.unsent) == (0, 0)
    assert len(report.tasks) == 20
    assert report.tasks[0] == Task(
        order=1,
        description="task 0",
        status="success",
        progresses=("Agent responded to: task 0",),
        user_preferences=(),
    )


def test_a_failed_flush_is_reported(mirror: AcontextMirror, acontext: FakeAcontext) -> None:
    mirror.create(model="m", system_prompt="s")
    mirror.append({"role": "user", "content": "hi"})
    acontext.flush_status, acontext.flush_errmsg = 500, "extraction crashed"
    with pytest.raises(ServiceError, match="flush failed: extraction crashed"):
        mirror.finish()


def test_waiting_for_extraction_is_bounded(settings: Settings, acontext: FakeAcontext) -> None:
    mirror = AcontextMirror(replace(settings, task_wait_seconds=0))
    mirror.create(model="m", system_prompt="s")
    mirror.append({"role": "user", "content": "hi"})
    report = mirror.finish()
    mirror.close()
    assert (report.unprocessed, report.tasks) == (1, ())


def test_tasks_keep_missing_progress_and_preferences_empty(
    mirror: AcontextMirror, acontext: FakeAcontext
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
    assert mirror.api.tasks(opened.session_id) == report.tasks


def test_a_rejected_key_stops_the_writer_and_keeps_the_messages(
    settings: Settings, acontext: FakeAcontext
) -> None:
    mirror = AcontextMirror(replace(settings, acontext_api_key="sk-ac-wrong-key"))
    mirror.create(model="m", system_prompt="s")
    mirror.append({"role": "user", "content": "hi"})
    with pytest.raises(ConfigError, match="ACONTEXT_API_KEY was rejected"):
        mirror.sync(timeout=5)
    assert mirror.journal.count_waiting() == 1
    mirror.close()


def test_acontext_down_from_the_start_keeps_every_message_until_it_is_back(
    settings: Settings, acontext: FakeAcontext
) -> None:
    acontext.stop()
    problems: list[str] = []
    mirror = AcontextMirror(settings, on_problem=problems.append)
    opened = mirror.create(model="m", system_prompt="s")
    for message in TOOL_TURN:
        mirror.append(message)
    wait_for(lambda: bool(problems))
    assert mirror.sync(timeout=0.5) == 4
    # told at the writer's first failure, while the messages may still be being appended
    told = re.escape(
        f"Acontext unreachable at {acontext.base_url} (start one with `acontext server up`); "
    )
    assert re.match(told + r"[0-4] messages? waiting in ", problems[0]), problems[0]
    acontext.restart()
    assert mirror.sync(timeout=10) == 0
    assert problems[-1] == "Acontext is back; sending the waiting messages"
    mirror.close()
    assert acontext.stored_messages(opened.session_id) == [as_returned(m) for m in TOOL_TURN]


def test_server_errors_are_retried_and_stored_once(
    mirror: AcontextMirror, acontext: FakeAcontext
) -> None:
    opened = mirror.create(model="m", system_prompt="s")
    mirror.append(TOOL_TURN[0])
    assert mirror.sync(timeout=5) == 0
    acontext.fail_next(3, status=503, path_contains="/messages")
    for message in TOOL_TURN[1:]:
        mirror.append(message)
    assert mirror.sync(timeout=10) == 0
    assert acontext.stored_messages(opened.session_id) == [as_returned(m) for m in TOOL_TURN]


def test_a_write_whose_answer_was_lost_is_not_stored_twice(
    mirror: AcontextMirror, acontext: FakeAcontext
) -> None:
    opened = mirror.create(model="m", system_prompt="s")
    mirror.append(TOOL_TURN[0])
    assert mirror.sync(timeout=5) == 0
    acontext.fail_next(2, path_contains="/messages", drop_after_write=True)
    for message in TOOL_TURN[1:]:
        mirror.append(message)
    assert mirror.sync(timeout=10) == 0
    assert acontext.stored_messages(opened.session_id) == [as_returned(m) for m in TOOL_TURN]


def test_a_message_acontext_rejects_holds_its_session_until_it_is_skipped(
    settings: Settings, acontext: FakeAcontext
) -> None:
    held: list[Held] = []
    mirror = AcontextMirror(settings, on_held=held.append)
    opened = mirror.create(model="m", system_prompt="s")
    mirror.append({"role": "user", "content": "first"})
    mirror.append({"role": "robot", "content": "beep"})
    mirror.append({"role": "user", "content": "after"})
    assert mirror.sync(timeout=5) == 0  # nothing more can be sent
    assert mirror.unsent() == 2
    (rejected,) = held
    assert (rejected.session_id, rejected.kind, rejected.behind) == (opened.session_id, "robot", 1)
    assert rejected.error.startswith("HTTP 400")
    assert acontext.stored_messages(opened.session_id) == [{"role": "user", "content": "first"}]

    skipped = mirror.journal.skip(rejected.client_id)
    assert [entry.message["content"] for entry in skipped] == ["beep"]
    assert mirror.sync(timeout=5) == 0
    assert mirror.unsent() == 0
    mirror.close()
    assert [m["content"] for m in acontext.stored_messages(opened.session_id)] == [
        "first",
        "after",
    ]


def test_a_long_session_is_fitted_to_the_context_budget_with_tool_pairs_kept(
    settings: Settings, acontext: FakeAcontext
) -> None:
    messages: list[dict[str, Any]] = []
    for i in range(150):
        messages += [
            {"role": "user", "content": f"question {i} " + "words " * 20},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"c{i}",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": f"c{i}", "content": "result " * 30},
            {"role": "assistant", "content": f"answer {i}"},
        ]
    session_id = acontext.add_session(messages=messages)
    mirror = AcontextMirror(replace(settings, context_tokens=2000))
    history = mirror.resume(session_id, default_system_prompt="s").history
    mirror.close()
    assert 0 < len(history) < len(messages)
    assert history[-1] == {"role": "assistant", "content": "answer 149"}
    assert history[0]["role"] != "tool"
    call_ids = {c["id"] for m in history for c in m.get("tool_calls", [])}
    assert all(m["tool_call_id"] in call_ids for m in history if m["role"] == "tool")
    assert len(acontext.stored_messages(session_id)) == 600  # what is stored is untouched
    full = AcontextMirror(replace(settings, context_tokens=0))
    assert len(full.resume(session_id, default_system_prompt="s").history) == 600
    full.close()


def test_waiting_at_exit_stops_early_when_acontext_stays_down(
    mirror: AcontextMirror, acontext: FakeAcontext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai_basic.mirror, "STALL_SECONDS", 0.2)
    acontext.stop()
    mirror.create(model="m", system_prompt="s")
    mirror.append({"role": "user", "content": "hi"})
    started = time.monotonic()
    assert mirror.sync(timeout=60) == 1
    assert time.monotonic() - started < 30  # it gave up long before the 60 s it was allowed


def test_meta_stays_under_the_servers_limit(mirror: AcontextMirror, acontext: FakeAcontext) -> None:
    opened = mirror.create(model="m", system_prompt="s")
    mirror.append({"role": "user", "content": "hi"}, {"notes": "x" * 70_000})
    assert mirror.sync(timeout=5) == 0
    (meta,) = acontext.stored_metas(opened.session_id)
    assert set(meta) == {"client_id", "meta_dropped"}


def test_a_session_that_keeps_failing_does_not_hold_up_the_current_one(
    settings: Settings, acontext: FakeAcontext
) -> None:
    acontext.stop()
    earlier = AcontextMirror(settings)
    stuck = earlier.create(model="m", system_prompt="s").session_id
    earlier.append({"role": "user", "content": "left behind"})
    earlier.close()
    acontext.restart()
    acontext.fail_next(10_000, status=503, path_contains=stuck)

    with AcontextMirror(settings) as mirror:
        opened = mirror.create(model="m", system_prompt="s")
        mirror.append({"role": "user", "content": "now"})
        mirror.append({"role": "assistant", "content": "done"})
        report = mirror.finish()
        assert mirror.journal.count_waiting() == 1  # the stuck one stays for `agent sync`
    assert report.unsent == 0
    assert [task.description for task in report.tasks] == ["now"]
    assert acontext.stored_messages(opened.session_id)[0] == {"role": "user", "content": "now"}


def test_one_failure_after_a_slow_answer_does_not_end_the_exit_wait(
    mirror: AcontextMirror, acontext: FakeAcontext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stall is counted from the failure, not from the start of the slow attempt."""
    monkeypatch.setattr(openai_basic.mirror, "STALL_SECONDS", 0.5)
    mirror.create(model="m", system_prompt="s")
    acontext.fail_next(1, status=500, path_contains="/messages", delay=1)  # slower than a stall
    acontext.fail_next(10_000, status=500, path_contains="/messages")  # then nothing gets through
    started = time.monotonic()
    for message in TOOL_TURN:
        mirror.append(message)
    assert mirror.sync(timeout=10) == 4
    assert time.monotonic() - started >= 1 + 0.5  # a whole stall after the failure


def test_the_exit_wait_does_not_count_loading_the_sdk(
    settings: Settings, acontext: FakeAcontext, monkeypatch: pytest.MonkeyPatch
) -> None:
    import openai_basic.acontext_api as api

    real = api.load_sdk
    loaded: list[float] = []

    def slow_first_import() -> Any:
        time.sleep(0.6)  # a loaded machine importing acontext without bytecode
        monkeypatch.setattr(api, "load_sdk", real)
        loaded.append(time.monotonic())
        return real()

    monkeypatch.setattr(api, "load_sdk", slow_first_import)
    acontext.stop()  # nothing gets through: the wait runs its whole course
    with AcontextMirror(settings) as mirror:
        mirror.create(model="m", system_prompt="s")
        mirror.append({"role": "user", "content": "hi"})
        assert mirror.sync(timeout=0.3) == 1
        gave_up = time.monotonic()
    (loaded_at,) = loaded
    assert gave_up - loaded_at >= 0.3  # the 0.3 s started once the SDK was there


def test_close_leaves_a_writer_that_is_still_sending_alone(
    settings: Settings, acontext: FakeAcontext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai_basic.mirror, "CLOSE_SECONDS", 0.1)
    mirror = AcontextMirror(settings)
    opened = mirror.create(model="m", system_prompt="s")
    mirror.sync(timeout=5)  # the writer is up
    with acontext.holding():  # the next request outlasts close()
        mirror.append({"role": "user", "content": "slow"})
        wait_for(lambda: any(r.method == "POST" for r in acontext.requests))
        mirror.close()
        assert acontext.session_ids() == []
    wait_for(lambda: acontext.session_ids() == [opened.session_id])
    wait_for(lambda: len(acontext.stored_messages(opened.session_id)) == 1)
    wait_for(lambda: waiting_in(settings) == 0)  # it could still mark it sent


def waiting_in(settings: Settings) -> int:
    journal = Journal(settings.state_dir)
    try:
        return journal.count_waiting()
    finally:
        journal.close()
