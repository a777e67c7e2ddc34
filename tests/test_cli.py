"""The ``agent`` command against both fakes: run in-process through ``main``, and as the
installed script where the process itself is the point (the entry point, a signal)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

import openai_basic.mirror
from openai_basic.tools import needs_approval
from tests.conftest import AgentCommand, Run, wait_for
from tests.fakes.acontext_server import FakeAcontext
from tests.fakes.openai_server import (
    FakeOpenAI,
    ToolCallSpec,
    echo_responder,
    error,
    text,
    tool_calls,
)
from tests.tools import forecast, reserve

Cli = Callable[..., Run]


def only_session(acontext: FakeAcontext) -> str:
    (session_id,) = acontext.session_ids()
    return session_id


def test_one_prompt_prints_the_reply_then_the_tasks(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.script(
        tool_calls(ToolCallSpec("forecast", '{"city": "Helsinki"}', id="call_1")),
        text("Sunny in Helsinki."),
    )
    run = cli("What's the weather in Helsinki?", tools=[forecast])
    assert run.code == 0, run.stderr
    assert run.stdout == (
        "Sunny in Helsinki.\n"
        "Tasks:\n"
        "1. [success] What's the weather in Helsinki?\n"
        "   progress: Agent responded to: What's the weather in Helsinki?\n"
    )
    assert '  tool forecast({"city": "Helsinki"})' in run.stderr
    session_id = only_session(acontext)
    stored = acontext.stored_messages(session_id)
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert all(m["role"] != "system" for m in stored)
    assert acontext.session(session_id).configs["system_prompt"] == "You are a test assistant."


def test_piped_stdin_is_one_turn_per_line_in_one_session(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = echo_responder
    run = cli(input=b"first\n\nsecond\n")
    assert run.code == 0, run.stderr
    assert run.stdout.startswith("echo: first\necho: second\nTasks:\n")
    stored = acontext.stored_messages(only_session(acontext))
    assert [m["content"] for m in stored] == ["first", "echo: first", "second", "echo: second"]


def test_json_output_has_the_session_the_reply_and_the_tasks(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = echo_responder
    run = cli("--json", "plan a trip")
    assert run.code == 0, run.stderr
    payload = json.loads(run.stdout)
    assert payload["session_id"] == only_session(acontext)
    assert payload["reply"] == "echo: plan a trip"
    assert payload["tasks"] == [
        {
            "order": 1,
            "description": "plan a trip",
            "status": "success",
            "progresses": ["Agent responded to: plan a trip"],
            "user_preferences": [],
        }
    ]


def test_resume_continues_the_same_session_with_its_history(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = echo_responder
    first = cli("--json", "remember the number 7")
    session_id = json.loads(first.stdout)["session_id"]
    second = cli("--json", "--resume", session_id, "what was the number?")
    assert second.code == 0, second.stderr
    assert json.loads(second.stdout)["session_id"] == session_id
    assert model.requests[-1]["messages"] == [
        {"role": "system", "content": "You are a test assistant."},
        {"role": "user", "content": "remember the number 7"},
        {"role": "assistant", "content": "echo: remember the number 7"},
        {"role": "user", "content": "what was the number?"},
    ]
    assert len(acontext.stored_messages(session_id)) == 4
    assert acontext.session_ids() == [session_id]


def test_demo_plans_the_trip_shows_tasks_and_resumes_for_a_summary(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.script(
        text("Day 1: Nuuksio. Day 2: Lakes. Day 3: Lapland."),
        tool_calls(("forecast", '{"city": "Helsinki"}')),
        text("It is fine."),
        tool_calls(
            ("reserve", '{"origin": "Shanghai", "destination": "Helsinki", "day": "tomorrow"}')
        ),
        text("Booked."),
        text("You're welcome!"),
        text("We planned a trip, checked the weather and booked a flight."),
    )
    run = cli("--demo", tools=[forecast, reserve])
    assert run.code == 0, run.stderr
    assert "1. [success] I'd like a 3-day trip to Finland" in run.stdout
    assert run.stdout.rstrip().endswith(
        "We planned a trip, checked the weather and booked a flight."
    )
    session_id = only_session(acontext)
    stored = acontext.stored_messages(session_id)
    assert len(stored) == 4 * 2 + 4 + 2
    assert [m["content"] for m in stored if m["role"] == "tool"] == [
        "Sunny in Helsinki.",
        "Seat reserved from Shanghai to Helsinki on tomorrow.",
    ]
    assert model.requests[-1]["messages"][-1]["content"].startswith("Summarise our conversation")


@pytest.mark.parametrize("flags", [(), ("--yes",)])
def test_a_demo_that_cannot_ask_says_first_that_the_booking_will_be_refused(
    cli: Cli, model: FakeOpenAI, flags: tuple[str, ...]
) -> None:
    @needs_approval
    def book(destination: str) -> str:
        """Book a flight.

        Args:
            destination: where it goes
        """
        return f"Booked to {destination}."

    model.responder = echo_responder
    run = cli("--demo", *flags, tools=[forecast, book])
    assert run.code == 0, run.stderr
    warning = (
        "demo: book asks you before it runs, and this run cannot ask, so its calls will be "
        "refused (--yes lets them run)\n"
    )
    if flags:
        assert warning not in run.stderr
    else:
        assert run.stderr.startswith(warning)  # before the demo begins


def test_an_interactive_session_ends_with_exit(cli: Cli, model: FakeOpenAI) -> None:
    model.responder = echo_responder
    run = cli(input=b"hello there\n/exit\n", terminal=True)
    assert run.code == 0, run.stderr
    assert run.stdout.startswith("echo: hello there\nTasks:\n1. [success] hello there\n")


def test_exit_code_2_for_a_missing_key(cli: Cli) -> None:
    run = cli("hi", env={"OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""})
    assert run.code == 2
    assert run.stderr == (
        "error: OPENAI_API_KEY is not set: put it in .env (see .env.example) or the environment\n"
    )


def test_exit_code_2_for_the_placeholder_key_before_any_session(
    cli: Cli, acontext: FakeAcontext, tmp_path: Path
) -> None:
    run = cli("hi", env={"OPENAI_API_KEY": "sk-...", "OPENAI_BASE_URL": ""})
    assert (run.code, run.stderr) == (
        2,
        "error: OPENAI_API_KEY is the placeholder sk-... from .env.example: put your key in .env\n",
    )
    assert acontext.requests == []
    assert not (tmp_path / ".agent").exists()


def test_exit_code_2_for_a_bad_flag(cli: Cli) -> None:
    run = cli("--frobnicate")
    assert run.code == 2
    assert "unrecognized arguments: --frobnicate" in run.stderr


@pytest.mark.parametrize(
    "typed, meant",
    [("session", "sessions"), ("histroy", "history"), ("Doctor", "doctor"), ("task", "tasks")],
)
def test_a_typo_of_a_command_is_not_sent_to_the_model(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext, typed: str, meant: str
) -> None:
    run = cli(typed)
    assert (run.code, run.stderr) == (
        2,
        f"error: {typed!r} is not a command: did you mean `agent {meant}`? "
        "(to ask the model, write more than one word)\n",
    )
    assert model.requests == [] and acontext.requests == []


@pytest.mark.parametrize(
    "prompt", ["hello", "docker", "seasons", "story", "session summary please"]
)
def test_a_prompt_unlike_a_command_goes_to_the_model(
    cli: Cli, model: FakeOpenAI, prompt: str
) -> None:
    model.responder = echo_responder
    run = cli("--no-stream", prompt)
    assert (run.code, run.stdout.splitlines()[0]) == (0, f"echo: {prompt}")


def test_exit_code_2_for_a_malformed_session_id(cli: Cli, acontext: FakeAcontext) -> None:
    run = cli("--resume", "abc", "hi")
    assert (run.code, run.stderr) == (2, "error: 'abc' is not a session id (a UUID)\n")
    assert acontext.requests == []


def test_exit_code_2_for_an_unknown_session(cli: Cli) -> None:
    unknown = str(uuid.uuid4())
    run = cli("--resume", unknown, "hi")
    assert (run.code, run.stderr) == (2, f"error: no Acontext session {unknown}\n")


def test_exit_code_2_for_a_rejected_acontext_key(cli: Cli, model: FakeOpenAI) -> None:
    model.responder = echo_responder
    run = cli("hi", env={"ACONTEXT_API_KEY": "sk-ac-wrong-key"})
    assert run.code == 2
    assert run.stdout == "echo: hi\n"
    assert "error: ACONTEXT_API_KEY was rejected" in run.stderr
    assert "sk-ac-wrong-key" not in run.stderr


def test_acontext_down_keeps_the_conversation_going_and_sync_sends_it_later(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai_basic.mirror, "STALL_SECONDS", 0.2)  # down is down: no 3 s wait
    acontext.stop()
    model.responder = echo_responder
    run = cli("hi")
    assert run.code == 1
    assert run.stdout == "echo: hi\n"
    assert f"Acontext unreachable at {acontext.base_url}" in run.stderr
    assert "acontext server up" in run.stderr
    assert "2 messages wait in " in run.stderr and "`agent sync`" in run.stderr
    assert "Traceback" not in run.stderr

    acontext.restart()
    synced = cli("sync")
    assert (synced.code, synced.stderr.splitlines()[-1]) == (
        0,
        "sent 2 messages; 0 still waiting; 0 held",
    )
    session_id = only_session(acontext)
    assert acontext.stored_messages(session_id) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "echo: hi"},
    ]
    again = cli("sync")
    assert again.stderr.splitlines()[-1] == "sent 0 messages; 0 still waiting; 0 held"
    assert len(acontext.stored_messages(session_id)) == 2


def test_tasks_command_shows_a_sessions_tasks(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = echo_responder
    session_id = json.loads(cli("--json", "book a table").stdout)["session_id"]
    run = cli("tasks", session_id)
    assert run.code == 0
    assert run.stdout == (
        "Tasks:\n1. [success] book a table\n   progress: Agent responded to: book a table\n"
    )
    unknown = cli("tasks", str(uuid.uuid4()))
    assert unknown.code == 2 and unknown.stderr.startswith("error: no Acontext session ")


def test_exit_code_1_when_the_model_fails_and_the_session_is_kept(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.script(*[error(500, "overloaded")] * 3)
    run = cli("hi")
    assert run.code == 1
    assert "error: OpenAI: HTTP 500: overloaded" in run.stderr
    session_id = only_session(acontext)
    assert f"agent --resume {session_id}" in run.stderr
    assert acontext.stored_messages(session_id) == [{"role": "user", "content": "hi"}]


def test_the_installed_script_shows_the_help(agent: AgentCommand) -> None:
    run = agent("--help")
    assert run.code == 0
    for option in ("--resume SESSION_ID", "--demo", "--json"):
        assert option in run.stdout


def test_ctrl_c_during_a_model_call_exits_130_and_keeps_the_session(
    agent: AgentCommand, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    import signal

    model.script(text("too late", delay=30))
    process = agent.start("hi")
    wait_for(lambda: bool(model.requests))
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 130
    session_id = only_session(acontext)
    assert (
        stderr.splitlines()[-1] == f"error: interrupted; resume with: agent --resume {session_id}"
    )
    assert "Traceback" not in stderr
    assert acontext.stored_messages(session_id) == [{"role": "user", "content": "hi"}]


def test_a_history_the_model_refuses_is_named_as_the_problem(cli: Cli, model: FakeOpenAI) -> None:
    refusal = (
        "An assistant message with 'tool_calls' must be followed by tool messages responding to "
        "each 'tool_call_id'. The following tool_call_ids did not have response messages: call_1"
    )
    model.script(error(400, refusal))
    run = cli("hi")
    assert run.code == 1
    assert run.stderr.splitlines()[-1] == (
        f"error: OpenAI: the stored conversation is not valid for the model ({refusal}); "
        "inspect it with: agent history SESSION_ID"
    )


def test_a_resumed_history_the_model_server_finds_invalid_is_named(
    cli: Cli, acontext: FakeAcontext
) -> None:
    session_id = acontext.add_session(
        configs={"agent": "openai-basic"},
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "call_9", "content": "orphan"},
        ],
    )
    run = cli("--resume", session_id, "go on")
    assert run.code == 1
    assert run.stderr.splitlines()[-1] == (
        "error: OpenAI: the stored conversation is not valid for the model (Invalid parameter: "
        "messages with role 'tool' must be a response to a preceding message with 'tool_calls' "
        "(messages[2] answers 'call_9', but the message before it is not an assistant message "
        "with tool_calls).); inspect it with: agent history SESSION_ID"
    )


@pytest.mark.parametrize(
    "refusal, code, line",
    [
        (
            "registry.ollama.ai/library/gemma:2b does not support tools",
            2,
            "error: model 'gpt-4o-mini' rejected the tools (registry.ollama.ai/library/gemma:2b "
            "does not support tools); choose a model with tool calling (OPENAI_MODEL)",
        ),
        (
            "Invalid schema for function 'look_up': 'additionalProperties' is required",
            1,
            "error: OpenAI: HTTP 400: Invalid schema for function 'look_up': "
            "'additionalProperties' is required",
        ),
    ],
    ids=["no-tool-calling", "a-schema-problem"],
)
def test_only_a_model_without_tool_calling_is_told_to_choose_another(
    cli: Cli, model: FakeOpenAI, refusal: str, code: int, line: str
) -> None:
    model.script(error(400, refusal))
    run = cli("hi")
    assert (run.code, run.stderr.splitlines()[-1]) == (code, line)


def test_a_key_that_cannot_go_in_a_header_exits_2_with_one_line(cli: Cli) -> None:
    run = cli("hi", env={"OPENAI_API_KEY": "sk-tést"})
    assert (run.code, run.stderr) == (
        2,
        "error: OPENAI_API_KEY contains characters that cannot be sent in an HTTP header "
        "(non-ASCII or control characters); check .env and the environment\n",
    )


def test_a_dotenv_that_is_not_utf8_is_used_with_a_note(
    cli: Cli, model: FakeOpenAI, tmp_path: Path
) -> None:
    model.responder = echo_responder
    (tmp_path / ".env").write_bytes(b"# cl\xe9 OpenAI\nOPENAI_MODEL=gpt-caf\xe9\n")
    run = cli("hi")
    assert run.code == 0, run.stderr
    note = f"note: bytes in {tmp_path / '.env'} that are not UTF-8 were replaced with \ufffd\n"
    assert run.stderr.startswith(note) and run.stderr.count(note) == 1
    assert model.requests[0]["model"] == "gpt-caf\ufffd"
