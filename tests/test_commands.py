"""The commands beside the chat, and the chat's own flags, run as a user runs them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

from openai_basic.settings import Settings
from tests.conftest import Run
from tests.fakes.acontext_server import FakeAcontext
from tests.fakes.openai_server import FakeOpenAI, echo_responder, error, text, tool_calls

Cli = Callable[..., Run]


def forecast(city: str) -> str:
    """Tell the weather in a city.

    Args:
        city: the city
    """
    return f"Sunny in {city}, 21 degrees."


def test_sessions_lists_this_agents_sessions_newest_first(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = echo_responder
    first = json.loads(cli("--json", "plan a trip to Oslo").stdout)["session_id"]
    second = json.loads(cli("--json", "book a table for two").stdout)["session_id"]
    acontext.add_session(
        configs={"agent": "someone-else"}, messages=[{"role": "user", "content": "x"}]
    )
    run = cli("sessions")
    assert run.code == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [second, first]
    assert lines[0].endswith("2 messages  book a table for two")
    listed = json.loads(cli("sessions", "--json").stdout)["sessions"]
    assert [(s["id"], s["messages"], s["first_message"], s["model"]) for s in listed] == [
        (second, 2, "book a table for two", "gpt-4o-mini"),
        (first, 2, "plan a trip to Oslo", "gpt-4o-mini"),
    ]


def test_sessions_when_there_are_none(cli: Cli) -> None:
    run = cli("sessions")
    assert (run.code, run.stdout) == (0, "No sessions yet. Start one with: agent\n")


def test_one_message_is_counted_as_one(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext, settings: Settings
) -> None:
    session_id = acontext.add_session(
        configs={"agent": settings.session_tag}, messages=[{"role": "user", "content": "hi"}]
    )
    assert cli("sessions").stdout.endswith("    1 message  hi\n")
    model.responder = echo_responder
    resumed = cli("--resume", session_id, "go on")
    assert f"resumed session {session_id} (1 message)\n" in resumed.stderr
    assert cli("sync").stderr == "sent 0 messages; 0 still waiting; 0 held\n"


def test_history_renders_the_transcript_with_tool_calls(cli: Cli, model: FakeOpenAI) -> None:
    model.script(tool_calls(("forecast", '{"city": "Oslo"}')), text("Sunny in Oslo."))
    session_id = json.loads(cli("--json", "weather in Oslo?", tools=[forecast]).stdout)[
        "session_id"
    ]
    run = cli("history", session_id)
    assert run.code == 0, run.stderr
    assert run.stdout.splitlines() == [
        "you: weather in Oslo?",
        '  → forecast({"city": "Oslo"})',
        "  ← Sunny in Oslo, 21 degrees.",
        "assistant: Sunny in Oslo.",
    ]


def test_history_of_an_unknown_session_is_a_usage_error(cli: Cli) -> None:
    unknown = str(uuid.uuid4())
    run = cli("history", unknown)
    assert (run.code, run.stderr) == (2, f"error: no Acontext session {unknown}\n")


def test_doctor_passes_when_everything_works(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext, tmp_path: Path
) -> None:
    model.script(tool_calls(("ping", "{}")))
    run = cli("doctor")
    assert run.code == 0, run.stdout
    assert "  OPENAI_API_KEY        …" in run.stdout  # too short to show any of it
    assert "sk-test" not in run.stdout and "sk-ac-test" not in run.stdout
    assert "  AGENT_LEARN           off (--learn turns it on)" in run.stdout
    assert run.stdout.splitlines()[-6:] == [
        "checks",
        f"  ok    journal in {tmp_path / '.agent'}: not created yet",
        f"  ok    Acontext reachable and key accepted at {acontext.base_url}",
        "  ok    OpenAI key accepted",
        "  ok    model 'gpt-4o-mini' accepted",
        "  ok    tool calling",
    ]
    assert model.requests[0]["tool_choice"] == "required"


def test_doctor_says_what_to_fix(cli: Cli, model: FakeOpenAI, acontext: FakeAcontext) -> None:
    acontext.stop()
    model.api_key = "sk-another-key"
    run = cli("doctor", env={"OPENAI_API_KEY": "sk-wrong-key-1234"})
    assert run.code == 1
    checks = run.stdout.splitlines()[-2:]
    assert checks[0].startswith(
        "  FAIL  Acontext reachable and key accepted: Acontext: cannot reach"
    )
    assert "acontext server up" in checks[0]
    assert checks[1] == "  FAIL  OpenAI key accepted: rejected: check OPENAI_API_KEY"
    assert "  OPENAI_API_KEY        sk-…1234" in run.stdout
    assert "sk-wrong-key-1234" not in run.stdout + run.stderr


def test_doctor_flags_a_model_without_tool_calling(cli: Cli, model: FakeOpenAI) -> None:
    model.script(text("pong"))
    run = cli("doctor")
    assert run.code == 1
    assert run.stdout.splitlines()[-1] == (
        "  FAIL  tool calling: the model answered without calling the tool: "
        "pick a model with tool calling"
    )


def test_doctor_flags_an_unknown_model(cli: Cli, model: FakeOpenAI) -> None:
    model.script(error(404, "The model `gpt-9` does not exist"))
    run = cli("doctor", env={"OPENAI_MODEL": "gpt-9"})
    assert run.code == 1
    assert run.stdout.splitlines()[-1] == (
        "  FAIL  model 'gpt-9' accepted: not found: set OPENAI_MODEL to a model you have"
    )


def test_doctor_without_an_openai_key(cli: Cli, model: FakeOpenAI) -> None:
    run = cli("doctor", env={"OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""})
    assert run.code == 1
    assert "  OPENAI_API_KEY        (not set)" in run.stdout
    assert run.stdout.splitlines()[-1].startswith(
        "  FAIL  OpenAI key accepted: OPENAI_API_KEY is not set"
    )
    assert model.requests == []


def test_doctor_flags_the_placeholder_key(cli: Cli, model: FakeOpenAI) -> None:
    run = cli("doctor", env={"OPENAI_API_KEY": "sk-...", "OPENAI_BASE_URL": ""})
    assert run.code == 1
    assert "  OPENAI_API_KEY        sk-... (the placeholder from .env.example)" in run.stdout
    assert run.stdout.splitlines()[-1] == (
        "  FAIL  OpenAI key accepted: "
        "OPENAI_API_KEY is the placeholder sk-... from .env.example: put your key in .env"
    )
    assert model.requests == []


def test_user_model_and_system_flags_shape_the_new_session(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext, tmp_path: Path
) -> None:
    model.responder = echo_responder
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text("You are a pirate.\n")
    run = cli("--user", "alice", "--model", "gpt-test", "--system-file", str(prompt_file), "hi")
    assert run.code == 0, run.stderr
    (session_id,) = acontext.session_ids()
    session = acontext.session(session_id)
    assert session.user == "alice"
    assert session.configs["model"] == "gpt-test"
    assert session.configs["system_prompt"] == "You are a pirate."
    assert model.requests[0]["model"] == "gpt-test"
    assert model.requests[0]["messages"][0] == {"role": "system", "content": "You are a pirate."}
    cli("--system", "Be terse.", "hi")
    assert model.requests[-1]["messages"][0] == {"role": "system", "content": "Be terse."}


def test_a_missing_system_file_is_a_usage_error(cli: Cli) -> None:
    run = cli("--system-file", "nope.txt", "hi")
    assert run.code == 2
    assert run.stderr.startswith("error: cannot read --system-file nope.txt")


def test_usage_is_shown_per_turn_and_for_the_session(cli: Cli, model: FakeOpenAI) -> None:
    model.script(
        tool_calls(("forecast", '{"city": "Oslo"}'), usage=(100, 10)),
        text("ok", usage=(150, 20)),
    )
    model.script(text("again", usage=(50, 5)))
    run = cli("--json", input=b"first\nsecond\n", tools=[forecast])
    assert run.code == 0, run.stderr
    lines = run.stderr.splitlines()
    assert [line.split(",")[0] for line in lines if line.startswith(("turn:", "session:"))] == [
        "turn: 250 in / 30 out tokens",
        "turn: 50 in / 5 out tokens",
        "session: 300 in / 35 out tokens",
    ]
    usage = json.loads(run.stdout)["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["model_calls"]) == (
        300,
        35,
        3,
    )


def test_one_turn_shows_its_usage_once(cli: Cli, model: FakeOpenAI) -> None:
    model.script(text("ok", usage=(40, 4)))
    run = cli("hi")
    assert run.code == 0, run.stderr
    usage = [line for line in run.stderr.splitlines() if line.startswith(("turn:", "session:"))]
    assert [line.split(",")[0] for line in usage] == ["turn: 40 in / 4 out tokens"]


def test_doctor_masks_keys_in_the_user_info_of_urls(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    acontext.stop()  # the error line names the URL too
    run = cli(
        "doctor",
        env={
            "ACONTEXT_BASE_URL": acontext.base_url.replace("://", "://user:sk-ac-secret-in-url@"),
            "OPENAI_BASE_URL": model.base_url.replace("://", "://sk-openai-secret-in-url@"),
        },
    )
    assert "secret-in-url" not in run.stdout + run.stderr
    masked = acontext.base_url.replace("://", "://…@")
    assert f"  OPENAI_BASE_URL       {model.base_url.replace('://', '://…@')}" in run.stdout
    assert f"  ACONTEXT_BASE_URL     {masked}" in run.stdout
    assert f"Acontext: cannot reach {masked} (" in run.stdout


def test_a_system_file_that_is_not_utf8_is_used_with_a_note(
    cli: Cli, model: FakeOpenAI, tmp_path: Path
) -> None:
    model.responder = echo_responder
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_bytes(b"be brief \xff\n")
    run = cli("--system-file", str(prompt_file), "hi")
    assert run.code == 0
    note = (
        f"note: bytes in --system-file {prompt_file} that are not UTF-8 were replaced with \ufffd\n"
    )
    assert run.stderr.startswith(note) and run.stderr.count(note) == 1
    assert model.requests[0]["messages"][0] == {"role": "system", "content": "be brief \ufffd"}
