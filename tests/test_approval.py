"""Tools that need approval: the registry asks before they run, the chat asks the person at the
terminal, and a run that cannot ask refuses unless told otherwise.

The chat's questions are answered through a pseudo-terminal that is the agent's stdin, stdout and
stderr, as a person would answer them.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from openai_basic.agent import CANCELLED
from openai_basic.approval import CANNOT_ASK, QUESTION, TerminalApprover
from openai_basic.errors import ConfigError
from openai_basic.output import Output
from openai_basic.settings import load_settings
from openai_basic.tools import Approval, ToolCall, ToolRegistry, needs_approval
from tests.conftest import AgentCommand, Run, typed, wait_for
from tests.fakes.acontext_server import FakeAcontext
from tests.fakes.openai_server import FakeOpenAI, text, tool_calls
from tests.tools import forecast, reserve

README = Path(__file__).resolve().parents[1] / "README.md"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
Cli = Callable[..., Run]
TRIP = json.dumps({"origin": "Oslo", "destination": "Rome", "day": "Friday"})
DECLINED = "The user declined this call to reserve."


def readme_example() -> dict[str, Any]:
    """The README's example of a tool that asks first, run as written in a module of its own."""
    section = README.read_text().split("\n### Tools that ask first\n", 1)[1]
    match = re.search(r"(?ms)^```python\n(.*?)^```$", section)
    assert match, "the README shows the example"
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(match.group(1), "README.md", "exec"), namespace)
    return namespace


def approving(calls: list[ToolCall], answer: Approval) -> Callable[[ToolCall], Approval]:
    def approve(call: ToolCall) -> Approval:
        assert threading.current_thread() is threading.main_thread()
        calls.append(call)
        return answer

    return approve


# -- the registry ---------------------------------------------------------------------------------


def test_a_call_that_needs_approval_runs_only_when_approved() -> None:
    registry = ToolRegistry([forecast])
    registry.register(reserve, needs_approval=True)
    asked: list[ToolCall] = []
    calls = [ToolCall("1", "forecast", '{"city": "Oslo"}'), ToolCall("2", "reserve", TRIP)]

    declined = registry.call_all(calls, approve=approving(asked, Approval(False)))
    assert [(r.content, r.ok) for r in declined] == [("Sunny in Oslo.", True), (DECLINED, False)]
    assert [r.declined for r in declined] == [False, True]
    assert asked == [calls[1]]  # only the call that needs it, on the calling thread

    approved = registry.call(calls[1], approve=approving(asked, Approval(True)))
    assert (approved.content, approved.ok) == ("Seat reserved from Oslo to Rome on Friday.", True)

    told = registry.call(calls[1], approve=approving(asked, Approval(False, "Not on Fridays.")))
    assert (told.content, told.ok) == ("Not on Fridays.", False)


def test_without_an_approver_the_call_is_refused_and_bad_arguments_are_not_asked_about() -> None:
    registry = ToolRegistry()
    registry.register(reserve, needs_approval=True)
    assert registry.call(ToolCall("1", "reserve", TRIP)).content == (
        "reserve was not run: it needs the user's approval, and no one could be asked."
    )
    asked: list[ToolCall] = []
    bad = registry.call(ToolCall("2", "reserve", "{}"), approve=approving(asked, Approval(True)))
    assert bad.content.startswith("Error: invalid arguments for reserve: origin: Field required")
    assert asked == []


def test_an_approver_that_fails_leaves_the_call_not_run() -> None:
    registry = ToolRegistry()
    registry.register(reserve, needs_approval=True)

    def broken(call: ToolCall) -> Approval:
        raise RuntimeError("no screen")

    result = registry.call(ToolCall("1", "reserve", TRIP), approve=broken)
    assert (result.content, result.ok, result.declined) == (
        "Error: reserve was not run: asking for approval failed: no screen",
        False,
        False,  # a failure, not the user's answer
    )


def test_the_wait_for_an_answer_does_not_count_against_the_tool_timeout() -> None:
    timeout = 1.0
    registry = ToolRegistry(timeout=timeout)
    registry.register(reserve, needs_approval=True)

    def slow_to_answer(call: ToolCall) -> Approval:
        asked = time.monotonic()
        wait_for(lambda: time.monotonic() > asked + 1.5 * timeout)  # its timeout has passed
        return Approval(True)

    result = registry.call(ToolCall("1", "reserve", TRIP), approve=slow_to_answer)
    assert (result.content, result.ok) == ("Seat reserved from Oslo to Rome on Friday.", True)


def test_a_function_marked_by_the_readme_example_needs_approval() -> None:
    cancel_booking = readme_example()["cancel_booking"]
    (tool,) = ToolRegistry([cancel_booking])
    assert tool.needs_approval
    assert cancel_booking("SAMPLE-01234") == "Cancelled SAMPLE-01234."  # the function, unchanged


# -- the terminal's approver, answered in-process ---------------------------------------------


def answering(*answers: str | type[BaseException]) -> Callable[[str], str]:
    """Reads that give these answers in turn (an exception class is raised)."""
    pending = list(answers)

    def read(prompt: str) -> str:
        assert prompt == QUESTION
        answer = pending.pop(0)
        if isinstance(answer, str):
            return answer
        raise answer

    return read


def test_the_question_shows_the_call_as_plain_text_and_reads_y_n_or_a() -> None:
    stderr = io.StringIO()
    out = Output(stdout=io.StringIO(), stderr=stderr)
    approve = TerminalApprover(out, read=answering("maybe", "", "A", EOFError))
    hostile = ToolCall("1", "reserve\x1b]0;title\x07", '{"day": "[bold]Friday\x1b[2J"}')
    assert approve(hostile) == Approval(False)  # "maybe" is asked again; Enter is no
    assert stderr.getvalue() == (
        'reserve({"day": "[bold]Friday"}) needs your approval\nanswer y, n or a\n'
    )
    call = ToolCall("2", "reserve", TRIP)
    assert approve(call) == Approval(True)  # "A": always, for this tool
    assert approve(call) == Approval(True)  # not asked again
    assert approve(ToolCall("3", "cancel", "{}")) == Approval(False)  # Ctrl-D is no


# -- runs that cannot ask -------------------------------------------------------------------------


def script_a_cancellation(model: FakeOpenAI) -> None:
    model.script(
        tool_calls(("cancel_booking", '{"reference": "SAMPLE-01234"}')), text("Done or not.")
    )


@pytest.mark.parametrize("flags", [(), ("--json",)])
def test_a_piped_or_json_run_refuses_and_tells_the_model_why(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext, flags: tuple[str, ...]
) -> None:
    script_a_cancellation(model)
    run = cli(*flags, "cancel it", tools=[readme_example()["cancel_booking"]])
    assert run.code == 0, run.stderr
    refusal = f"cancel_booking was not run: it needs the user's approval, and {CANNOT_ASK}."
    assert model.requests[1]["messages"][-1]["content"] == refusal
    shown = " ".join(run.stderr.split())  # the tool line, with the way to allow such calls
    assert f"s not run: it needs the user's approval, and {CANNOT_ASK}." in shown
    (session_id,) = acontext.session_ids()
    assert acontext.stored_messages(session_id)[2]["content"] == refusal  # mirrored like any


@pytest.mark.parametrize(
    ("flags", "env"),
    [(("--yes",), {}), (("-y", "--json"), {}), ((), {"AGENT_APPROVE_TOOLS": "Always"})],
)
def test_yes_or_the_setting_lets_such_calls_run_without_asking(
    cli: Cli, model: FakeOpenAI, flags: tuple[str, ...], env: dict[str, str]
) -> None:
    script_a_cancellation(model)
    run = cli(*flags, "cancel it", env=env, tools=[readme_example()["cancel_booking"]])
    assert run.code == 0, run.stderr
    assert model.requests[1]["messages"][-1]["content"] == "Cancelled SAMPLE-01234."


def test_never_refuses_even_where_it_could_ask(cli: Cli, model: FakeOpenAI) -> None:
    script_a_cancellation(model)
    env = {"AGENT_APPROVE_TOOLS": "never"}
    run = cli("cancel it", env=env, tools=[readme_example()["cancel_booking"]])
    assert run.code == 0, run.stderr
    assert model.requests[1]["messages"][-1]["content"] == (
        "cancel_booking was not run: it needs the user's approval, and "
        "AGENT_APPROVE_TOOLS=never refuses every such call."
    )


def test_an_approval_setting_that_is_no_policy_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"OPENAI_API_KEY": "k", "AGENT_APPROVE_TOOLS": "sometimes"}, cwd=tmp_path)
    assert str(raised.value) == "AGENT_APPROVE_TOOLS must be ask, always or never, not 'sometimes'"


# -- the chat, typed into a pseudo-terminal -------------------------------------------------------

# An agent whose one tool needs approval: the tests' `reserve`, marked.
DRIVER = '''
import sys
from openai_basic.cli import main
from openai_basic.tools import needs_approval

@needs_approval
def reserve(origin: str, destination: str, day: str) -> str:
    """Reserve a seat on a flight."""
    return f"Seat reserved from {origin} to {destination} on {day}."

sys.exit(main(sys.argv[1:], tools=[reserve]))
'''


class Screen:
    """The agent with stdin, stdout and stderr on one pseudo-terminal, and what it has shown."""

    def __init__(self, process: subprocess.Popen[bytes], leader: int) -> None:
        self.process = process
        self._leader = leader
        self._shown = b""

    @property
    def text(self) -> str:
        return ANSI.sub("", self._shown.decode(errors="replace"))

    def wait_for(self, text: str, *, after: int = 0) -> None:
        """Read until ``text`` is shown past position ``after`` of the screen."""
        deadline = time.monotonic() + 60
        while text not in self.text[after:]:
            assert self._read(), f"the agent ended without showing {text!r}:\n{self.text}"
            assert time.monotonic() < deadline, f"{text!r} was not shown:\n{self.text}"

    def type(self, line: str) -> None:
        os.write(self._leader, line.encode() + b"\n")

    def exit_code(self) -> int:
        deadline = time.monotonic() + 60
        while self._read() and time.monotonic() < deadline:
            pass
        return self.process.wait(timeout=30)

    def _read(self) -> bool:
        """Take in what the agent shows within a moment; False once it has closed the terminal."""
        if select.select([self._leader], [], [], 0.2)[0]:
            try:
                data = os.read(self._leader, 65536)
            except OSError:  # EIO: every end of the terminal in the agent is closed
                return False
            if not data:
                return False
            self._shown += data
        return self.process.poll() is None or bool(select.select([self._leader], [], [], 0)[0])


@contextmanager
def screen(agent: AgentCommand, *args: str) -> Iterator[Screen]:
    leader, follower = pty.openpty()
    # wide enough that no line of these tests is wrapped
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-c", DRIVER, "--no-stream", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=dict(agent.env),
        cwd=agent.cwd,
    )
    os.close(follower)
    try:
        yield Screen(process, leader)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)


def test_no_in_the_chat_tells_the_model_and_the_chat_goes_on(
    agent: AgentCommand, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.script(tool_calls(("reserve", TRIP)), text("As you wish."))
    with screen(agent) as chat:
        chat.wait_for("you> ")
        chat.type("reserve a seat")
        chat.wait_for(QUESTION)
        chat.type("n")
        chat.wait_for("As you wish.")
        chat.type("/exit")
        code = chat.exit_code()
    assert code == 0, chat.text
    shown = chat.text
    assert f"reserve({TRIP}) needs your approval" in shown
    assert f"{QUESTION}n\r\n" in shown  # the answer is echoed
    assert f"s not run: {DECLINED}" in shown  # in the tool line, after its time
    assert "error" not in shown
    assert model.requests[1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": model.requests[1]["messages"][-2]["tool_calls"][0]["id"],
        "content": DECLINED,
    }
    (session_id,) = acontext.session_ids()
    assert acontext.stored_messages(session_id)[2]["content"] == DECLINED
    history = (agent.cwd / ".agent" / "history").read_text().splitlines()
    assert "reserve a seat" in history and "n" not in history  # answers are no chat lines


def test_always_approves_the_later_calls_of_the_tool_without_asking(
    agent: AgentCommand, model: FakeOpenAI
) -> None:
    later = json.dumps({"origin": "Rome", "destination": "Oslo", "day": "Sunday"})
    model.script(
        tool_calls(("reserve", TRIP)),
        text("Going."),
        tool_calls(("reserve", later)),
        text("And back."),
    )
    with screen(agent) as chat:
        chat.wait_for("you> ")
        chat.type("there")
        chat.wait_for(QUESTION)
        chat.type("a")
        chat.wait_for("Going.")
        asked = len(chat.text)
        chat.type("and back")
        chat.wait_for("And back.", after=asked)
        chat.type("/exit")
        code = chat.exit_code()
    assert code == 0, chat.text
    assert chat.text.count("needs your approval") == 1
    assert "reserve runs without asking for the rest of this session" in chat.text
    results = [request["messages"][-1]["content"] for request in model.requests[1::2]]
    assert results == [
        "Seat reserved from Oslo to Rome on Friday.",
        "Seat reserved from Rome to Oslo on Sunday.",
    ]


def test_ctrl_c_at_the_question_cancels_the_turn_and_exits_130_without_a_fatal_error(
    agent: AgentCommand, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.script(tool_calls(("reserve", TRIP)))
    with screen(agent, "reserve a seat") as one_shot:  # a prompt given on a terminal: it can ask
        one_shot.wait_for(QUESTION)
        one_shot.process.send_signal(signal.SIGINT)
        code = one_shot.exit_code()
    assert code == 130, one_shot.text
    assert "Fatal Python error" not in one_shot.text
    assert "Traceback" not in one_shot.text
    (session_id,) = acontext.session_ids()
    assert f"interrupted; resume with: agent --resume {session_id}" in one_shot.text
    stored = acontext.stored_messages(session_id)
    assert stored[2] == {
        "role": "tool",
        "tool_call_id": stored[1]["tool_calls"][0]["id"],
        "content": CANCELLED,
    }
    assert "Seat reserved" not in one_shot.text


def test_ctrl_c_at_the_question_in_the_chat_cancels_only_the_turn(
    agent: AgentCommand, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.script(tool_calls(("reserve", TRIP)))
    with screen(agent) as chat:
        chat.wait_for("you> ")
        chat.type("reserve a seat")
        chat.wait_for(QUESTION)
        chat.process.send_signal(signal.SIGINT)
        chat.wait_for("turn cancelled; Ctrl-C again or Ctrl-D to leave")
        chat.type("/exit")
        code = chat.exit_code()
    assert code == 0, chat.text
    (session_id,) = acontext.session_ids()
    stored = acontext.stored_messages(session_id)
    assert stored[2]["content"] == CANCELLED


def test_tools_in_the_chat_says_which_tools_ask_first(cli: Cli) -> None:
    @needs_approval
    def cancel(reference: str) -> str:
        """Cancel a booking.

        Args:
            reference: The booking's reference.
        """
        return f"cancelled {reference}"

    run = cli(input=typed("/tools", "/exit"), terminal=True, tools=[forecast, cancel])
    assert run.code == 0, run.stderr
    assert run.stdout.splitlines() == [
        "forecast(city): Tell the weather in a city.",
        "cancel(reference) (asks you first): Cancel a booking.",
    ]
