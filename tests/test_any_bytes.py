"""Any bytes in, valid text on: undecodable input never crashes a run or poisons a session."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.conftest import AGENT, AgentCommand, Run
from tests.fakes.acontext_server import FakeAcontext
from tests.fakes.openai_server import FakeOpenAI, echo_responder, text

Cli = Callable[..., Run]
NOTE = "note: bytes in the input that are not UTF-8 were replaced with \ufffd"


def run_bytes(agent: AgentCommand, *args: bytes, stdin: bytes = b"", lang: str = "") -> Run:
    """The agent as a shell runs it: argv and stdin as raw bytes."""
    env = {**agent.env, **({"LANG": lang, "LC_ALL": lang} if lang else {})}
    done = subprocess.run(
        [os.fsencode(AGENT), *args],
        input=stdin,
        capture_output=True,
        env=env,
        cwd=agent.cwd,
        timeout=120,
    )
    return Run(done.returncode, done.stdout.decode(), done.stderr.decode())


def test_undecodable_stdin_lines_are_answered_and_the_session_resumes(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = echo_responder
    run = cli("--json", input=b"ok\nbad \xff line\nthird \xc3\n")
    assert run.code == 0, run.stderr
    payload = json.loads(run.stdout)
    assert payload["replies"] == ["echo: ok", "echo: bad \ufffd line", "echo: third \ufffd"]
    assert run.stderr.count(NOTE) == 1
    said = [m["content"] for m in acontext.stored_messages(payload["session_id"])]
    assert said[2:4] == ["bad \ufffd line", "echo: bad \ufffd line"]

    resumed = cli("--resume", payload["session_id"], "more")
    assert resumed.code == 0
    assert resumed.stdout.startswith("echo: more\nTasks:\n")


def test_latin1_stdin_under_the_c_locale_and_bytes_in_argv(
    agent: AgentCommand, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = echo_responder
    piped = run_bytes(agent, stdin=b"caf\xe9 au lait\n", lang="C")
    assert piped.code == 0, piped.stderr
    assert piped.stdout.startswith("echo: caf\ufffd au lait\nTasks:\n")
    assert "Traceback" not in piped.stderr

    argv = run_bytes(agent, b"na\xefve \xff")
    assert argv.code == 0, argv.stderr
    assert argv.stdout.startswith("echo: na\ufffdve \ufffd\nTasks:\n")
    assert "Traceback" not in argv.stderr
    stored = [acontext.stored_messages(s)[0]["content"] for s in acontext.session_ids()]
    assert stored == ["caf\ufffd au lait", "na\ufffdve \ufffd"]


def test_a_lone_surrogate_in_a_model_reply_is_replaced(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.script(text("half \ud83d of an emoji"), text("fine"))
    run = cli("--json", input=b"one\ntwo\n")
    assert run.code == 0, run.stderr
    payload = json.loads(run.stdout)
    assert payload["replies"] == ["half \ufffd of an emoji", "fine"]
    stored = acontext.stored_messages(payload["session_id"])
    assert stored[1] == {"role": "assistant", "content": "half \ufffd of an emoji"}
    assert model.requests[1]["messages"][-2]["content"] == "half \ufffd of an emoji"


def test_an_unencodable_row_left_by_an_older_version_is_repaired_when_sent(
    cli: Cli, agent: AgentCommand, acontext: FakeAcontext
) -> None:
    cli("sync")  # makes the journal
    session_id = "0b9a5a5e-7a52-4c1e-9a57-2f0e1f3c2a11"
    with sqlite3.connect(Path(agent.cwd) / ".agent" / "journal.sqlite3") as db:
        db.execute(
            "INSERT INTO sessions (id, configs, user) VALUES (?, ?, NULL)",
            (session_id, json.dumps({"agent": "openai-basic"})),
        )
        db.execute(  # what json.dumps wrote for a surrogate-escaped byte before this version
            "INSERT INTO messages (session_id, client_id, blob, meta) VALUES (?, ?, ?, ?)",
            (session_id, "c1", '{"role": "user", "content": "bad \\udcff byte"}', "{}"),
        )
    run = cli("sync")
    assert run.code == 0, run.stderr
    assert acontext.stored_messages(session_id) == [{"role": "user", "content": "bad \ufffd byte"}]
