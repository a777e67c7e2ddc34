"""Going on with a session without its id: ``--continue`` takes this agent's newest."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

import openai_basic.mirror
from openai_basic.settings import Settings
from tests.conftest import Run
from tests.fakes.acontext_server import FakeAcontext
from tests.fakes.openai_server import FakeOpenAI, echo_responder

Cli = Callable[..., Run]


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
