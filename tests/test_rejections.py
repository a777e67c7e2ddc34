"""A message Acontext rejects holds its session: nothing after it is stored; the user is told."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import openai_basic.acontext_api
import openai_basic.mirror
from tests.conftest import Run, wait_for
from tests.fakes.acontext_server import FakeAcontext
from tests.fakes.openai_server import FakeOpenAI, Reply, text
from tests.tools import look_up, look_up_then_answer

Cli = Callable[..., Run]


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Acontext's passing failures are tried again at once, not over 7.5 s."""
    monkeypatch.setattr(openai_basic.acontext_api, "RETRY_DELAYS", (0.01,) * 4)


def test_a_rejected_tool_call_message_holds_its_session_and_is_told(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = look_up_then_answer
    acontext.fail_next(1, status=400, path_contains="/messages", body_contains='"tool_calls"')
    run = cli("--json", "Oslo", tools=[look_up])

    assert run.code == 1
    payload = json.loads(run.stdout)
    assert payload["reply"].startswith("done: ")  # the user still gets the answer
    (held,) = payload["held"]
    assert (held["kind"], held["behind"]) == ("assistant with tool calls", 2)
    assert held["error"] == "HTTP 400: injected failure"
    assert f"agent sync --skip {held['client_id']}" in run.stderr
    # nothing after the rejected message, so no tool message without its call
    assert acontext.stored_messages(payload["session_id"]) == [{"role": "user", "content": "Oslo"}]

    synced = cli("sync", "--json")  # the cause went away: sync tries it again
    assert synced.code == 0
    assert json.loads(synced.stdout) == {"sent": 3, "waiting": 0, "held": [], "skipped": []}
    stored = acontext.stored_messages(payload["session_id"])
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"]


def test_sync_skips_a_rejected_message_only_when_told_to(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = look_up_then_answer
    acontext.fail_next(100, status=422, path_contains="/messages", body_contains='"tool_calls"')
    run = cli("--json", "Oslo", tools=[look_up])
    (held,) = json.loads(run.stdout)["held"]
    session_id = json.loads(run.stdout)["session_id"]

    again = cli("sync")
    assert again.code == 1
    assert again.stderr.splitlines()[-1] == "sent 0 messages; 0 still waiting; 1 held"

    skipped = cli("sync", "--skip", held["client_id"])
    assert skipped.code == 0
    assert skipped.stderr.splitlines() == [
        f"skipped message {held['client_id']} (assistant with tool calls) of session "
        f"{session_id}: it will not be sent",
        f"skipped message {_tool_client_id(session_id)} (tool) of session "
        f"{session_id}: it will not be sent",
        "sent 1 message; 0 still waiting; 0 held",
    ]
    stored = acontext.stored_messages(session_id)
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert "tool_calls" not in stored[1]


def _tool_client_id(session_id: str) -> str:
    """The journal's client id of the session's tool message (read from the journal file)."""
    with sqlite3.connect(Path(".agent") / "journal.sqlite3") as db:
        (client_id,) = db.execute(
            "SELECT client_id FROM messages WHERE session_id = ? AND blob LIKE '%\"tool\"%' "
            "AND blob NOT LIKE '%tool_calls%'",
            (session_id,),
        ).fetchone()
    return str(client_id)


def test_a_skip_of_an_unknown_message_is_a_usage_error(cli: Cli) -> None:
    run = cli("sync", "--skip", "nope")
    assert run.code == 2
    assert run.stderr.startswith("error: no rejected message 'nope' in ")


def test_a_session_deleted_on_the_server_is_held_not_counted_as_sent(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai_basic.mirror, "STALL_SECONDS", 0.2)  # down is down: no 3 s wait

    def answer_then_lose_acontext(messages: list[dict[str, Any]]) -> Reply:
        if messages[-1]["content"] == "again":  # all is stored but the reply to come
            wait_for(lambda: stored_so_far(acontext) == [3])
            acontext.stop()
        return text(f"answer to {messages[-1]['content']}")

    model.responder = answer_then_lose_acontext
    run = cli("--json", input=b"hello\nagain\n")
    assert run.code == 1
    session_id = json.loads(run.stdout)["session_id"]
    assert len(acontext.stored_messages(session_id)) == 3
    acontext.restart()
    acontext.delete_session(session_id)

    run = cli("sync", "--json")
    assert run.code == 1
    report = json.loads(run.stdout)
    assert (report["sent"], report["waiting"]) == (0, 0)
    (held,) = report["held"]
    assert (held["session_id"], held["kind"], held["behind"]) == (session_id, "assistant", 0)
    assert "Acontext rejected message" in run.stderr


def stored_so_far(acontext: FakeAcontext) -> list[int]:
    return [len(acontext.stored_messages(s)) for s in acontext.session_ids()]


def test_a_passing_failure_of_flush_or_tasks_is_tried_again(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext, quick_retries: None
) -> None:
    model.script(text("hello"))
    acontext.fail_next(1, status=500, path_contains="/flush")
    acontext.fail_next(1, status=502, path_contains="/task")
    run = cli("hi")
    assert run.code == 0, run.stderr
    assert run.stdout == "hello\nTasks:\n1. [success] hi\n   progress: Agent responded to: hi\n"


def test_a_flush_that_keeps_failing_says_how_to_see_the_tasks_later(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext, quick_retries: None
) -> None:
    model.script(text("hello"))
    acontext.fail_next(100, status=500, path_contains="/flush")
    run = cli("hi")
    assert run.code == 1
    (session_id,) = acontext.session_ids()
    assert run.stderr.splitlines()[-1] == (
        "error: Acontext: HTTP 500: injected failure. The conversation is stored; "
        f"see its tasks later with: agent tasks {session_id}"
    )
    assert len(acontext.stored_messages(session_id)) == 2
