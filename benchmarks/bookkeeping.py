"""Target 6: what the agent itself spends per message, with the model, tools and network at zero.

``run_agent`` runs conversations of N turns (user -> tool call -> tool result -> answer: four
messages a turn) against the in-process stub model and an instant tool. From the wall time of the
turns the stub's and the tool's own time is subtracted, and the rest divided by the messages.

* ours: sink = ``AcontextMirror`` (journal in a temp dir; its background writer sends to the fake
  Acontext, which runs in the harness process);
* baseline: sink = a plain list (mirroring off).

Both run in one child process, interleaved, after a warm-up. The writer's work counts where it
competes with the loop for the interpreter (the GIL), as it would in the agent.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import (
    MODEL,
    SYSTEM_PROMPT,
    Plan,
    Row,
    child_main,
    make_settings,
    median,
    run_child,
    scratch_dir,
)

LIMIT_MS = 1.0
MESSAGES_PER_TURN = 4


def measure(plan: Plan) -> list[Row]:
    from tests.fakes.acontext_server import start_fake_acontext

    with start_fake_acontext() as fake:
        config = {
            "url": fake.base_url,
            "key": fake.api_key,
            "turns": plan.loop_turns,
            "runs": plan.loop_runs,
        }
        result = run_child("bookkeeping", config, timeout=180)
        expected = MESSAGES_PER_TURN * plan.loop_turns
        complete = all(len(fake.stored_messages(s)) == expected for s in result["sessions"])
    ours, baseline = median(result["mirror"]), median(result["list"])
    cpu, list_cpu = median(result["mirror_cpu"]), median(result["list_cpu"])
    return [
        Row(
            name="per-message bookkeeping of run_agent (mirror sink)",
            ours=ours,
            baseline=baseline,
            baseline_name="same loop, plain list sink",
            target=f"< {LIMIT_MS:g} ms/msg",
            passed=ours < LIMIT_MS and complete,
            unit="ms/msg",
            note=(
                f"{plan.loop_turns} turns x {MESSAGES_PER_TURN} msgs a run; main-thread CPU "
                f"{cpu:.3f} ms/msg (list sink {list_cpu:.3f}); all mirrored: "
                + ("yes" if complete else "NO")
            ),
            samples=result,
        )
    ]


# -- the child ----------------------------------------------------------------------------------


class _ListSink:
    """Mirroring off: the messages go to a list and nowhere else."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def append(self, message: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
        self.messages.append(message)


class _InstantTool:
    """A tool that answers at once and keeps count of its own time."""

    def __init__(self) -> None:
        self.seconds = 0.0

        def get_weather(city: str) -> str:
            """Get the current weather in a city (benchmark tool: instant).

            Args:
                city: The city name.
            """
            started = time.perf_counter()
            answer = f"The weather in {city} is sunny, 20 degrees Celsius."
            self.seconds += time.perf_counter() - started
            return answer

        self.function = get_weather


def _child(config: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.stub_model import completion
    from openai_basic.acontext_api import load_sdk

    load_sdk()  # imported before timing, as in a running agent
    turns, runs = config["turns"], max(1, config["runs"])
    tool_turn = completion(None, [("call_1", "get_weather", '{"city": "Helsinki"}')])
    answer = completion("It is sunny in Helsinki.")
    _run("list", config, 2, tool_turn, answer)  # warm-up
    _run("mirror", config, 2, tool_turn, answer)
    out: dict[str, list[Any]] = {
        "mirror": [], "list": [], "mirror_cpu": [], "list_cpu": [], "sessions": []
    }  # fmt: skip
    for _ in range(runs):
        for kind in ("mirror", "list"):
            per_message, cpu, session_id = _run(kind, config, turns, tool_turn, answer)
            out[kind].append(per_message)
            out[f"{kind}_cpu"].append(cpu)
            if session_id:
                out["sessions"].append(session_id)
    return out


def _run(
    kind: str, config: dict[str, Any], turns: int, tool_turn: Any, answer: Any
) -> tuple[float, float, str]:
    """One conversation; ms per message of wall and of main-thread CPU, minus stub and tool."""
    from benchmarks.stub_model import StubClient
    from openai_basic import AgentSpec, ToolRegistry, run_agent
    from openai_basic.mirror import AcontextMirror

    tool = _InstantTool()
    spec = AgentSpec(
        model=MODEL, registry=ToolRegistry([tool.function]), system_prompt=SYSTEM_PROMPT
    )
    client = StubClient(tool_turn=tool_turn, answer=answer)
    with scratch_dir() as state:
        mirror: AcontextMirror | None = None
        sink: Any = _ListSink()
        history: list[dict[str, Any]] = []
        session_id = ""
        if kind == "mirror":
            settings = make_settings(
                openai_url=None,
                acontext_url=config["url"],
                acontext_key=config["key"],
                state_dir=state,
            )
            mirror = sink = AcontextMirror(settings)
            opened = mirror.create(model=MODEL, system_prompt=SYSTEM_PROMPT)
            history, session_id = opened.history, opened.session_id
        try:
            wall, cpu = 0.0, 0.0
            for i in range(turns):
                started, started_cpu = time.perf_counter(), time.thread_time()
                run_agent(
                    spec,
                    client=client,  # type: ignore[arg-type]
                    history=history,
                    user_message=f"Weather, question {i}?",
                    sink=sink,
                )
                wall += time.perf_counter() - started
                cpu += time.thread_time() - started_cpu
            if mirror is not None and mirror.sync(timeout=60):  # not timed
                raise RuntimeError("the writer did not send every message")
        finally:
            if mirror is not None:
                mirror.close()
    messages = turns * MESSAGES_PER_TURN
    outside = client.seconds + tool.seconds
    return (wall - outside) * 1000 / messages, (cpu - client.seconds) * 1000 / messages, session_id


if __name__ == "__main__":
    child_main(_child)
