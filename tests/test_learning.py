"""Learn and recall (issue 11): a session attached to a learning space, the skills Acontext
learns from it, and the next session's model given those skills, run as a user runs the agent
against both fakes."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from acontext import AcontextClient

import openai_basic.mirror
from openai_basic.errors import ServiceError
from openai_basic.journal import Journal
from openai_basic.learning import space_for
from openai_basic.settings import project_name
from openai_basic.skills import write_skill_file
from tests.conftest import Run, wait_for
from tests.fakes.acontext_server import FakeAcontext
from tests.fakes.openai_server import FakeOpenAI, ToolCallSpec, echo_responder, text, tool_calls
from tests.tools import forecast

Cli = Callable[..., Run]

PREFERENCE = "Find me the cheapest flight to Oslo on Friday. I prefer aisle seats."
LEARNED = "cheapest-flight"  # the fake's skill writer names a skill by the task's first words
LEARNED_DESCRIPTION = (
    "Cheapest Flight: the user's stated preferences and the tasks done for the user"
)
AGAIN = "Find me the cheapest flight to Bergen next week."
SKILL_TOOLS = ["get_skill", "get_skill_file"]
LEARN = {"AGENT_LEARN": "true"}


def learning_requests(acontext: FakeAcontext) -> list[str]:
    return [
        f"{r.method} {r.path}"
        for r in acontext.requests
        if r.path.startswith(("/learning_spaces", "/agent_skills"))
    ]


def tool_names(request: dict[str, Any]) -> list[str]:
    return [tool["function"]["name"] for tool in request.get("tools", [])]


def only_session(acontext: FakeAcontext) -> str:
    (session_id,) = acontext.session_ids()
    return session_id


@pytest.fixture
def sdk(acontext: FakeAcontext) -> Iterator[AcontextClient]:
    with AcontextClient(api_key=acontext.api_key, base_url=acontext.base_url, timeout=5) as sdk:
        yield sdk


def first_run(cli: Cli, model: FakeOpenAI, *args: str) -> Run:
    model.script(text("The cheapest is SAS at 7:05, aisle seat 14C."))
    return cli(*args, PREFERENCE, tools=[forecast], env=LEARN)


# -- the two runs --------------------------------------------------------------------------


def test_run_one_prints_the_tasks_then_the_skill_learned_from_the_preference(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    run = first_run(cli, model)
    assert run.code == 0, run.stderr
    assert run.stdout == (
        "The cheapest is SAS at 7:05, aisle seat 14C.\n"
        "Tasks:\n"
        f"1. [success] {PREFERENCE}\n"
        f"   progress: Agent responded to: {PREFERENCE}\n"
        f"   preference: {PREFERENCE}\n"
        "Skills learned:\n"
        f"  {LEARNED} (created): {LEARNED_DESCRIPTION}\n"
    )
    session_id = only_session(acontext)
    assert acontext.learning.learned_before_first_message(session_id)
    assert acontext.learning.record(session_id).status == "completed"
    assert "Acontext is learning from the session: completed" in run.stderr
    # the session keeps the user's own system prompt; only the model's has the skills
    assert acontext.session(session_id).configs["system_prompt"] == "You are a test assistant."


def test_run_two_recalls_the_skill_and_reads_it_through_the_sdk_tools(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    assert first_run(cli, model).code == 0
    asked = len(model.requests)
    model.script(
        tool_calls(ToolCallSpec("get_skill", json.dumps({"skill_name": LEARNED}), id="c1")),
        tool_calls(
            ToolCallSpec(
                "get_skill_file",
                json.dumps({"skill_name": LEARNED, "file_path": "SKILL.md"}),
                id="c2",
            )
        ),
        text("Booked, aisle seat as you like."),
    )
    run = cli(AGAIN, tools=[forecast], env=LEARN)
    assert run.code == 0, run.stderr

    first, second, third = model.requests[asked:]
    system = first["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("You are a test assistant.\n\n")
    assert (
        f"<name>{LEARNED}</name>\n<description>{LEARNED_DESCRIPTION}</description>"
        in (system["content"])
    )
    assert tool_names(first) == ["forecast", *SKILL_TOOLS]
    skill_tools = [tool["function"] for tool in first["tools"][1:]]
    assert all("strict" not in tool for tool in skill_tools)  # the SDK's schemas, as they are

    got_skill = second["messages"][-1]
    assert got_skill["tool_call_id"] == "c1"
    assert got_skill["content"].startswith(f"Skill: {LEARNED} (ID: ")
    assert "  - SKILL.md (text/markdown)" in got_skill["content"]
    got_file = third["messages"][-1]
    assert got_file["content"].startswith(
        f"File 'SKILL.md' (MIME: text/markdown) from skill '{LEARNED}':\n\nContent (type: text):\n"
    )
    assert f"- {PREFERENCE}" in got_file["content"]  # the preference run 1 stated

    assert f'  tool get_skill({{"skill_name": "{LEARNED}"}}) ' in run.stderr
    session_id = acontext.session_ids()[-1]
    stored = acontext.stored_messages(session_id)
    assert [m["content"] for m in stored if m["role"] == "tool"] == [
        got_skill["content"],
        got_file["content"],
    ]
    # the second run learned in the same space: the skill was updated in place
    assert f"  {LEARNED} (updated): {LEARNED_DESCRIPTION}" in run.stdout


def test_with_learning_off_nothing_touches_a_learning_space(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.script(text("SAS at 7:05."), text("Booked."))
    assert cli(PREFERENCE, tools=[forecast]).code == 0
    run = cli(AGAIN, tools=[forecast])
    assert run.code == 0
    assert learning_requests(acontext) == []
    assert [tool_names(request) for request in model.requests] == [["forecast"], ["forecast"]]
    assert model.requests[-1]["messages"][0]["content"] == "You are a test assistant."
    assert "Skills" not in run.stdout
    model.responder = echo_responder
    assert "skills" not in json.loads(cli("--json", "hi").stdout)


def test_acontext_down_during_run_one_then_sync_sends_the_learn_first_and_learning_completes(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai_basic.mirror, "STALL_SECONDS", 0.2)
    acontext.stop()
    run = first_run(cli, model)
    assert run.code == 1  # messages unsent, as without learning
    assert run.stdout == "The cheapest is SAS at 7:05, aisle seat 14C.\n"
    assert "acontext: cannot recall skills: Acontext: cannot reach" in run.stderr
    assert "Acontext learns from this session once it is sent" in run.stderr
    assert tool_names(model.requests[0]) == ["forecast"]  # no skills could be recalled

    acontext.restart()
    acontext.auto_process = True  # as the real server's idle buffer processes what is stored
    synced = cli("sync")
    assert synced.code == 0, synced.stderr
    session_id = only_session(acontext)
    assert acontext.learning.learned_before_first_message(session_id)
    assert learning_requests(acontext)[:2] == [
        "POST /learning_spaces",
        f"POST /learning_spaces/{acontext.learning.record(session_id).space_id}/learn",
    ]
    acontext.learning.finish(session_id)  # time passes
    assert acontext.learning.record(session_id).status == "completed"
    listed = cli("skills")
    assert listed.code == 0, listed.stderr
    assert f"{LEARNED}: {LEARNED_DESCRIPTION}" in listed.stdout.splitlines()


def test_json_has_the_skills_field(cli: Cli, model: FakeOpenAI, acontext: FakeAcontext) -> None:
    run = first_run(cli, model, "--json")
    assert run.code == 0, run.stderr
    payload = json.loads(run.stdout)
    (skill,) = payload["skills"]
    assert (skill["name"], skill["description"], skill["change"]) == (
        LEARNED,
        LEARNED_DESCRIPTION,
        "created",
    )
    assert payload["learning"]["status"] == "completed"
    assert payload["learning"]["problem"] == ""


def test_the_space_is_made_once_and_remembered_per_user(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = echo_responder
    for args in (("hi",), ("again",), ("--user", "alice", "hi")):
        assert cli("--learn", *args).code == 0
    created = [r for r in acontext.requests if f"{r.method} {r.path}" == "POST /learning_spaces"]
    tag = project_name()  # this project's name: a copy's own
    assert [r.body for r in created] == [
        {"meta": {"agent": tag}},
        {"user": "alice", "meta": {"agent": tag}},
    ]
    spaces = {acontext.learning.record(s).space_id for s in acontext.session_ids()}
    assert len(spaces) == 2


# -- errors ---------------------------------------------------------------------------------


def test_a_malformed_space_id_is_a_usage_error_before_anything(
    cli: Cli, acontext: FakeAcontext
) -> None:
    run = cli("--learn", "hi", env={"AGENT_LEARNING_SPACE": "my-space"})
    assert (run.code, run.stderr) == (
        2,
        "error: AGENT_LEARNING_SPACE must be a learning space id (a UUID), not 'my-space'\n",
    )
    assert acontext.requests == []


def test_an_unknown_space_is_one_line_and_exit_1_with_the_conversation_stored(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    unknown = str(uuid.uuid4())
    model.script(text("The cheapest is SAS."))
    run = cli(PREFERENCE, env={**LEARN, "AGENT_LEARNING_SPACE": unknown})
    assert run.code == 1
    session_id = acontext.session_ids()[-1]
    assert len(acontext.stored_messages(session_id)) == 2
    assert run.stdout.startswith("The cheapest")
    problem = (
        f"session {session_id} was not attached to learning space {unknown}: "
        "learning space not found"
    )
    assert run.stderr.endswith(f"error: {problem}\n")
    assert run.stderr.count(unknown) == 1  # one line, the last


@pytest.mark.parametrize(
    "timeline, wait, problem",
    [
        (("skill_writing", "failed"), "60", "Acontext failed to learn from session {}"),
        (
            (),
            "0.3",
            "learning from session {} did not finish within 0.3 s (last status: pending); "
            "see its skills later with: agent skills",
        ),
    ],
)
def test_learning_that_fails_or_times_out_is_one_line_and_exit_1(
    cli: Cli,
    model: FakeOpenAI,
    acontext: FakeAcontext,
    timeline: tuple[str, ...],
    wait: str,
    problem: str,
) -> None:
    acontext.learning.timeline = timeline
    model.script(text("SAS at 7:05."))
    run = cli(PREFERENCE, env={**LEARN, "AGENT_LEARN_WAIT_SECONDS": wait})
    assert run.code == 1
    session_id = only_session(acontext)
    assert run.stdout.startswith(f"SAS at 7:05.\nTasks:\n1. [success] {PREFERENCE}\n")
    assert "Skills" not in run.stdout
    assert run.stderr.endswith(f"error: {problem.format(session_id)}\n")
    assert len(acontext.stored_messages(session_id)) == 2


def test_an_empty_space_is_said_and_gives_the_model_no_skill_tools(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext, sdk: AcontextClient
) -> None:
    space = sdk.learning_spaces.create()
    for skill in sdk.learning_spaces.list_skills(space.id):
        sdk.learning_spaces.exclude_skill(space.id, skill_id=skill.id)
    env = {"AGENT_LEARNING_SPACE": space.id}
    listed = cli("skills", env=env)
    assert (listed.code, listed.stdout) == (0, f"Learning space {space.id} has no skills yet.\n")

    model.script(text("SAS at 7:05."))
    run = cli("--learn", PREFERENCE, env=env)
    assert run.code == 0, run.stderr
    assert f"learning space {space.id} has no skills yet" in run.stderr
    assert not set(SKILL_TOOLS) & set(tool_names(model.requests[0]))
    assert run.stdout.endswith(f"Skills learned:\n  {LEARNED} (created): {LEARNED_DESCRIPTION}\n")


# -- the commands ---------------------------------------------------------------------------


def test_skills_lists_shows_and_pulls(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext, tmp_path: Path
) -> None:
    assert cli("skills").stderr == (
        "error: no learning space yet: run `agent --learn` once to make one, "
        "or set AGENT_LEARNING_SPACE\n"
    )
    assert first_run(cli, model).code == 0
    listed = cli("skills")
    assert listed.code == 0
    assert [line.split(":")[0] for line in listed.stdout.splitlines()] == [
        "daily-logs",
        "user-general-facts",
        LEARNED,
    ]
    as_json = json.loads(cli("skills", "--json").stdout)
    assert [skill["files"] for skill in as_json["skills"]] == [["SKILL.md"]] * 3

    shown = cli("skills", "show", LEARNED)
    assert shown.code == 0
    assert shown.stdout.startswith(f'---\nname: "{LEARNED}"\n')
    assert f"- {PREFERENCE}\n" in shown.stdout
    unknown = cli("skills", "show", "nope")
    assert unknown.code == 2
    assert unknown.stderr.startswith("error: no skill 'nope' in learning space ")

    pulled = cli("skills", "pull", "skills")
    assert pulled.code == 0, pulled.stderr
    assert sorted(
        p.relative_to(tmp_path / "skills").as_posix() for p in (tmp_path / "skills").rglob("*")
    ) == [
        "cheapest-flight",
        "cheapest-flight/SKILL.md",
        "daily-logs",
        "daily-logs/SKILL.md",
        "user-general-facts",
        "user-general-facts/SKILL.md",
    ]
    assert (tmp_path / "skills" / LEARNED / "SKILL.md").read_text() == shown.stdout
    shown_json = json.loads(cli("skills", "show", LEARNED, "--json").stdout)
    assert shown_json["skill_md"] == shown.stdout
    one = json.loads(cli("skills", "pull", "one", "--skill", LEARNED, "--json").stdout)
    assert one["pulled"] == {LEARNED: str(Path("one") / LEARNED)}
    assert (tmp_path / "one" / LEARNED / "SKILL.md").read_text() == shown.stdout
    assert cli("skills", "show").code == 2


@pytest.mark.parametrize("path", ["../escape.md", "/etc/passwd", "a/../../b", "a\\..\\b", ""])
def test_a_skill_file_path_that_leaves_its_folder_is_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(ServiceError, match="leaves its folder"):
        write_skill_file(tmp_path / "skill", path, b"x")
    assert list(tmp_path.rglob("*")) == []


def test_the_chat_attaches_with_learn_and_lists_with_skills(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = echo_responder
    run = cli(input=b"/skills\n/learn\nhello\n/learn\n/skills\n", terminal=True)
    assert run.code == 0, run.stderr
    assert "no learning space yet: /learn makes one with this session" in run.stderr
    assert "this session is attached to the learning space: Acontext learns" in run.stderr
    assert "this session is attached to the learning space already" in run.stderr
    session_id = only_session(acontext)
    assert acontext.learning.learned_before_first_message(session_id)
    assert "daily-logs: Track daily activity logs" in run.stdout
    assert tool_names(model.requests[0])[-2:] == SKILL_TOOLS


def test_the_demo_shows_recall_when_learning(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    acontext.learning.skill_namer = lambda task: "travel-planning"
    model.responder = echo_responder
    run = cli("--demo", "--learn")
    assert run.code == 0, run.stderr
    assert "demo: a new session in the same learning space, with what was learned" in run.stderr
    assert "  travel-planning (created): " in run.stdout
    last = model.requests[-1]
    assert "<name>travel-planning</name>" in last["messages"][0]["content"]
    assert tool_names(last)[-2:] == SKILL_TOOLS


def test_a_resumed_session_is_attached_before_its_new_messages(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = echo_responder
    session_id = json.loads(cli("--json", "hello").stdout)["session_id"]
    before = len(acontext.requests)
    run = cli("--learn", "--resume", session_id, "I prefer window seats.")
    assert run.code == 0, run.stderr
    space_id = acontext.learning.record(session_id).space_id
    later = [f"{r.method} {r.path}" for r in acontext.requests[before:]]
    learned = later.index(f"POST /learning_spaces/{space_id}/learn")
    assert learned < later.index(f"POST /session/{session_id}/messages")
    assert acontext.learning.record(session_id).status == "completed"
    assert "\n  window-seats (created): " in run.stdout


def test_two_agents_in_one_folder_make_one_space(
    acontext: FakeAcontext, sdk: AcontextClient, tmp_path: Path
) -> None:
    journals = [Journal(tmp_path / ".agent") for _ in range(2)]  # as two processes open it
    found: list[str] = []

    def make(journal: Journal) -> None:
        found.append(space_for(sdk, journal, "alice", "openai-basic"))

    makers = [threading.Thread(target=make, args=(journal,)) for journal in journals]
    with acontext.holding():  # the first one's request stays in flight, its claim held
        makers[0].start()
        wait_for(lambda: any(r.path == "/learning_spaces" for r in acontext.requests))
        makers[1].start()
    for maker in makers:
        maker.join()
    assert [f"{r.method} {r.path}" for r in acontext.requests] == ["POST /learning_spaces"]
    assert found[0] == found[1] == journals[1].remembered_space("alice")


def test_sync_sends_a_learn_that_waits_alone(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext, tmp_path: Path
) -> None:
    model.responder = echo_responder
    session_id = json.loads(cli("--json", "hello").stdout)["session_id"]
    journal = Journal(tmp_path / ".agent")  # as `/learn` leaves it when Acontext is down
    journal.add_learn(session_id, None, "")
    journal.close()
    run = cli("sync")
    assert run.code == 0, run.stderr
    assert acontext.learning.record(session_id).status == "pending"


def test_sync_tells_a_learn_that_acontext_refuses_and_exits_1(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext, tmp_path: Path
) -> None:
    model.responder = echo_responder
    session_id = json.loads(cli("--json", "hello").stdout)["session_id"]
    unknown = str(uuid.uuid4())
    journal = Journal(tmp_path / ".agent")  # a learn journaled for a space deleted since
    journal.add_learn(session_id, unknown, "")
    journal.close()
    run = cli("sync")
    assert run.code == 1
    assert (
        f"acontext: session {session_id} was not attached to learning space {unknown}: "
        "learning space not found\n"
    ) in run.stderr
