"""Target 5: resuming a long session.

The fake Acontext (in this, the harness, process) is seeded with a session of N messages in
rounds of user -> assistant tool call -> tool result -> assistant answer. A child process that
does nothing but the resume reports the wall time of ``AcontextMirror.resume`` (the SDK already
imported) and its peak resident memory, ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which
includes the interpreter and both SDKs.

Baselines from the same run: the same resume with the budget off (``context_tokens=0``: pages
only), and one un-paginated ``get_messages`` call of the SDK.
"""

from __future__ import annotations

import resource
import subprocess
import time
from typing import Any

from benchmarks.common import Plan, Row, child_main, make_settings, median, run_child, scratch_dir

BUDGET = 64_000
SECONDS_LIMIT = 2.0
MEMORY_LIMIT_MB = 150.0
GIVE_UP_FACTOR = 2.5  # a run this far over the limit is not repeated: one is enough to fail
CHILD_TIMEOUT = 150.0


def measure(plan: Plan, *, messages: int | None = None) -> list[Row]:
    from tests.fakes.acontext_server import start_fake_acontext

    count = messages or plan.resume_messages
    with start_fake_acontext() as fake:
        session_id = fake.add_session(
            messages=seeded_messages(count), configs={"system_prompt": "Seeded."}
        )
        base = {"url": fake.base_url, "key": fake.api_key, "session_id": session_id}
        fitted = _runs(plan, {**base, "mode": "resume", "context_tokens": BUDGET})
        full = _runs(plan, {**base, "mode": "resume", "context_tokens": 0})
        single = _runs(plan, {**base, "mode": "get_messages", "context_tokens": 0})
    return _rows(count, fitted, full, single)


def seeded_messages(count: int) -> list[dict[str, Any]]:
    """``count`` OpenAI-format messages: rounds of a question, a tool call, its result, an
    answer (about 240 tokens a round by the fake's estimate)."""
    out: list[dict[str, Any]] = []
    for i in range(count // 4 + 1):
        call_id = f"call_{i}"
        out += [
            {"role": "user", "content": f"Question {i}: what is the weather in city {i} today?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": f'{{"city": "C{i}"}}'},
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": call_id,
                "content": f"The weather in C{i} is sunny, 20 degrees. " * 8,
            },
            {"role": "assistant", "content": f"In city {i} it is sunny and 20 degrees today."},
        ]
    return out[:count]


def _runs(plan: Plan, config: dict[str, Any]) -> list[dict[str, Any]]:
    """Up to ``plan.resume_runs`` children, each doing one load; stops early on a hopeless one."""
    results: list[dict[str, Any]] = []
    for _ in range(max(1, plan.resume_runs)):
        try:
            result = run_child("resume", config, timeout=CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            results.append({"seconds": CHILD_TIMEOUT, "timed_out": True, "rss_mb": float("nan")})
            break
        results.append(result)
        if result["seconds"] > GIVE_UP_FACTOR * SECONDS_LIMIT:
            break
    return results


def _rows(
    count: int,
    fitted: list[dict[str, Any]],
    full: list[dict[str, Any]],
    single: list[dict[str, Any]],
) -> list[Row]:
    def seconds(runs: list[dict[str, Any]]) -> float:
        return median([r["seconds"] for r in runs])

    def peak(runs: list[dict[str, Any]]) -> float:
        return max(r["rss_mb"] for r in runs)

    timed_out = any(r.get("timed_out") for r in fitted)
    last = fitted[-1]
    kept = "timed out" if timed_out else f"{last['messages']} msgs, ~{last['tokens']} tokens"
    note = (
        f"{len(fitted)} run(s); kept {kept}; budget-off resume {full[-1]['messages']} msgs, "
        f"~{full[-1]['tokens']} tokens"
    )
    if len(fitted) == 1 and fitted[0]["seconds"] > GIVE_UP_FACTOR * SECONDS_LIMIT:
        note += f"; not repeated (over {GIVE_UP_FACTOR:g} x the limit)"
    return [
        Row(
            name=f"resume {count:,} msgs, fitted to {BUDGET:,} tokens: time",
            ours=seconds(fitted),
            baseline=seconds(full),
            baseline_name="same resume, budget off (context_tokens=0)",
            target=f"< {SECONDS_LIMIT:g} s",
            passed=not timed_out and seconds(fitted) < SECONDS_LIMIT,
            note=note,
            samples={"fitted": fitted, "budget_off": full},
        ),
        Row(
            name=f"resume {count:,} msgs, fitted: peak RSS of the child",
            ours=peak(fitted),
            baseline=peak(full),
            baseline_name="same resume, budget off",
            target=f"< {MEMORY_LIMIT_MB:g} MB",
            passed=not timed_out and peak(fitted) < MEMORY_LIMIT_MB,
            unit="MB",
            note=(
                "ru_maxrss of a child that only resumes (interpreter and SDKs included; "
                f"{fitted[-1].get('rss_before_mb', float('nan')):.1f} MB before the resume)"
            ),
        ),
        Row(
            name=f"resume {count:,} msgs, budget off (all pages)",
            ours=seconds(full),
            baseline=seconds(single),
            baseline_name="one un-paginated get_messages",
            target="reference",
            passed=None,
            samples={"budget_off": full, "single_call": single},
        ),
    ]


# -- the child: one load, nothing else ------------------------------------------------------------


def _child(config: dict[str, Any]) -> dict[str, Any]:
    from openai_basic.acontext_api import load_sdk
    from openai_basic.mirror import AcontextMirror

    sdk = load_sdk()
    before = _rss_mb()
    with scratch_dir() as state:
        if config["mode"] == "resume":
            settings = make_settings(
                openai_url=None,
                acontext_url=config["url"],
                acontext_key=config["key"],
                state_dir=state,
                context_tokens=config["context_tokens"],
            )
            mirror = AcontextMirror(settings)
            try:
                started = time.perf_counter()
                history = mirror.resume(config["session_id"], default_system_prompt="").history
                seconds = time.perf_counter() - started
            finally:
                mirror.close()
        else:
            client = sdk.AcontextClient(api_key=config["key"], base_url=config["url"])
            started = time.perf_counter()
            history = client.sessions.get_messages(config["session_id"], format="openai").items
            seconds = time.perf_counter() - started
            client.close()
    peak = _rss_mb()
    from tests.fakes.acontext_server import estimate_tokens  # after the peak was read

    return {
        "seconds": seconds,
        "messages": len(history),
        "tokens": sum(estimate_tokens(m) for m in history),
        "rss_before_mb": before,
        "rss_mb": peak,
    }


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


if __name__ == "__main__":
    child_main(_child)
