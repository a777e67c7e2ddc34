"""The benchmark harness still runs: its cheapest measurement, once, tiny, untimed."""

from __future__ import annotations

from tests.benchmarks import parallel_tools


def test_the_parallel_tools_benchmark_runs_and_keeps_the_calls_order() -> None:
    seconds, in_call_order = parallel_tools.tool_phase(calls=3, seconds=0.01)

    assert seconds > 0
    assert in_call_order
