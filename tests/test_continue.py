"""Going on with a session without its id: ``--continue`` takes this agent's newest, and
``agent sessions`` on a terminal lets the user pick one."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
from collections.abc import Callable

import pytest

import openai_basic.mirror
from openai_basic.settings import Settings
from tests.conftest import AGENT, AgentCommand, Run
from tests.fakes.acontext_server import FakeAcontext
from tests.fakes.openai_server import FakeOpenAI, echo_responder

Cli = Callable[..., Run]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def session_of(run: Run) -> str:
    assert run.code == 0, run.stderr
    return str(json.loads(run.stdout)["session_id"])


@pytest.mark.parametrize(
    "how",
    [
        ("-c", "--json", "what was the number?"),
        ("--continue", "--json"),  # piped
    ],
    ids=["prompt", "piped"],
)
def test_continue_goes_on_with_the_newest_session(
    cli: Cli, model: FakeOpenAI, how: tuple[str, ...]
) -> None:
    model.responder = echo_responder
    session_of(cli("--json", "an older session"))
    newest = session_of(cli("--json", "remember the number 7"))
    assert session_of(cli(*how, input=b"what was the number?\n")) == newest
    assert model.requests[-1]["messages"][1:] == [
        {"role": "user", "content": "remember the number 7"},
        {"role": "assistant", "content": "echo: remember the number 7"},
        {"role": "user", "content": "what was the number?"},
    ]


def test_continue_in_the_interactive_chat(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = echo_responder
    newest = session_of(cli("--json", "remember the number 7"))
    run = cli("-c", input=b"what was the number?\n", terminal=True)
    assert run.code == 0, run.stderr
    assert f"resumed session {newest} (2 messages)" in run.stderr
    assert [m["content"] for m in acontext.stored_messages(newest)] == [
        "remember the number 7",
        "echo: remember the number 7",
        "what was the number?",
        "echo: what was the number?",
    ]


def test_continue_finds_a_session_made_on_another_machine(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext, settings: Settings
) -> None:
    elsewhere = acontext.add_session(
        configs={"agent": settings.session_tag},
        messages=[{"role": "user", "content": "from the laptop"}],
    )
    acontext.add_session(configs={"agent": "another-agent"})
    model.responder = echo_responder
    assert session_of(cli("-c", "--json", "and from here")) == elsewhere


def test_continue_goes_on_with_a_session_acontext_has_not_seen_yet(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai_basic.mirror, "STALL_SECONDS", 0.2)  # down is down: no 3 s wait
    model.responder = echo_responder
    cli("--json", "in Acontext")
    acontext.stop()
    assert cli("only here").code == 1  # its messages wait in the journal
    run = cli("-c", "go on")
    assert run.code == 1
    assert [m["content"] for m in model.requests[-1]["messages"][1:]] == [
        "only here",
        "echo: only here",
        "go on",
    ]


def test_continue_without_any_session_says_so(
    cli: Cli, model: FakeOpenAI, settings: Settings
) -> None:
    run = cli("-c", "hi")
    assert (run.code, run.stderr) == (
        2,
        f"error: no session of {settings.session_tag} to continue yet: start one with: agent\n",
    )
    assert model.requests == []


@pytest.mark.parametrize(
    "args, complaint",
    [
        (("-c", "--resume", "x", "hi"), "argument --resume: not allowed with argument -c"),
        (("--demo", "-c"), "error: --demo takes no PROMPT, --resume or --continue"),
    ],
)
def test_continue_with_what_contradicts_it_is_a_usage_error(
    cli: Cli, args: tuple[str, ...], complaint: str
) -> None:
    run = cli(*args)
    assert run.code == 2 and complaint in run.stderr


class Screen:
    """The agent with stdin, stdout and stderr on one pseudo-terminal, read as it draws."""

    def __init__(self, agent: AgentCommand, *args: str) -> None:
        self.leader, follower = pty.openpty()
        self.process = subprocess.Popen(
            [str(AGENT), *args],
            stdin=follower,
            stdout=follower,
            stderr=follower,
            env=dict(agent.env),
            cwd=agent.cwd,
        )
        os.close(follower)
        self.drawn = b""

    @property
    def text(self) -> str:
        return ANSI.sub("", self.drawn.decode(errors="replace"))

    def wait_for(self, text: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while text not in self.text:
            assert time.monotonic() < deadline, f"{text!r} never came: {self.text!r}"
            if not self._read():
                assert text in self.text, f"ended without {text!r}: {self.text!r}"

    def type(self, line: str) -> None:
        os.write(self.leader, line.encode() + b"\n")

    def finish(self) -> int:
        while self._read():
            pass
        code = self.process.wait(timeout=60)
        os.close(self.leader)
        return code

    def _read(self) -> bool:
        """Read what is drawn within a moment; False once the agent is gone."""
        ready, _, _ = select.select([self.leader], [], [], 0.1)
        if not ready:
            return self.process.poll() is None
        try:
            data = os.read(self.leader, 65536)
        except OSError:  # EIO: the terminal's other side has closed
            return False
        self.drawn += data
        return bool(data)


def test_sessions_on_a_terminal_picks_one_to_go_on_with(
    agent: AgentCommand, model: FakeOpenAI, acontext: FakeAcontext, settings: Settings
) -> None:
    tagged = {"agent": settings.session_tag}
    older = acontext.add_session(
        configs=tagged,
        messages=[
            {"role": "user", "content": "remember the number 7"},
            {"role": "assistant", "content": "I will."},
        ],
    )
    newer = acontext.add_session(configs=tagged, messages=[{"role": "user", "content": "hello"}])
    model.responder = echo_responder
    screen = Screen(agent, "sessions")
    screen.wait_for("continue which (1-2, Enter for none)? ")
    listed = [line.split()[:2] for line in screen.text.splitlines()[:2]]
    assert listed == [["1", newer], ["2", older]]
    screen.type("3")
    screen.wait_for("type a number from 1 to 2, or just Enter to leave")
    screen.type("2")
    screen.wait_for("Chat with the agent.")
    screen.type("what was the number?")
    screen.wait_for("echo: what was the number?")
    screen.type("/exit")
    assert screen.finish() == 0, screen.text
    assert f"resumed session {older} (2 messages)" in screen.text
    assert [m["content"] for m in model.requests[0]["messages"][1:]] == [
        "remember the number 7",
        "I will.",
        "what was the number?",
    ]
    assert len(acontext.stored_messages(older)) == 4


def test_sessions_on_a_terminal_can_be_left_without_picking(
    agent: AgentCommand, acontext: FakeAcontext, settings: Settings
) -> None:
    acontext.add_session(configs={"agent": settings.session_tag})
    screen = Screen(agent, "sessions")
    screen.wait_for("continue which (1-1, Enter for none)? ")
    screen.type("")
    assert screen.finish() == 0, screen.text
    assert "Chat with the agent." not in screen.text


def test_sessions_is_only_listed_when_its_output_is_not_a_terminal(
    cli: Cli, acontext: FakeAcontext, settings: Settings
) -> None:
    session_id = acontext.add_session(configs={"agent": settings.session_tag})
    run = cli("sessions", terminal=True)  # stdin is a terminal; stdout is read by the test
    assert run.code == 0 and run.stdout.startswith(session_id)
    assert "continue which" not in run.stdout + run.stderr
