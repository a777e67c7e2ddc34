"""Several processes, one journal: each message reaches its session once, in order (issue 8).

Agents, ``agent sync`` and a loop of syncs share one state folder, so one journal. Each agent is a
small driver around ``Conversation`` that prints its local history as JSON; at the end, after a
last ``agent sync`` with Acontext up, every session must hold exactly that history.

Processes wait at a gate until all of them have imported the SDKs (seconds each), so that they
really run at the same time.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AgentCommand, as_returned, wait_for
from tests.fakes.acontext_server import FakeAcontext
from tests.fakes.openai_server import FakeOpenAI
from tests.tools import look_up_then_answer

PROCESS_SECONDS = 180.0

# Prepended to every driver: import what takes seconds, say so, then wait for the gate to open.
_GATE = """
import time
from pathlib import Path

from openai_basic.preload import preload

preload("acontext")
Path(READY).touch()
while not Path(GO).exists():
    time.sleep(0.01)
"""

# One conversation, one prompt per line of stdin. Status lines go to LOG; stdout is the history.
_AGENT = """
import json, sys
from openai_basic.conversation import Conversation, make_registry
from openai_basic.errors import AgentError
from openai_basic.output import Output
from openai_basic.settings import load_settings


def look_up(city: str) -> str:
    '''Look up what is known about a city.

    Args:
        city: The city.
    '''
    return f"known about {city}"


settings = load_settings()
with open(LOG, "w", buffering=1) as log:
    out = Output(stream=False, stdout=log, stderr=log)
    tools = make_registry(settings, [look_up])  # its own tool: the samples may be replaced
    with Conversation(settings=settings, out=out, registry=tools) as conversation:
        for line in sys.stdin:
            if line.strip():
                conversation.turn(line.strip())
        mine = {"session_id": conversation.session_id, "history": conversation.history}
        print(json.dumps(mine), flush=True)
        try:  # the agent's own wait at exit takes part in the race
            conversation.finish()
        except AgentError as exc:
            out.error(f"finish: {exc}")
"""

# `agent sync`, again and again, until STOP exists.
_SYNC_LOOP = """
import contextlib, json, time
from pathlib import Path
from openai_basic.cli import main

codes = []
with open(LOG, "w", buffering=1) as log:
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        while not Path(STOP).exists():
            codes.append(main(["sync"]))
            time.sleep(0.02)
print(json.dumps({"runs": len(codes), "failed": sum(1 for code in codes if code)}))
"""

# `agent sync`, once.
_SYNC_ONCE = """
import sys
from openai_basic.cli import main

sys.exit(main(["sync"]))
"""


@dataclass(frozen=True)
class Driver:
    """A driver process and the files it talks through."""

    name: str
    process: Any
    ready: Path
    log: Path

    def finish(self) -> tuple[int, str, str]:
        stdout, stderr = self.process.communicate(timeout=PROCESS_SECONDS)
        return self.process.returncode, stdout, stderr

    def history(self) -> tuple[str, list[dict[str, Any]]]:
        code, stdout, stderr = self.finish()
        assert code == 0, f"{self.name} exited {code}: {stderr}\n{self.read_log()}"
        mine = json.loads(stdout.splitlines()[-1])
        return mine["session_id"], mine["history"]

    def read_log(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


class Processes:
    """Starts drivers in one folder (so one journal) behind one gate; kills what is left."""

    def __init__(self, agent: AgentCommand, folder: Path) -> None:
        env = {**agent.env, "AGENT_SYNC_WAIT_SECONDS": "120", "PYTHONDONTWRITEBYTECODE": "1"}
        self.agent = AgentCommand(env, agent.cwd)
        self.folder = folder
        self.stop = folder / "stop"
        self.started: list[Driver] = []
        folder.mkdir()

    def start(
        self, name: str, body: str, *, stdin: Any = subprocess.DEVNULL, go: str = "go"
    ) -> Driver:
        """Start a driver; it waits for the file ``go`` (in the folder) before its ``body``."""
        ready, log = self.folder / f"{name}.ready", self.folder / f"{name}.log"
        names = {"READY": ready, "GO": self.folder / go, "STOP": self.stop, "LOG": log}
        preamble = "".join(f"{key} = {str(path)!r}\n" for key, path in names.items())
        process = self.agent.start(command=preamble + _GATE + body, stdin=stdin)
        driver = Driver(name, process, ready, log)
        self.started.append(driver)
        return driver

    def agent_with(self, name: str, prompts: list[str]) -> Driver:
        """An agent with its prompts piped from a file."""
        path = self.folder / f"{name}.prompts"
        path.write_text("".join(f"{prompt}\n" for prompt in prompts))
        with path.open() as stdin:
            return self.start(name, _AGENT, stdin=stdin)

    def open_gate(self, go: str = "go") -> None:
        """Wait until every driver is ready, then let those waiting for ``go`` run."""

        def all_ready() -> bool:
            for driver in self.started:
                if driver.process.poll() is not None:
                    raise AssertionError(f"{driver.name} ended early: {driver.finish()}")
            return all(driver.ready.exists() for driver in self.started)

        wait_for(all_ready, PROCESS_SECONDS)
        (self.folder / go).touch()

    def final_sync(self) -> None:
        """`agent sync` once more, with everything else ended and Acontext up for good."""
        process = self.agent.start("sync")
        _, stderr = process.communicate(timeout=PROCESS_SECONDS)
        assert process.returncode == 0, stderr

    def kill_the_rest(self) -> None:
        for driver in self.started:
            if driver.process.poll() is None:
                driver.process.kill()
                driver.process.communicate()


@pytest.fixture
def processes(agent: AgentCommand, tmp_path: Path) -> Iterator[Processes]:
    started = Processes(agent, tmp_path / "processes")
    yield started
    started.kill_the_rest()


def mirror_problems(
    acontext: FakeAcontext, session_id: str, history: list[dict[str, Any]]
) -> list[str]:
    """What is wrong with a session compared with the agent's local history (nothing: [])."""
    expected = [as_returned(message) for message in history]
    stored = acontext.stored_messages(session_id)
    client_ids = Counter(meta.get("client_id") for meta in acontext.stored_metas(session_id))
    problems = []
    doubled = sum(count - 1 for count in client_ids.values())
    if doubled:
        problems.append(f"{doubled} stored more than once")
    lost = sum(1 for message in expected if message not in stored)
    if lost:
        problems.append(f"{lost} never stored")
    first_copies = [m for i, m in enumerate(stored) if m not in stored[:i]]
    if [m for m in first_copies if m in expected] != [m for m in expected if m in stored]:
        problems.append("stored out of order")
    problems += misplaced_tool_messages(stored)
    if problems:
        problems.insert(0, f"{len(stored)} stored for {len(expected)} local")
    elif stored != expected:  # e.g. a message the agent never had
        problems.append(f"stored {stored} is not local {expected}")
    return [f"session {session_id[:8]}: {problem}" for problem in problems]


def misplaced_tool_messages(stored: list[dict[str, Any]]) -> list[str]:
    """Each tool message must follow the assistant message that called it (or its siblings),
    and each tool call must be answered before anything else comes."""
    misplaced, interrupted = [], []
    open_calls: set[str] = set()
    for index, message in enumerate(stored):
        if message["role"] == "tool":
            if message["tool_call_id"] in open_calls:
                open_calls.discard(message["tool_call_id"])
            else:
                misplaced.append(f"#{index} ({message['tool_call_id']})")
            continue
        if open_calls:
            interrupted.append(f"#{index} ({', '.join(sorted(open_calls))})")
        open_calls = {call["id"] for call in message.get("tool_calls") or []}
    problems = []
    if misplaced:
        problems.append(f"{len(misplaced)} tool messages not after their call: {_few(misplaced)}")
    if interrupted:
        problems.append(f"{len(interrupted)} messages amid unanswered calls: {_few(interrupted)}")
    if open_calls:
        problems.append(f"calls never answered: {', '.join(sorted(open_calls))}")
    return problems


def _few(items: list[str]) -> str:
    return ", ".join(items[:4]) + (", ..." if len(items) > 4 else "")


def test_two_agents_and_a_sync_loop_store_each_message_once_in_order(
    processes: Processes, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = look_up_then_answer
    acontext.latency_range = (0.05, 0.3)
    acontext.random.seed(8)
    agents = [
        processes.agent_with(name, [f"{name} city {i}" for i in range(4)])
        for name in ("alpha", "beta")
    ]
    sync_loop = processes.start("sync-loop", _SYNC_LOOP)
    processes.open_gate()

    histories = [agent.history() for agent in agents]
    processes.stop.touch()
    code, stdout, stderr = sync_loop.finish()
    assert code == 0, stderr
    assert json.loads(stdout)["runs"] >= 1
    processes.final_sync()

    assert [len(history) for _, history in histories] == [16, 16]
    problems = [p for sid, history in histories for p in mirror_problems(acontext, sid, history)]
    assert not problems, "\n" + "\n".join(problems)


def test_sync_racing_a_recovering_writer_sends_each_message_once(
    processes: Processes, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    model.responder = look_up_then_answer
    acontext.latency_range = (0.05, 0.3)
    acontext.random.seed(9)
    acontext.stop()
    reading, writing = os.pipe()  # the agent's stdin stays open until Acontext is back
    talker = processes.start("talker", _AGENT, stdin=reading)
    os.close(reading)
    syncer = processes.start("syncer", _SYNC_ONCE, go="acontext-back")
    processes.open_gate()
    os.write(writing, "".join(f"city {i}\n" for i in range(4)).encode())
    # the last turn is answered, so every message waits in the journal, and the agent's writer
    # has said that it cannot send them
    wait_for(lambda: "done: known about city 3" in talker.read_log(), PROCESS_SECONDS)
    wait_for(lambda: "acontext: " in talker.read_log(), PROCESS_SECONDS)

    acontext.restart()  # the writer recovers at its next retry, while `agent sync` starts
    processes.open_gate("acontext-back")
    os.close(writing)

    session_id, history = talker.history()
    syncer.finish()
    processes.final_sync()

    assert len(history) == 16
    problems = mirror_problems(acontext, session_id, history)
    assert not problems, "\n" + "\n".join(problems)


@pytest.mark.soak
def test_soak_three_agents_one_journal_while_acontext_flaps(
    processes: Processes, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    # a model that takes its time, so that the conversations go on across many outages
    model.responder = lambda messages: replace(look_up_then_answer(messages), delay=0.1)
    acontext.latency_range = (0.0, 0.05)
    acontext.random.seed(10)
    agents = [
        processes.agent_with(name, [f"{name} city {i}" for i in range(30)])
        for name in ("alpha", "beta", "gamma")
    ]
    sync_loop = processes.start("sync-loop", _SYNC_LOOP)
    processes.open_gate()

    # Outages outlast the latency: a store cut by an outage lands before the fake answers anyone
    # again, as a write a real server committed before it went down.
    with acontext.flapping(up=(0.2, 0.8), down=(0.1, 0.5), seed=10) as outages:
        histories = [agent.history() for agent in agents]
        processes.stop.touch()
        sync_loop.finish()
    processes.final_sync()

    assert len(outages) >= 3
    assert [len(history) for _, history in histories] == [120, 120, 120]
    problems = [p for sid, history in histories for p in mirror_problems(acontext, sid, history)]
    assert not problems, "\n" + "\n".join(problems)
