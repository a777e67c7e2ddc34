"""Fault injection: whatever Acontext or the user does, no message is lost, doubled or reordered.

Every test compares the exact sequence of messages in the Acontext session with the history the
agent kept locally.
"""

from __future__ import annotations

import io
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import openai_basic.mirror
from openai_basic.agent import CANCELLED, NO_RESULT
from openai_basic.conversation import ChatOutcome, chat
from openai_basic.output import Output
from openai_basic.settings import Settings
from openai_basic.tools import ToolRegistry
from tests.conftest import AgentCommand, Run, as_returned, wait_for
from tests.fakes.acontext_server import FakeAcontext
from tests.fakes.openai_server import FakeOpenAI, ToolCallSpec, error, text, tool_calls
from tests.tools import look_up, look_up_then_answer

Cli = Callable[..., Run]


@pytest.fixture(autouse=True)
def eager_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer tries again within 0.01-0.1 s, not 0.1-2 s: more tries amid the faults, and
    less waiting."""
    monkeypatch.setattr(openai_basic.mirror, "BACKOFF_FIRST", 0.01)
    monkeypatch.setattr(openai_basic.mirror, "BACKOFF_MAX", 0.1)


def converse(settings: Settings, prompts: Any, **options: Any) -> ChatOutcome:
    out = Output(stdout=io.StringIO(), stderr=io.StringIO())
    registry = ToolRegistry([look_up])
    return chat(settings=settings, prompts=prompts, out=out, registry=registry, **options)


def assert_mirrored(acontext: FakeAcontext, outcome: ChatOutcome) -> None:
    assert outcome.report.unsent == 0
    assert acontext.stored_messages(outcome.session_id) == [as_returned(m) for m in outcome.history]
    client_ids = [meta["client_id"] for meta in acontext.stored_metas(outcome.session_id)]
    assert len(set(client_ids)) == len(client_ids)


def test_acontext_down_from_the_start_then_back(
    settings: Settings, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = look_up_then_answer
    acontext.stop()

    def prompts() -> Iterator[str]:
        yield "Oslo"
        yield "Rome"
        acontext.restart()
        yield "Lima"

    outcome = converse(settings, prompts())
    assert len(outcome.history) == 12
    assert_mirrored(acontext, outcome)
    assert [task.description for task in outcome.report.tasks] == ["Oslo", "Rome", "Lima"]


def test_acontext_down_for_a_window_mid_conversation(
    settings: Settings, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = look_up_then_answer

    def prompts() -> Iterator[str]:
        yield "Oslo"
        acontext.stop()
        yield "Rome"
        yield "Lima"
        acontext.restart()
        yield "Kyiv"

    assert_mirrored(acontext, converse(settings, prompts()))


def test_every_third_write_failing(
    settings: Settings, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = look_up_then_answer
    acontext.fail_every(3, status=503, path_contains="/messages")
    outcome = converse(settings, ["Oslo", "Rome", "Lima", "Kyiv", "Baku"])
    assert len(outcome.history) == 20
    assert_mirrored(acontext, outcome)


def test_answers_lost_after_successful_writes(
    settings: Settings, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = look_up_then_answer
    acontext.fail_every(2, path_contains="/messages", drop_after_write=True)
    outcome = converse(settings, ["Oslo", "Rome", "Lima"])
    assert_mirrored(acontext, outcome)


def test_soak_many_turns_while_acontext_flaps(
    settings: Settings, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = look_up_then_answer
    acontext.fail_every(7, path_contains="/messages", drop_after_write=True)
    stop = threading.Event()
    rng = random.Random(7)
    outages: list[float] = []

    def flap() -> None:
        deadline = time.monotonic() + 20  # bounded, whatever happens to the test
        while not stop.is_set() and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.01, 0.05))
            acontext.stop()
            outages.append(time.monotonic())
            time.sleep(rng.uniform(0.01, 0.05))
            acontext.restart()

    flapper = threading.Thread(target=flap, daemon=True)
    flapper.start()

    def prompts() -> Iterator[str]:
        for i in range(40):
            yield f"city {i}"
        wait_for(lambda: len(outages) >= 5)  # however fast the turns were
        stop.set()
        flapper.join()

    outcome = converse(settings, prompts())
    assert len(outcome.history) == 160
    assert len(outages) >= 5
    assert_mirrored(acontext, outcome)


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_ctrl_c_or_kill_in_a_tool_answers_the_call_and_the_session_resumes(
    agent: AgentCommand,
    cli: Cli,
    model: FakeOpenAI,
    acontext: FakeAcontext,
    signum: int,
    code: int,
) -> None:
    driver = (
        "import pathlib, sys, time\n"
        "from openai_basic.cli import main\n"
        "def slow_lookup(query: str) -> str:\n"
        '    """Look something up, slowly."""\n'
        "    pathlib.Path('tool-started').touch()\n"
        "    time.sleep(30)\n"
        "    return 'late'\n"
        "sys.exit(main(['find it'], tools=[slow_lookup]))\n"
    )
    model.script(tool_calls(ToolCallSpec("slow_lookup", '{"query": "x"}', id="slow")))
    process = agent.start(command=driver)
    wait_for(lambda: (agent.cwd / "tool-started").exists(), seconds=60)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1].startswith("error: interrupted; resume with: agent --resume ")
    (session_id,) = acontext.session_ids()
    stored = acontext.stored_messages(session_id)
    assert stored[0] == {"role": "user", "content": "find it"}
    assert stored[1]["tool_calls"][0]["id"] == "slow"
    assert stored[2] == {"role": "tool", "tool_call_id": "slow", "content": CANCELLED}

    model.script(text("Let us try again later."))
    resumed = cli("--resume", session_id, "never mind", tools=[look_up])
    assert resumed.code == 0, resumed.stderr
    assert len(acontext.stored_messages(session_id)) == 5


def test_a_resumed_session_with_dangling_tool_calls_is_repaired_and_mirrored(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    session_id = acontext.add_session(
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "lost",
                        "type": "function",
                        "function": {"name": "look_up", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
        ]
    )
    model.script(text("Sorry, I lost that. Asking again?"))
    run = cli("--resume", session_id, "hello?", tools=[look_up])
    assert run.code == 0, run.stderr
    stored = acontext.stored_messages(session_id)
    assert stored[2:] == [
        {"role": "tool", "tool_call_id": "lost", "content": NO_RESULT},
        {"role": "user", "content": "hello?"},
        {"role": "assistant", "content": "Sorry, I lost that. Asking again?"},
    ]


def test_openai_rate_limit_is_retried(cli: Cli, model: FakeOpenAI) -> None:
    model.script(error(429, "slow down"), text("here you go"))
    run = cli("hi")
    assert run.code == 0, run.stderr
    assert run.stdout.startswith("here you go\n")
    assert len(model.requests) == 2


def test_no_retries_when_openai_max_retries_is_zero(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.script(error(429, "slow down"), text("never"))
    run = cli("hi", env={"OPENAI_MAX_RETRIES": "0"})
    assert run.code == 1
    assert "error: OpenAI: HTTP 429: slow down" in run.stderr
    (session_id,) = acontext.session_ids()
    assert acontext.stored_messages(session_id) == [{"role": "user", "content": "hi"}]
