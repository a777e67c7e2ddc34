"""Target 4: one assistant message with four slow tool calls.

Measured through ``run_agent`` with the in-process stub model: the tool phase is the time from the
model call that asked for the tools returning to the next model call starting. The order of the
tool messages in the turn must be the order of the calls. Baseline: the same four calls run one
after another through ``ToolRegistry.call``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from benchmarks.common import MODEL, Plan, Row, median
from benchmarks.stub_model import StubClient, completion
from openai_basic import AgentSpec, ToolRegistry, run_agent
from openai_basic.tools import ToolCall

CALLS = 4
TOOL_SECONDS = 0.5
PHASE_LIMIT = 0.7


def measure(plan: Plan, *, calls: int = CALLS, tool_seconds: float = TOOL_SECONDS) -> list[Row]:
    registry = ToolRegistry([_slow_lookup(tool_seconds)], timeout=30)
    specs = [(f"call_{i}", "slow_lookup", json.dumps({"n": i})) for i in range(calls)]
    phases, in_order = [], True
    for _ in range(max(1, plan.tool_runs)):
        phase, ordered = tool_phase(registry, specs)
        phases.append(phase)
        in_order = in_order and ordered
    sequential = [
        _one_after_another(registry, specs) for _ in range(max(1, min(plan.tool_runs, 3)))
    ]
    ours = median(phases)
    limit = PHASE_LIMIT * tool_seconds / TOOL_SECONDS
    return [
        Row(
            name=f"{calls} tool calls of {tool_seconds:g} s in one message: tool phase",
            ours=ours,
            baseline=median(sequential),
            baseline_name="the same calls one after another",
            target=f"< {limit:g} s, in call order",
            passed=ours < limit and in_order,
            note="results in tool_calls order: " + ("yes" if in_order else "NO"),
            samples={"ours": phases, "baseline": sequential, "in_order": in_order},
        )
    ]


def tool_phase(registry: ToolRegistry, specs: list[tuple[str, str, str]]) -> tuple[float, bool]:
    """One turn; returns the tool phase in seconds and whether the results kept call order."""
    client = StubClient(tool_turn=completion(None, specs), answer=completion("done"))
    history: list[dict[str, object]] = []
    result = run_agent(
        AgentSpec(model=MODEL, registry=registry),
        client=client,  # type: ignore[arg-type]
        history=history,
        user_message="look these up",
        sink=_Discard(),
    )
    (_, asked), (answered, _) = client.calls[0], client.calls[1]
    tools = [m for m in result.messages if m.get("role") == "tool"]
    expected = [(call_id, f"result {json.loads(args)['n']}") for call_id, _, args in specs]
    ordered = [(m.get("tool_call_id"), m.get("content")) for m in tools] == expected
    return answered - asked, ordered and result.reply == "done"


def _one_after_another(registry: ToolRegistry, specs: list[tuple[str, str, str]]) -> float:
    started = time.perf_counter()
    for call_id, name, arguments in specs:
        registry.call(ToolCall(call_id, name, arguments))
    return time.perf_counter() - started


class _Discard:
    def append(self, message: dict[str, object], meta: dict[str, object] | None = None) -> None:
        pass


def _slow_lookup(seconds: float) -> Callable[[int], str]:
    def slow_lookup(n: int) -> str:
        """Look up entry number n slowly (a benchmark tool that sleeps).

        Args:
            n: The entry number.
        """
        time.sleep(seconds)
        return f"result {n}"

    return slow_lookup
