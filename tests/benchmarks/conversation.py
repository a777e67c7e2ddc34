"""Rows 3 and 6 of docs/performance.md: what mirroring into Acontext costs a conversation.

The conversations run in a child process, so the fakes, serving from this one, do not take its
interpreter lock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from statistics import median
from typing import Any

from openai_basic import AgentSpec, MessageSink, ToolRegistry, run_agent
from openai_basic.acontext_api import load_sdk
from tests.benchmarks.harness import (
    MODEL,
    ListSink,
    ReplayModel,
    Row,
    at_most,
    in_child,
    mirror_to,
    scaling,
    under,
)
from tests.fakes.acontext_server import DEFAULT_API_KEY, start_fake_acontext
from tests.fakes.openai_server import Reply, start_fake_openai, text, tool_calls
from tests.tools import look_up, look_up_then_answer

TURNS = 5
MODEL_SECONDS = 0.05
ACONTEXT_SECONDS = 0.1
MIRROR_LIMIT = 1.05
BOOKKEEPING_TURNS = 50
MESSAGES = 4 * BOOKKEEPING_TURNS
LIMIT_MS = 1.0
AT_ONCE = "the same, Acontext at once"
LISTED = "the same, a list for a sink"
PROMPT = "Be brief."
LOOK_UP = tool_calls(("look_up", {"city": "Oslo"}))
Plan = list[tuple[str, str, int]]  # the sink, Acontext's URL and the turns of each conversation


def measure_mirroring(runs: int) -> list[Row]:
    with (
        start_fake_openai(responder=_slow_model) as model,
        start_fake_acontext() as fast,
        start_fake_acontext(latency=ACONTEXT_SECONDS) as slow,
    ):
        plan = [
            ("mirror", fast.base_url, TURNS),
            ("mirror", slow.base_url, TURNS),
            ("original", fast.base_url, TURNS),
            ("original", slow.base_url, TURNS),
            ("mirror", slow.base_url, 2 * TURNS),
        ]
        seconds, _ = in_child(_conversations, model.base_url, plan, runs)
    ours_fast, ours, original_fast, original, ours_twice = seconds
    slowly = f"{TURNS}-turn conversation, Acontext {ACONTEXT_SECONDS * 1000:.0f} ms"
    return [
        at_most(MIRROR_LIMIT, f"{slowly} (mirror)", ours, ours_fast, AT_ONCE),
        Row(f"{slowly} (original)", original, original_fast, AT_ONCE, "reference", None),
        scaling(f"{2 * TURNS} vs {TURNS} turns, Acontext slow (mirror)", ours, ours_twice),
    ]


def measure_bookkeeping(runs: int) -> list[Row]:
    with start_fake_acontext() as acontext:
        plan = [
            ("mirror", acontext.base_url, BOOKKEEPING_TURNS),
            ("list", acontext.base_url, BOOKKEEPING_TURNS),
            ("mirror", acontext.base_url, 2 * BOOKKEEPING_TURNS),
        ]
        seconds, cpu = in_child(_conversations, None, plan, 3 * runs)  # cheap: more runs
    mirrored, listed, _ = seconds
    ours, baseline = 1000 * mirrored / MESSAGES, 1000 * listed / MESSAGES
    return [
        under(
            LIMIT_MS, f"bookkeeping per message, {MESSAGES} msgs", ours, baseline, LISTED, "ms/msg"
        ),
        scaling(f"CPU for {2 * MESSAGES} vs {MESSAGES} msgs, mirrored", cpu[0], cpu[2]),
    ]


def _slow_model(messages: list[dict[str, Any]]) -> Reply:
    return replace(look_up_then_answer(messages), delay=MODEL_SECONDS)


def _conversations(model_url: str | None, plan: Plan, runs: int) -> tuple[list[float], list[float]]:
    """The medians of each conversation of ``plan`` (as ``_conversation`` gives them), run by
    turns (so a busier moment hits all alike) after a warm-up. Without ``model_url`` the model is
    in-process."""
    import openai

    load_sdk()  # imports are the startup rows' business, not these
    shared = model_url and openai.OpenAI(api_key="sk-test", base_url=model_url, max_retries=0)
    samples: list[list[tuple[float, float]]] = [[] for _ in plan]
    for run in range(runs + 1):
        for of_one, (sink, acontext_url, turns) in zip(samples, plan, strict=True):
            client = shared or ReplayModel(LOOK_UP, text("Sunny."))
            of_one.append(_conversation(client, sink, acontext_url, turns if run else 1))
    seconds = [median(wall for wall, _ in of_one[1:]) for of_one in samples]
    return seconds, [median(cpu for _, cpu in of_one[1:]) for of_one in samples]


def _conversation(client: Any, sink: str, acontext_url: str, turns: int) -> tuple[float, float]:
    """The seconds of the turns, the in-process model's own time left out; and the CPU seconds
    of this process (loop and writer) until the last message is stored."""
    spec = AgentSpec(model=MODEL, registry=ToolRegistry([look_up]), system_prompt=PROMPT)
    history: list[dict[str, Any]] = []
    seconds, cpu = 0.0, time.process_time()
    with _sink(sink, acontext_url) as messages:
        for turn in range(turns):
            started = time.perf_counter()
            question = f"City {turn}"
            run_agent(spec, client=client, history=history, user_message=question, sink=messages)
            seconds += time.perf_counter() - started
    return seconds - getattr(client, "seconds", 0.0), time.process_time() - cpu


@contextmanager
def _sink(kind: str, acontext_url: str) -> Iterator[MessageSink]:
    """A new session's sink: ``mirror``, ``original`` or ``list``."""
    if kind == "list":
        yield ListSink()
    elif kind == "mirror":
        with mirror_to(acontext_url) as mirror:
            mirror.create(model=MODEL, system_prompt=PROMPT)
            yield mirror
            if mirror.sync(timeout=60):
                raise RuntimeError("the writer did not send every message")
    else:
        from tests.benchmarks.original_pattern import BlockingStore

        configs = {"model": MODEL, "system_prompt": PROMPT}
        store = BlockingStore(api_key=DEFAULT_API_KEY, base_url=acontext_url, configs=configs)
        yield store
        store.close()
