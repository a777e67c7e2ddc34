"""Run every benchmark and print one table: ``uv run python -m benchmarks [--quick] [--json FILE]``.

Each group is a module with ``measure(plan) -> list[Row]``. A group that crashes gives an ERROR row
and the others still run; the exit code is 1 when any target fails or any group crashes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from benchmarks import bookkeeping, mirroring, parallel_tools, resume, startup
from benchmarks.common import Plan, Row, format_value

GROUPS: list[tuple[str, Callable[[Plan], list[Row]]]] = [
    ("1-2 startup", startup.measure),
    ("3 mirroring", mirroring.measure),
    ("4 parallel tools", parallel_tools.measure),
    ("5 resume", resume.measure),
    ("6 bookkeeping", bookkeeping.measure),
]
HEADER = ("#", "benchmark", "ours (median)", "baseline (median)", "ratio", "target", "result")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    parser.add_argument("--json", metavar="FILE", type=Path, help="write the raw results here")
    args = parser.parse_args(argv)
    plan = Plan.quick_plan() if args.quick else Plan.default()

    started = time.perf_counter()
    results: list[tuple[str, Row]] = []
    for label, measure in GROUPS:
        print(f"running {label} ...", file=sys.stderr, flush=True)
        try:
            results += [(label.split()[0], row) for row in measure(plan)]
        except Exception as exc:
            traceback.print_exc()
            results.append((label.split()[0], _crashed(label, exc)))
    wall = time.perf_counter() - started

    print(_table(results))
    print(
        f"\n{'quick' if plan.quick else 'default'} run, {wall:.0f} s wall; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs. Ratio = ours / baseline."
    )
    if args.json:
        payload = {
            "plan": plan.__dict__,
            "wall_seconds": wall,
            "rows": [{"group": group, **row.as_dict()} for group, row in results],
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return 1 if any(row.passed is False for _, row in results) else 0


def _crashed(label: str, exc: Exception) -> Row:
    return Row(
        name=f"{label}: ERROR",
        ours=f"{type(exc).__name__}",
        baseline="-",
        baseline_name="",
        target="runs",
        passed=False,
        unit="",
        note=str(exc)[:300],
    )


def _table(results: list[tuple[str, Row]]) -> str:
    lines = [HEADER]
    notes: list[str] = []
    for group, row in results:
        baseline = format_value(row.baseline, row.unit)
        if row.baseline_name:
            baseline = f"{baseline}  {row.baseline_name}"
        verdict = "info" if row.passed is None else "PASS" if row.passed else "FAIL"
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        lines.append(
            (
                group,
                row.name,
                format_value(row.ours, row.unit),
                baseline,
                ratio,
                row.target,
                verdict,
            )
        )
        if row.note:
            notes.append(f"  [{group}] {row.name}: {row.note}")
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]

    def render(line: tuple[str, ...]) -> str:
        return " | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))

    rule = "-+-".join("-" * width for width in widths)
    body = [render(lines[0]), rule, *(render(line) for line in lines[1:])]
    return "\n".join([*body, "", "notes:", *notes])


if __name__ == "__main__":
    sys.exit(main())
