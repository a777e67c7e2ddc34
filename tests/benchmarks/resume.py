"""Row 5 of docs/performance.md: resuming a long session, fitted to the context budget.

Each resume runs in a child process that does nothing else, so its memory is the resume's."""

from __future__ import annotations

import resource
import time
from statistics import median
from typing import Any, NamedTuple

from openai_basic.acontext_api import load_sdk
from tests.benchmarks.harness import Row, in_child, mirror_to, scaling, under
from tests.fakes.acontext_server import start_fake_acontext

MESSAGES = 5_000
BUDGET = 64_000  # tokens, the default context_tokens
SECONDS_LIMIT = 2.0
MEMORY_LIMIT_MB = 150.0
BUDGET_OFF = "the same, budget off"


class Resumed(NamedTuple):
    seconds: float
    cpu: float  # seconds of this process's CPU: the fake's work, in another, is left out
    peak_mb: float  # ru_maxrss: the interpreter and the SDK count
    added_mb: float  # by the resume, to the peak


def measure(runs: int) -> list[Row]:
    with start_fake_acontext() as acontext:
        single = acontext.add_session(messages=rounds(MESSAGES))
        double = acontext.add_session(messages=rounds(2 * MESSAGES))
        plan = [(single, BUDGET), (single, 0), (double, BUDGET)]
        done: list[list[Resumed]] = [[] for _ in plan]
        for _ in range(runs):  # interleaved, so a busier moment hits all alike
            for of_one, (session_id, budget) in zip(done, plan, strict=True):
                of_one.append(in_child(_resume, acontext.base_url, session_id, budget))
    fitted, off, twice = (Resumed(*map(median, zip(*of_one, strict=True))) for of_one in done)
    name = f"resume {MESSAGES:,} msgs, fitted to {BUDGET:,} tokens"
    doubled = f"resume {2 * MESSAGES:,} vs {MESSAGES:,} msgs"
    return [
        under(SECONDS_LIMIT, f"{name}: time", fitted.seconds, off.seconds, BUDGET_OFF),
        under(
            MEMORY_LIMIT_MB, f"{name}: peak memory", fitted.peak_mb, off.peak_mb, BUDGET_OFF, "MB"
        ),
        scaling(f"{doubled}: CPU", fitted.cpu, twice.cpu),
        scaling(f"{doubled}: memory it adds", fitted.added_mb, twice.added_mb, "MB"),
    ]


def rounds(count: int) -> list[dict[str, Any]]:
    """``count`` messages: rounds of a question, a tool call, its result and an answer (about
    145 tokens a round by the fake's estimate)."""
    messages: list[dict[str, Any]] = []
    for i in range(count // 4 + 1):
        arguments = f'{{"city": "C{i}"}}'
        call = {
            "id": f"c{i}",
            "type": "function",
            "function": {"name": "look_up", "arguments": arguments},
        }
        messages += [
            {"role": "user", "content": f"Question {i}: what is the weather in city {i} today?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {
                "role": "tool",
                "tool_call_id": f"c{i}",
                "content": f"It is sunny in C{i}, 20 C. " * 8,
            },
            {"role": "assistant", "content": f"In city {i} it is sunny and 20 degrees today."},
        ]
    return messages[:count]


def _resume(acontext_url: str, session_id: str, budget: int) -> Resumed:
    """One resume in a process that does nothing else."""
    load_sdk()
    before = _peak_mb()
    with mirror_to(acontext_url, context_tokens=budget) as mirror:
        started, cpu = time.perf_counter(), time.process_time()
        mirror.resume(session_id, default_system_prompt="")
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Resumed(seconds, cpu, _peak_mb(), _peak_mb() - before)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
