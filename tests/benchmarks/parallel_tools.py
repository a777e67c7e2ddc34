"""Row 4 of docs/performance.md: the tool calls of one message run at once."""

from __future__ import annotations

import time
from statistics import median

from openai_basic import AgentSpec, ToolRegistry, run_agent
from openai_basic.tools import ToolCall
from tests.benchmarks.harness import MODEL, ListSink, ReplayModel, Row
from tests.fakes.openai_server import text, tool_calls

CALLS = 4
SECONDS = 0.5  # each call's
LIMIT = 0.7  # seconds for the whole phase


def measure(runs: int) -> list[Row]:
    phases = [tool_phase(CALLS, SECONDS) for _ in range(runs)]
    registry = ToolRegistry([wait])
    calls = [ToolCall(f"call_{i}", "wait", f'{{"seconds": {SECONDS}}}') for i in range(CALLS)]
    one_after_another = []
    for _ in range(runs):
        started = time.perf_counter()
        for call in calls:
            registry.call(call)
        one_after_another.append(time.perf_counter() - started)
    ours = median(phase for phase, _ in phases)
    in_order = all(ordered for _, ordered in phases)
    return [
        Row(
            f"{CALLS} tool calls of {SECONDS:g} s in one message",
            ours,
            median(one_after_another),
            "the same calls one after another",
            f"< {LIMIT:g} s, in call order",
            ours < LIMIT and in_order,
        )
    ]


def tool_phase(calls: int, seconds: float) -> tuple[float, bool]:
    """One turn: the seconds of its tool phase, and whether the results kept the calls' order."""
    model = ReplayModel(tool_calls(*[("wait", {"seconds": seconds})] * calls), text("done"))
    result = run_agent(
        AgentSpec(model=MODEL, registry=ToolRegistry([wait])),
        client=model,  # type: ignore[arg-type]
        history=[],
        user_message="wait",
        sink=ListSink(),
    )
    (_, asked), (answered, _) = model.calls
    (asking, *tools, _) = result.messages[1:]
    asked_for = [call["id"] for call in asking["tool_calls"]]
    return answered - asked, [tool["tool_call_id"] for tool in tools] == asked_for


def wait(seconds: float) -> str:
    """Wait, as a slow service would.

    Args:
        seconds: how long
    """
    time.sleep(seconds)
    return f"waited {seconds} s"
