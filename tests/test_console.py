"""The interactive chat, typed in-process or through a pseudo-terminal (for signals and line
editing), and the terminal rendering."""

from __future__ import annotations

import io
import os
import pty
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from openai_basic.acontext_api import Task, TaskReport
from openai_basic.agent import Usage
from openai_basic.output import Output
from tests.conftest import AGENT, AgentCommand, Run, Terminal, typed, wait_for
from tests.fakes.acontext_server import FakeAcontext
from tests.fakes.openai_server import FakeOpenAI, echo_responder, text
from tests.tools import forecast, reserve

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
Cli = Callable[..., Run]


def test_slash_commands_in_the_interactive_chat(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = echo_responder
    commands = ("/help", "hello", "/tools", "/session", "/usage", "/tasks", "/bogus", "/exit")
    run = cli(input=typed(*commands), terminal=True, tools=[forecast, reserve])
    assert run.code == 0, run.stderr
    (session_id,) = acontext.session_ids()
    lines = run.stdout.splitlines()
    assert lines[:14] == [
        "/help          this list",
        "/tasks         send the conversation to Acontext now and show its tasks",
        "/session       the session id, its size and where it is kept",
        "/model [NAME]  the model, or switch to NAME for the next turns",
        "/tools         the tools the model can call",
        "/skills        the skills of the learning space",
        "/learn         attach this session to the learning space (as --learn does)",
        "/usage, /cost  tokens and time used so far",
        "/exit, /quit   end the chat and show the tasks (also Ctrl-D)",
        '"""            begin a message of several lines; a line of """ sends it',
        "               (a paste of several lines is one message too)",
        "Ctrl-R         search the lines typed before, in this chat and earlier ones",
        "Ctrl-C         cancel the turn; at the prompt, leave",
        "echo: hello",
    ]
    lines = lines[14:]
    assert lines[:2] == [
        "forecast(city): Tell the weather in a city.",
        "reserve(origin, destination, day): Reserve a seat on a flight.",
    ]
    assert lines[2:6] == [
        f"session   {session_id}",
        "messages  2",
        "model     gpt-4o-mini",
        f"acontext  {acontext.base_url}",
    ]
    assert lines[7] == f"resume    agent --resume {session_id}"
    assert lines[8:11] == ["model calls        1", "prompt tokens      10", "completion tokens  5"]
    tasks = ["Tasks:", "1. [success] hello", "   progress: Agent responded to: hello"]
    assert lines[12:15] == tasks  # /tasks, during the chat
    assert lines[15:] == tasks  # and at the end
    assert "unknown command /bogus; /help lists them" in run.stderr


def test_ctrl_c_cancels_the_turn_and_the_chat_goes_on(
    agent: AgentCommand, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.script(text("too slow", delay=30))
    terminal = Terminal(agent)
    terminal.type("first")
    wait_for(lambda: len(model.requests) == 1)
    terminal.process.send_signal(signal.SIGINT)
    model.responder = echo_responder
    terminal.type("second", "/exit")
    code, stdout, stderr = terminal.finish()
    assert code == 0, stderr
    assert "turn cancelled; Ctrl-C again or Ctrl-D to leave" in stderr
    assert stdout.startswith("echo: second\n")
    (session_id,) = acontext.session_ids()
    assert acontext.stored_messages(session_id) == [
        {"role": "user", "content": "first"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "echo: second"},
    ]


def test_sigterm_in_the_chat_ends_it_like_ctrl_c_with_the_history_saved(
    agent: AgentCommand, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.script(text("too slow", delay=30))
    with full_terminal(agent) as (process, leader):
        os.write(leader, b"first\n")
        wait_for(lambda: len(model.requests) == 1)
        process.send_signal(signal.SIGTERM)
        screen = read_until_exit(process, leader)
    assert process.returncode == 143, screen
    (session_id,) = acontext.session_ids()
    assert f"interrupted; resume with: agent --resume {session_id}" in " ".join(screen.split())
    assert acontext.stored_messages(session_id) == [{"role": "user", "content": "first"}]
    assert "first" in (agent.cwd / ".agent" / "history").read_text().splitlines()


@contextmanager
def full_terminal(agent: AgentCommand) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The agent with stdin, stdout and stderr on one pseudo-terminal (readline is on)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [str(AGENT), "--no-stream"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=dict(agent.env),
        cwd=agent.cwd,
    )
    os.close(follower)
    try:
        yield process, leader
    finally:
        os.close(leader)


def read_until_exit(process: subprocess.Popen[bytes], leader: int) -> str:
    screen = b""
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        try:
            screen += os.read(leader, 65536)
        except OSError:
            break
    process.wait(timeout=10)
    return ANSI.sub("", screen.decode(errors="replace"))


def test_ctrl_d_at_the_prompt_ends_the_chat_with_the_tasks(cli: Cli, model: FakeOpenAI) -> None:
    model.responder = echo_responder
    run = cli(input=typed("hi"), terminal=True)  # then the end of input, as Ctrl-D gives
    assert run.code == 0
    assert run.stdout == "echo: hi\nTasks:\n1. [success] hi\n   progress: Agent responded to: hi\n"


def test_line_history_is_kept_across_runs(
    agent: AgentCommand, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = echo_responder
    with full_terminal(agent) as (process, leader):
        os.write(leader, b"remember me\n")
        wait_for(lambda: len(model.requests) == 1)
        os.write(leader, b"/exit\n")
        screen = read_until_exit(process, leader)
    assert process.returncode == 0
    assert "echo: remember me" in screen
    history = (agent.cwd / ".agent" / "history").read_text()
    assert "remember me" in history.splitlines()


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@contextmanager
def terminal_output() -> Iterator[tuple[Output, FakeTerminal, FakeTerminal]]:
    stdout, stderr = FakeTerminal(), FakeTerminal()
    yield Output(stdout=stdout, stderr=stderr), stdout, stderr


def test_tasks_render_as_a_table_with_missing_notes_marked(monkeypatch: object) -> None:
    report = TaskReport(
        (
            Task(1, "Plan a trip to Finland", "success", ("Planned 3 days",), ("Likes nature",)),
            Task(2, "Book a flight", "failed", (), ()),
        )
    )
    with terminal_output() as (out, stdout, _):
        out.tasks(report)
    screen = ANSI.sub("", stdout.getvalue())
    rows = [line for line in screen.splitlines() if "│" in line]
    assert any(
        "Plan a trip to Finland" in r and "success" in r and "Likes nature" in r for r in rows
    )
    assert any("Book a flight" in r and "failed" in r and r.count("—") == 2 for r in rows)
    assert "\x1b[" in stdout.getvalue()  # coloured statuses on a terminal


def test_tasks_print_plainly_when_piped_with_missing_notes_left_out() -> None:
    stdout = io.StringIO()
    Output(stdout=stdout, stderr=io.StringIO()).tasks(
        TaskReport((Task(3, "Book a flight", "pending", (), ("Window seat",)),))
    )
    assert stdout.getvalue() == "Tasks:\n3. [pending] Book a flight\n   preference: Window seat\n"


def test_a_streamed_reply_is_drawn_once_as_markdown() -> None:
    with terminal_output() as (out, stdout, _):
        for piece in ("It is ", "**sunny**", " in Oslo."):
            out.text_piece(piece)
        out.reply("It is **sunny** in Oslo.")
    screen = ANSI.sub("", stdout.getvalue())
    assert screen.count("sunny") >= 1
    assert "**" not in screen.splitlines()[-1]  # the final frame is rendered Markdown
    assert screen.rstrip().endswith("It is sunny in Oslo.")


def test_a_reply_that_was_not_streamed_is_printed_once() -> None:
    stdout = io.StringIO()
    out = Output(stdout=stdout, stderr=io.StringIO())
    out.reply("plain **text**")
    assert stdout.getvalue() == "plain **text**\n"


def test_usage_line() -> None:
    stderr = io.StringIO()
    Output(stdout=io.StringIO(), stderr=stderr).usage(Usage(120, 30, 2, 1.26), label="turn")
    assert stderr.getvalue() == "turn: 120 in / 30 out tokens, 2 model calls, 1.3s\n"


def test_leaving_before_saying_anything_makes_no_session(cli: Cli, acontext: FakeAcontext) -> None:
    run = cli(input=typed("/exit"), terminal=True)
    assert (run.code, run.stdout) == (0, "")
    assert acontext.session_ids() == []
