"""A new session reaches Acontext from its first answer on: a key or model the model server
refuses before any answer leaves nothing there, and every other ending keeps what was said."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from openai_basic.journal import Journal
from tests.conftest import AgentCommand, Run, wait_for
from tests.fakes.acontext_server import FakeAcontext
from tests.fakes.openai_server import FakeOpenAI, Reply, echo_responder, error, text

Cli = Callable[..., Run]
REFUSALS = {
    "rejected-key": "error: OpenAI key rejected: check OPENAI_API_KEY",
    "unknown-model": ("error: model 'gpt-4o-mini' not found: set OPENAI_MODEL to a model you have"),
}


@pytest.fixture
def held_answer(model: FakeOpenAI) -> Iterator[threading.Event]:
    """The model answers (by echoing) once the event is set."""
    answer = threading.Event()

    def answer_when_told(messages: list[dict[str, object]]) -> Reply:
        answer.wait(120)
        return echo_responder(messages)

    model.responder = answer_when_told
    yield answer
    answer.set()


def refuse(model: FakeOpenAI, refusal: str) -> None:
    if refusal == "rejected-key":
        model.api_key = "sk-another-key"
    else:
        model.script(error(404, "The model `gpt-4o-mini` does not exist"))


@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_a_refused_first_call_leaves_nothing_in_acontext(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext, refusal: str
) -> None:
    refuse(model, refusal)
    run = cli("hi")
    assert (run.code, run.stderr.splitlines()[-1]) == (2, REFUSALS[refusal])
    assert "agent --resume" not in run.stderr
    synced = cli("sync")  # nothing of it waits in the journal either
    assert synced.stderr == "sent 0 messages; 0 still waiting; 0 held\n"
    assert acontext.session_ids() == []
    assert acontext.requests == []


def test_a_refused_first_call_in_the_chat_leaves_nothing_in_acontext(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    refuse(model, "rejected-key")
    run = cli(input=b"hi\n", terminal=True)
    assert (run.code, run.stderr.splitlines()[-1]) == (2, REFUSALS["rejected-key"])
    cli("sync")
    assert acontext.session_ids() == []


def test_a_refusal_after_an_answer_keeps_the_session(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.script(text("one"), error(404, "The model `gpt-4o-mini` does not exist"))
    run = cli(input=b"first\nsecond\n")
    assert (run.code, run.stderr.splitlines()[-1]) == (2, REFUSALS["unknown-model"])
    (session_id,) = acontext.session_ids()
    assert f"session {session_id} is kept: agent --resume {session_id}" in run.stderr
    assert acontext.stored_messages(session_id) == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "one"},
        {"role": "user", "content": "second"},
    ]


def test_a_model_failing_on_the_first_call_keeps_the_prompt(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.script(*[error(500, "overloaded")] * 3)  # the first try and both retries
    run = cli("hi")
    assert run.code == 1
    (session_id,) = acontext.session_ids()
    assert acontext.stored_messages(session_id) == [{"role": "user", "content": "hi"}]


def test_no_writer_sends_a_new_session_before_its_first_answer(
    agent: AgentCommand,
    model: FakeOpenAI,
    acontext: FakeAcontext,
    held_answer: threading.Event,
    tmp_path: Path,
) -> None:
    process = agent.start("hi")
    wait_for(lambda: bool(model.requests))
    journal = Journal(tmp_path / ".agent")
    try:
        (session_id,) = journal.sessions_waiting()
        with journal.claim(session_id) as mine:
            assert not mine  # the agent holds it: neither its writer nor `agent sync` sends it
    finally:
        journal.close()
    assert acontext.session_ids() == []
    held_answer.set()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert acontext.stored_messages(session_id) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "echo: hi"},
    ]


def test_a_crash_before_the_first_answer_keeps_the_prompt_for_sync(
    agent: AgentCommand,
    cli: Cli,
    model: FakeOpenAI,
    acontext: FakeAcontext,
    held_answer: threading.Event,
) -> None:
    process = agent.start("hi")
    wait_for(lambda: bool(model.requests))
    process.kill()
    process.communicate(timeout=60)
    run = cli("sync")
    assert (run.code, run.stderr) == (0, "sent 1 message; 0 still waiting; 0 held\n")
    (session_id,) = acontext.session_ids()
    assert acontext.stored_messages(session_id) == [{"role": "user", "content": "hi"}]
