"""The benchmark harness still runs: its cheapest measurement, once, tiny, untimed."""

from __future__ import annotations

import dataclasses

from benchmarks import parallel_tools
from benchmarks.common import Plan


def test_the_parallel_tools_benchmark_runs_and_checks_the_order() -> None:
    plan = dataclasses.replace(Plan.quick_plan(), tool_runs=1)

    (row,) = parallel_tools.measure(plan, calls=2, tool_seconds=0.01)

    assert isinstance(row.ours, float) and isinstance(row.baseline, float)
    assert row.samples["in_order"] is True
