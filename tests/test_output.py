"""The terminal: text from a model, a tool or a session cannot drive it; a closed stream is fine."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from collections.abc import Callable

import pytest

from openai_basic import markdown
from openai_basic.output import Output
from openai_basic.settings import Settings
from tests.conftest import AGENT, AgentCommand, Run
from tests.fakes.acontext_server import FakeAcontext
from tests.fakes.openai_server import FakeOpenAI, echo_responder, error, text, tool_calls

# A bare escape, a window title (OSC 0), the clipboard (OSC 52), a cleared screen (CSI 2J), the
# 8-bit CSI and a bell: what a hostile or confused model or tool could send.
HOSTILE = "\x1b\x1b]0;pwned\x07\x1b]52;c;ZWNobyBoaQ==\x1b\\\x1b[2J\x9b2J\x07"
REPLY = f"Sunny é 日本{HOSTILE}!\nsecond line\tend"
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
HOSTILE_PARTS = ("\x1b\x1b", "\x1b]0;", "\x1b]52;", "\x1b[2J", "\x07", "\x9b")
Cli = Callable[..., Run]


class Screen(io.StringIO):
    """A stream that says whether it is a terminal, as a real one would."""

    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


def lookup(query: str) -> str:
    """Look something up.

    Args:
        query: what to look up
    """
    raise RuntimeError(f"nothing for {query}")


def assert_harmless(written: str) -> None:
    for part in HOSTILE_PARTS:
        assert part not in written


@pytest.mark.parametrize(
    "terminal, flags",
    [(False, []), (True, []), (True, ["--no-stream"])],
    ids=["piped", "terminal-streamed", "terminal"],
)
def test_model_and_tool_text_cannot_drive_the_terminal(
    cli: Cli,
    model: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
    terminal: bool,
    flags: list[str],
) -> None:
    model.script(
        tool_calls(
            ("lookup", {"query": HOSTILE}),  # the tool's error message carries it
            ("lookup", f'{{"query": "{HOSTILE}"}}'),  # the arguments themselves carry it
        ),
        text(REPLY),
    )
    stdout, stderr = Screen(terminal), Screen(terminal)
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(sys, "stderr", stderr)
    assert cli(*flags, f"weather{HOSTILE}\n", tools=[lookup]).code == 0
    written = stdout.getvalue() + stderr.getvalue()
    assert_harmless(written)
    assert "Sunny é 日本!" in stdout.getvalue()
    assert "second line" in stdout.getvalue()
    assert "pwned" not in stdout.getvalue()  # a title set is dropped whole, not shown
    assert "lookup failed: RuntimeError: nothing for" in stderr.getvalue()
    if not terminal:
        assert not CONTROL.search(written)
        assert stdout.getvalue().startswith("Sunny é 日本!\nsecond line\tend\nTasks:\n")


@pytest.mark.parametrize("redraw_seconds", [0, 3600], ids=["every-piece", "at-the-end"])
def test_a_control_sequence_split_across_pieces_is_still_removed(
    monkeypatch: pytest.MonkeyPatch, redraw_seconds: float
) -> None:
    monkeypatch.setattr(markdown, "REDRAW_SECONDS", redraw_seconds)
    for cut in range(1, len(HOSTILE)):
        stdout = Screen(True)
        out = Output(stdout=stdout, stderr=Screen(True))
        for piece in ("Sunny ", HOSTILE[:cut], HOSTILE[cut:], " day\n\nnext\n"):
            out.text_piece(piece)
        out.reply(f"Sunny {HOSTILE} day\n\nnext\n")
        assert_harmless(stdout.getvalue())
        assert "pwned" not in stdout.getvalue()
        assert "Sunny  day" in stdout.getvalue()


def test_stored_sessions_are_replayed_without_their_control_sequences(
    cli: Cli, acontext: FakeAcontext, settings: Settings
) -> None:
    session_id = acontext.add_session(
        configs={"agent": settings.session_tag},
        messages=[
            {"role": "user", "content": f"plan é{HOSTILE}"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": HOSTILE},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": f"found{HOSTILE}"},
            {"role": "assistant", "content": f"日本{HOSTILE}\nnext"},
        ],
    )
    history = cli("history", session_id).stdout
    assert history.splitlines() == [
        "you: plan é",
        "  → lookup()",
        "  ← found",
        "assistant: 日本",
        "next",
    ]
    sessions = cli("sessions").stdout
    assert sessions.rstrip().endswith("4 messages  plan é")
    assert not CONTROL.search(history + sessions)


def test_a_server_error_cannot_drive_the_terminal(cli: Cli, model: FakeOpenAI) -> None:
    model.script(error(400, f"bad request{HOSTILE}"))
    run = cli("hi")
    assert run.code == 1
    assert "error: OpenAI: HTTP 400: bad request\n" in run.stderr
    assert not CONTROL.search(run.stderr)


def test_with_stdout_closed_the_turn_still_runs(
    cli: Cli, model: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    model.responder = echo_responder
    monkeypatch.setattr(sys, "stdout", None)  # what Python gives a process started with it closed
    assert cli("hi").code == 0
    assert model.requests[0]["messages"][-1] == {"role": "user", "content": "hi"}


def test_with_stderr_closed_the_reply_is_still_printed(
    cli: Cli, model: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    model.responder = echo_responder
    monkeypatch.setattr(sys, "stderr", None)
    run = cli("hi")
    assert run.code == 0
    assert run.stdout.startswith("echo: hi\nTasks:\n")


def test_started_with_stdin_and_stdout_closed_it_says_there_is_no_prompt(
    agent: AgentCommand,
) -> None:
    done = subprocess.run(
        ["bash", "-c", 'exec "$0" <&- >&-', str(AGENT)],
        capture_output=True,
        text=True,
        env=dict(agent.env),
        cwd=agent.cwd,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, "no prompt given\n")


def test_a_reader_that_goes_away_ends_nothing_but_the_output(
    agent: AgentCommand, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    """`agent hi | head -1`: the rest of the run goes on, and the conversation is kept."""
    long_reply = "\n".join(f"line {i}" for i in range(30_000))  # more than a pipe holds
    model.script(text(long_reply))
    process = agent.start("hi")
    assert process.stdout.readline() == "line 0\n"
    process.stdout.close()  # as `head -1` does
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
    (session_id,) = acontext.session_ids()
    assert acontext.stored_messages(session_id)[1]["content"] == long_reply
    assert acontext.session(session_id).tasks  # the run went on to the tasks


def test_a_transcript_piped_into_head_ends_quietly(
    agent: AgentCommand, acontext: FakeAcontext
) -> None:
    said = [{"role": "user", "content": f"question {i} " + "word " * 20} for i in range(3000)]
    session_id = acontext.add_session(messages=said)  # more than a pipe holds
    done = subprocess.run(
        ["bash", "-c", f"set -o pipefail; '{AGENT}' history {session_id} | head -1"],
        capture_output=True,
        text=True,
        env=dict(agent.env),
        cwd=agent.cwd,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout == f"you: {said[0]['content']}\n"
