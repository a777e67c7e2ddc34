"""The performance table: ``uv run python -m tests.benchmarks [--quick] [--json FILE]``.

Each figure is the median of repeated runs against the local fakes, next to its baseline from the
same run. The exit code is 1 when a target fails. docs/performance.md explains every row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

from tests.benchmarks import conversation, parallel_tools, rendering, resume, startup
from tests.benchmarks.harness import Row

RUNS = 5
GROUPS = {
    "1-2": startup.measure,
    "3": conversation.measure_mirroring,
    "4": parallel_tools.measure,
    "5": resume.measure,
    "6": conversation.measure_bookkeeping,
    "7": rendering.measure,
}
HEADER = ("#", "benchmark", "ours (median)", "baseline (median)", "ratio", "target", "result")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="each figure once: a smoke run")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the rows here")
    args = parser.parse_args(argv)
    runs = 1 if args.quick else RUNS
    started = time.perf_counter()
    rows: list[tuple[str, Row]] = []
    for group, measure in GROUPS.items():
        print(f"measuring {group} ...", file=sys.stderr, flush=True)
        rows += [(group, row) for row in measure(runs)]
    print(table(rows))
    print(
        f"\n{runs} run(s) a figure, {time.perf_counter() - started:.0f} s; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs. Ratio = ours / baseline."
    )
    if args.json:
        dicts = [{"group": group, **asdict(row), "ratio": row.ratio} for group, row in rows]
        args.json.write_text(json.dumps(dicts, indent=2) + "\n")
    return 1 if any(row.passed is False for _, row in rows) else 0


def table(rows: list[tuple[str, Row]]) -> str:
    lines = [HEADER]
    for group, row in rows:
        verdict = "info" if row.passed is None else "PASS" if row.passed else "FAIL"
        baseline = f"{shown(row.baseline, row.unit)}  {row.baseline_name}"
        ours = shown(row.ours, row.unit)
        lines.append((group, row.name, ours, baseline, f"{row.ratio:.2f}", row.target, verdict))
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    rendered = [" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    rendered.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in rendered)


def shown(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:.3g} {unit}"


if __name__ == "__main__":
    sys.exit(main())
