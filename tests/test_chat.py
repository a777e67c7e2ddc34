"""The interactive chat outlives what fails, answers commands before any session, and keeps the
line being typed whole: typed through a pseudo-terminal as a person would, or in-process where
no terminal is needed."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import termios
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import openai_basic.mirror
from openai_basic.output import Output
from openai_basic.prompt import Prompt
from tests.conftest import AGENT, AgentCommand, Run, typed, wait_for
from tests.fakes.acontext_server import FakeAcontext
from tests.fakes.openai_server import FakeOpenAI, echo_responder, error, text
from tests.tools import forecast

Cli = Callable[..., Run]
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SECONDS = 60  # an agent's imports take seconds on a loaded machine


class ChatTerminal:
    """The agent with stdin, stdout and stderr on one pseudo-terminal: what it draws is read as
    it comes, and the test types at it."""

    def __init__(self, agent: AgentCommand, *args: str, env: dict[str, str]) -> None:
        self.leader, follower = pty.openpty()
        # wide enough that no status line is wrapped
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 400, 0, 0))
        self.process = subprocess.Popen(
            [str(AGENT), *args],
            stdin=follower,
            stdout=follower,
            stderr=follower,
            env={**agent.env, **env},
            cwd=agent.cwd,
        )
        os.close(follower)
        self._drawn = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.leader, 65536)
            except OSError:  # the agent is gone
                return
            if not chunk:
                return
            self._drawn += chunk

    @property
    def drawn(self) -> str:
        """Everything drawn so far, without escape sequences."""
        return ESCAPES.sub("", self._drawn.decode(errors="replace"))

    def shown(self) -> list[str]:
        """The lines as a terminal shows them: a carriage return starts the line over."""
        return [line.rstrip("\r").rsplit("\r", 1)[-1] for line in self.drawn.split("\n")]

    def type(self, keys: str) -> None:
        os.write(self.leader, keys.encode())

    def wait_for(self, drawn: str, after: int = 0) -> int:
        """Wait until ``drawn`` is drawn after position ``after``; return where it ends."""
        wait_for(lambda: self.drawn.find(drawn, after) >= 0, seconds=SECONDS)
        return self.drawn.find(drawn, after) + len(drawn)

    def finish(self) -> int:
        code = self.process.wait(timeout=SECONDS)
        self._reader.join(timeout=SECONDS)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.leader)


@contextmanager
def chat_terminal(
    agent: AgentCommand, *args: str, stream: bool = False, **env: str
) -> Iterator[ChatTerminal]:
    terminal = ChatTerminal(agent, *args, *([] if stream else ["--no-stream"]), env=env)
    try:
        yield terminal
    finally:
        terminal.close()


def only_session(acontext: FakeAcontext) -> str:
    (session_id,) = acontext.session_ids()
    return session_id


def user(content: str) -> dict[str, Any]:
    return {"role": "user", "content": content}


# -- through a pseudo-terminal ---------------------------------------------------------------


def test_a_model_error_costs_the_turn_and_the_next_message_goes_on(
    agent: AgentCommand, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.script(error(500, "The server had an error while processing your request."))
    model.responder = echo_responder
    with chat_terminal(agent, OPENAI_MAX_RETRIES="0") as chat:
        chat.wait_for("you> ")
        chat.type("first\r")
        told = chat.wait_for("error: OpenAI: HTTP 500: The server had an error")
        chat.wait_for("you> ", after=told)
        chat.type("second\r")
        answered = chat.wait_for("echo: second", after=told)
        chat.wait_for("you> ", after=answered)
        chat.type("/exit\r")
        assert chat.finish() == 0, chat.drawn
    assert "Tasks" in chat.drawn[answered:]
    assert model.requests[-1]["messages"][1:] == [user("first"), user("second")]
    assert acontext.stored_messages(only_session(acontext)) == [
        user("first"),
        user("second"),
        {"role": "assistant", "content": "echo: second"},
    ]


def test_a_reply_cut_mid_stream_costs_the_turn_and_the_next_message_goes_on(
    agent: AgentCommand, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.script(text("It is sunny in Oslo today.", cut_after=3))  # "It is", then nothing
    model.responder = echo_responder
    with chat_terminal(agent, stream=True) as chat:
        chat.wait_for("you> ")
        chat.type("weather?\r")
        told = chat.wait_for("error: OpenAI: the reply was cut off mid-stream; ask again")
        chat.wait_for("you> ", after=told)
        chat.type("again\r")
        answered = chat.wait_for("echo: again", after=told)
        chat.wait_for("you> ", after=answered)
        chat.type("/exit\r")
        assert chat.finish() == 0, chat.drawn
    assert "It is" in chat.drawn[:told] and "sunny" not in chat.drawn
    assert model.requests[-1]["messages"][1:] == [user("weather?"), user("again")]


def test_acontext_down_during_tasks_costs_the_command_and_the_chat_goes_on(
    agent: AgentCommand, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = echo_responder
    with chat_terminal(agent) as chat:
        chat.wait_for("you> ")
        chat.type("first\r")
        answered = chat.wait_for("echo: first")
        wait_for(lambda: len(acontext.session_ids()) == 1, seconds=SECONDS)
        session_id = only_session(acontext)
        wait_for(lambda: len(acontext.stored_messages(session_id)) == 2, seconds=SECONDS)
        acontext.stop()
        chat.type("/tasks\r")
        told = chat.wait_for("error: Acontext: cannot reach", after=answered)
        chat.wait_for("you> ", after=told)
        acontext.start()
        chat.type("second\r")
        answered = chat.wait_for("echo: second", after=told)
        chat.wait_for("you> ", after=answered)
        chat.type("/exit\r")
        assert chat.finish() == 0, chat.drawn
    assert f"agent tasks {session_id}" in chat.drawn[told:]  # how to see them later
    assert "Tasks" in chat.drawn[answered:]
    assert len(acontext.stored_messages(session_id)) == 4


def test_session_then_ctrl_d_before_any_message_leaves_without_a_session(
    agent: AgentCommand, acontext: FakeAcontext
) -> None:
    with chat_terminal(agent) as chat:
        chat.wait_for("you> ")
        chat.type("/session\r")
        told = chat.wait_for("no session yet: your first message starts one")
        chat.wait_for("you> ", after=told)
        chat.type("\x04")  # Ctrl-D
        assert chat.finish() == 0, chat.drawn
    assert "error" not in chat.drawn
    assert "--resume" not in chat.drawn
    assert acontext.session_ids() == []
    assert acontext.requests == []


def test_a_status_line_goes_above_the_line_being_typed_and_leaves_it_whole(
    agent: AgentCommand, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = echo_responder
    with chat_terminal(agent) as chat:
        chat.wait_for("you> ")
        with acontext.holding():  # the writer's first request waits, unanswered
            chat.type("first\r")
            answered = chat.wait_for("echo: first")
            wait_for(lambda: len(acontext.requests) == 1, seconds=SECONDS)
            typing = chat.wait_for("you> ", after=answered)
            chat.type("second par")
            chat.wait_for("second par", after=typing)
            acontext.stop()  # cuts the request: the writer says Acontext is unreachable
            told = chat.wait_for("acontext: Acontext unreachable", after=typing)
            chat.wait_for("you> second par", after=told)  # the line is drawn again below it
        chat.type("t\r")
        answered = chat.wait_for("echo: second part", after=told)
        acontext.start()
        chat.wait_for("you> ", after=answered)
        chat.type("/exit\r")
        assert chat.finish() == 0, chat.drawn
    assert model.requests[-1]["messages"][-1] == user("second part")
    shown = chat.shown()
    status = next(i for i, line in enumerate(shown) if "Acontext unreachable" in line)
    assert shown[status].startswith("acontext: Acontext unreachable at ")
    assert shown[status + 1] == "you> second part"


def test_with_learning_the_skills_load_while_the_first_message_is_typed(
    agent: AgentCommand, cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    learn = {"AGENT_LEARN": "true"}
    model.script(text("Noted: aisle seats."))
    assert cli("I prefer aisle seats on every flight.", env=learn).code == 0  # a space, a skill
    (first,) = acontext.session_ids()
    listing = f"/learning_spaces/{acontext.learning.record(first).space_id}/skills"
    before = len(acontext.requests)

    def listed() -> int:
        return sum(r.path == listing for r in acontext.requests[before:])

    model.responder = echo_responder
    with chat_terminal(agent, **learn) as chat:
        chat.wait_for("you> ")
        wait_for(lambda: listed() == 1, seconds=SECONDS)  # before anything is typed
        assert acontext.session_ids() == [first]
        chat.type("hello\r")
        answered = chat.wait_for("echo: hello")
        chat.wait_for("you> ", after=answered)
        chat.type("/exit\r")
        assert chat.finish() == 0, chat.drawn
    assert [tool["function"]["name"] for tool in model.requests[-1]["tools"]][-2:] == [
        "get_skill",
        "get_skill_file",
    ]
    assert listed() == 2  # at the start, and after learning: the first message read none


def test_a_pasted_block_of_lines_is_one_message(
    agent: AgentCommand, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = echo_responder
    with chat_terminal(agent) as chat:
        chat.wait_for("you> ")
        chat.type("\x1b[200~line one\rline two\x1b[201~")  # as a terminal sends a paste
        chat.type("\r")
        answered = chat.wait_for("echo: line one")
        chat.wait_for("you> ", after=answered)
        chat.type("/exit\r")
        assert chat.finish() == 0, chat.drawn
    assert len(model.requests) == 1
    assert model.requests[0]["messages"][-1] == user("line one\nline two")


def test_ctrl_r_finds_a_line_typed_in_an_earlier_run(
    agent: AgentCommand, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = echo_responder
    (agent.cwd / ".agent").mkdir()
    (agent.cwd / ".agent" / "history").write_text("plan a trip to Oslo\nsomething else\n")
    with chat_terminal(agent) as chat:
        chat.wait_for("you> ")
        chat.type("\x12Oslo")  # Ctrl-R, then what to look for
        chat.wait_for("plan a trip to Oslo")
        chat.type("\r")
        answered = chat.wait_for("echo: plan a trip to Oslo")
        chat.wait_for("you> ", after=answered)
        chat.type("/exit\r")
        assert chat.finish() == 0, chat.drawn
    assert model.requests[0]["messages"][-1] == user("plan a trip to Oslo")


# -- in-process ------------------------------------------------------------------------------


def test_commands_before_the_first_message_need_no_session(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    commands = ("/help", "/tools", "/usage", "/cost", "/session", "/tasks", "/model")
    run = cli(input=typed(*commands), terminal=True, tools=[forecast])
    assert (run.code, run.stderr.count("error")) == (0, 0), run.stderr
    assert run.stdout.splitlines()[-7:] == [
        "Ctrl-C         cancel the turn; at the prompt, leave",  # the end of /help
        "forecast(city): Tell the weather in a city.",
        "no model calls yet",
        "no model calls yet",
        "no session yet: your first message starts one",
        "no tasks yet: they come from the conversation your first message starts",
        "gpt-4o-mini",
    ]
    assert acontext.requests == [] and model.requests == []


def test_session_before_the_first_message_of_a_resumed_chat_names_it(
    cli: Cli, acontext: FakeAcontext
) -> None:
    session_id = acontext.add_session(messages=[user("earlier")])
    run = cli("--resume", session_id, input=typed("/session"), terminal=True)
    assert run.code == 0, run.stderr
    assert run.stdout == f"session   {session_id} (resumed with your first message)\n"
    assert acontext.stored_messages(session_id) == [user("earlier")]


def test_tasks_before_the_first_message_of_a_resumed_chat_shows_its_tasks(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = echo_responder
    first = cli("plan a trip")
    assert first.code == 0, first.stderr
    session_id = only_session(acontext)
    run = cli("--resume", session_id, input=typed("/tasks", "/exit"), terminal=True)
    assert run.code == 0, run.stderr
    tasks = "Tasks:\n1. [success] plan a trip\n   progress: Agent responded to: plan a trip\n"
    assert run.stdout == tasks + tasks  # /tasks, then at the end
    assert len(model.requests) == 1


def test_an_unreachable_model_is_told_at_each_turn_and_the_chat_ends_as_asked(
    cli: Cli, acontext: FakeAcontext
) -> None:
    unreachable = "http://127.0.0.1:9/v1"  # the discard port: nothing listens
    env = {"OPENAI_BASE_URL": unreachable, "OPENAI_MAX_RETRIES": "0"}
    run = cli(input=typed("first", "second", "/exit"), terminal=True, env=env)
    assert run.code == 0, run.stderr
    told = "error: OpenAI: cannot reach the model server (Connection error.): check OPENAI_BASE_URL"
    assert run.stderr.count(told) == 2
    assert run.stdout.startswith("Tasks:\n1. [running] first\n")  # no answer yet
    assert acontext.stored_messages(only_session(acontext)) == [user("first"), user("second")]


def test_a_rejected_key_ends_the_chat_and_leaves_no_session_of_lone_prompts(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.api_key = "sk-another-key"
    run = cli(input=typed("first", "second"), terminal=True)
    assert run.code == 2
    assert run.stderr.splitlines()[-1] == "error: OpenAI key rejected: check OPENAI_API_KEY"
    assert "is kept" not in run.stderr
    assert acontext.session_ids() == []


def test_model_switches_the_model_of_the_next_turns(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = echo_responder
    lines = ("/model gpt-first", "one", "/model gpt-second", "two", "/model", "/model a b")
    run = cli(input=typed(*lines), terminal=True)
    assert run.code == 0, run.stderr
    assert [request["model"] for request in model.requests] == ["gpt-first", "gpt-second"]
    session_id = only_session(acontext)
    assert acontext.session(session_id).configs["model"] == "gpt-first"  # made with the first
    metas = acontext.stored_metas(session_id)
    assert [meta.get("model") for meta in metas] == [None, "gpt-first", None, "gpt-second"]
    assert "echo: two\ngpt-second\n" in run.stdout
    assert "the next turns ask gpt-second" in run.stderr
    assert "usage: /model [NAME]" in run.stderr


def test_an_unknown_model_is_told_and_another_can_be_chosen(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.script(error(404, "The model `gpt-9` does not exist"))
    model.responder = echo_responder
    lines = typed("hi", "/model gpt-4o-mini", "hi again")
    run = cli("--model", "gpt-9", input=lines, terminal=True)
    assert run.code == 0, run.stderr
    assert (
        "error: model 'gpt-9' not found: set OPENAI_MODEL to a model you have; "
        "or choose another with /model NAME"
    ) in run.stderr.splitlines()
    assert run.stdout.startswith("echo: hi again\n")


def test_usage_and_cost_count_the_tokens_so_far(cli: Cli, model: FakeOpenAI) -> None:
    model.responder = echo_responder
    run = cli(input=typed("hi", "/usage", "/cost"), terminal=True)
    assert run.code == 0, run.stderr
    usage = ["model calls        1", "prompt tokens      10", "completion tokens  5"]
    lines = run.stdout.splitlines()
    assert lines[1:4] == usage and lines[5:8] == usage


def test_a_block_between_triple_quotes_is_one_message(cli: Cli, model: FakeOpenAI) -> None:
    model.responder = echo_responder
    block = ('"""', "first line", "", "  /not a command", '"""')
    run = cli(input=typed(*block, '"""', "ended by Ctrl-D"), terminal=True)
    assert run.code == 0, run.stderr
    assert [request["messages"][-1]["content"] for request in model.requests] == [
        "first line\n\n  /not a command",
        "ended by Ctrl-D",
    ]


def test_tasks_while_messages_wait_for_acontext_says_so(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai_basic.mirror, "STALL_SECONDS", 0.5)  # give up on a down Acontext
    model.responder = echo_responder
    acontext.stop()
    run = cli(input=typed("hi", "/tasks"), terminal=True)
    assert run.code == 1  # two messages wait in the journal, as the end says
    assert "2 messages have not reached Acontext yet; /tasks shows the tasks once they have" in (
        run.stderr
    )


# -- the pieces --------------------------------------------------------------------------------


def test_status_lines_go_above_the_prompt_only_while_it_takes_them() -> None:
    stderr = io.StringIO()
    out = Output(stdout=io.StringIO(), stderr=stderr)
    taken: list[str] = []

    def take_the_first(line: str) -> bool:
        taken.append(line)
        return len(taken) == 1

    out.above_prompt(take_the_first)
    out.status("first")  # taken
    out.error("second")  # not taken: printed as usual
    out.above_prompt(None)
    out.status("third")
    assert taken == ["first", "error: second"]
    assert stderr.getvalue() == "error: second\nthird\n"


def test_a_prompt_that_is_not_up_takes_no_line(tmp_path: Any) -> None:
    prompt = Prompt(tmp_path / "history")
    taken: list[bool] = []
    thread = threading.Thread(target=lambda: taken.append(prompt.print_above("late")))
    thread.start()
    thread.join()
    prompt.close()
    assert taken == [False]


def test_resuming_an_unknown_session_fails_at_the_first_message(
    cli: Cli, acontext: FakeAcontext
) -> None:
    unknown = str(uuid.uuid4())
    run = cli("--resume", unknown, input=typed("/session", "hello"), terminal=True)
    assert run.code == 2
    assert run.stderr.endswith(f"error: no Acontext session {unknown}\n")
    assert "is kept" not in run.stderr
