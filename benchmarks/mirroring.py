"""Target 3: mirroring into Acontext stays off the critical path.

A conversation of N turns, each a tool call and an answer (the fake model takes ``MODEL_DELAY``
per call), is timed as the sum over turns of prompt -> reply (``run_agent`` returning). It runs
against two fake Acontext servers, one answering at once and one after ``SLOW_LATENCY``:

* ours: ``run_agent`` with an ``AcontextMirror`` sink (journal, background writer);
* original: the same loop, then one blocking ``store_message`` per new message
  (``benchmarks/original_pattern.py``).

The fakes live in this (the harness) process; the agent code runs in a child process so the
fakes' threads do not compete with it for the GIL. Variants are interleaved run by run.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import (
    FAKE_OPENAI_KEY,
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

MODEL_DELAY = 0.05
SLOW_LATENCY = 0.1
RATIO_TARGET = 1.05
VARIANTS = ("ours_fast", "ours_slow", "original_fast", "original_slow")


def measure(plan: Plan) -> list[Row]:
    from tests.fakes.acontext_server import start_fake_acontext
    from tests.fakes.openai_server import start_fake_openai

    with (
        start_fake_openai(responder=_tool_then_answer) as model,
        start_fake_acontext() as fast,
        start_fake_acontext(latency=SLOW_LATENCY) as slow,
    ):
        config = {
            "openai_url": model.base_url,
            "fast_url": fast.base_url,
            "slow_url": slow.base_url,
            "acontext_key": fast.api_key,
            "turns": plan.conversation_turns,
            "runs": plan.conversation_runs,
        }
        result = run_child("mirroring", config, timeout=240)
        expected = 4 * plan.conversation_turns
        complete = all(
            len((fast if run["variant"].endswith("fast") else slow).stored_messages(sid))
            == expected
            for run in result["runs"]
            for sid in [run["session_id"]]
        )
    sums = {v: [r["seconds"] for r in result["runs"] if r["variant"] == v] for v in VARIANTS}
    ours_slow, ours_fast = median(sums["ours_slow"]), median(sums["ours_fast"])
    original_slow, original_fast = median(sums["original_slow"]), median(sums["original_fast"])
    turns = plan.conversation_turns
    stored = f"every session holds its {expected} messages: " + ("yes" if complete else "NO")
    return [
        Row(
            name=f"{turns}-turn conversation, Acontext {SLOW_LATENCY * 1000:.0f} ms (mirror)",
            ours=ours_slow,
            baseline=ours_fast,
            baseline_name="same, Acontext answering at once",
            target=f"<= {RATIO_TARGET:g} x",
            passed=ours_slow <= RATIO_TARGET * ours_fast and complete,
            note=stored,
            samples={"ours_slow": sums["ours_slow"], "ours_fast": sums["ours_fast"]},
        ),
        Row(
            name=f"{turns}-turn conversation, Acontext {SLOW_LATENCY * 1000:.0f} ms (original)",
            ours=original_slow,
            baseline=original_fast,
            baseline_name="original pattern, Acontext at once",
            target="reference",
            passed=None,
            note=(
                f"the original adds {(original_slow - original_fast) * 1000:.0f} ms "
                f"({expected} blocking stores); ours adds {(ours_slow - ours_fast) * 1000:.0f} ms"
            ),
            samples={"slow": sums["original_slow"], "fast": sums["original_fast"]},
        ),
    ]


def _tool_then_answer(messages: list[dict[str, Any]]) -> Any:
    """The fake model: a tool call after the user's message, an answer after the tool's."""
    from tests.fakes.openai_server import text, tool_calls

    if messages[-1].get("role") == "user":
        return tool_calls(("get_weather", {"city": "Helsinki"}), delay=MODEL_DELAY)
    return text("It is sunny in Helsinki.", delay=MODEL_DELAY)


# -- the child: the agent side ------------------------------------------------------------------


def get_weather(city: str) -> str:
    """Get the current weather in a city (benchmark tool: instant).

    Args:
        city: The city name.
    """
    return f"The weather in {city} is sunny, 20 degrees Celsius."


def _child(config: dict[str, Any]) -> dict[str, Any]:
    import openai

    from openai_basic import ToolRegistry
    from openai_basic.acontext_api import load_sdk

    load_sdk()  # imports are startup's business (targets 1 and 2), not this figure's
    client = openai.OpenAI(api_key=FAKE_OPENAI_KEY, base_url=config["openai_url"], max_retries=0)
    registry = ToolRegistry([get_weather])
    urls = {"fast": config["fast_url"], "slow": config["slow_url"]}
    prompts = [f"What is the weather in Helsinki, question {i}?" for i in range(config["turns"])]
    key = config["acontext_key"]
    for variant in ("ours_fast", "original_fast"):  # warm-up: connections, lazy imports
        _conversation(variant, client, registry, prompts[:1], urls, key)
    runs = []
    for _ in range(max(1, config["runs"])):
        for variant in VARIANTS:
            seconds, session_id = _conversation(variant, client, registry, prompts, urls, key)
            runs.append({"variant": variant, "seconds": seconds, "session_id": session_id})
    client.close()
    return {"runs": runs}


def _conversation(
    variant: str,
    client: Any,
    registry: Any,
    prompts: list[str],
    urls: dict[str, str],
    key: str,
) -> tuple[float, str]:
    """One conversation; the sum over its turns of prompt -> reply, and its session id."""
    url = urls[variant.rsplit("_", 1)[1]]
    if variant.startswith("ours"):
        return _ours(client, registry, prompts, url, key)
    return _original(client, registry, prompts, url, key)


def _ours(client: Any, registry: Any, prompts: list[str], url: str, key: str) -> tuple[float, str]:
    from openai_basic import AgentSpec, run_agent
    from openai_basic.mirror import AcontextMirror

    with scratch_dir() as state:
        settings = make_settings(
            openai_url=None, acontext_url=url, acontext_key=key, state_dir=state
        )
        mirror = AcontextMirror(settings)
        try:
            opened = mirror.create(model=MODEL, system_prompt=SYSTEM_PROMPT)
            spec = AgentSpec(model=MODEL, registry=registry, system_prompt=opened.system_prompt)
            total = 0.0
            for prompt in prompts:
                started = time.perf_counter()
                run_agent(
                    spec, client=client, history=opened.history, user_message=prompt, sink=mirror
                )
                total += time.perf_counter() - started
            left = mirror.sync(timeout=30)  # not timed: the copy finishes in the background
            if left:
                raise RuntimeError(f"{left} messages were not mirrored")
            return total, opened.session_id
        finally:
            mirror.close()


def _original(
    client: Any, registry: Any, prompts: list[str], url: str, key: str
) -> tuple[float, str]:
    from benchmarks.original_pattern import SyncStore, run_turn

    store = SyncStore(api_key=key, base_url=url)
    try:
        session_id = store.create_session({"model": MODEL, "system_prompt": SYSTEM_PROMPT})
        history: list[dict[str, Any]] = []
        total = 0.0
        for prompt in prompts:
            started = time.perf_counter()
            run_turn(
                client=client,
                model=MODEL,
                registry=registry,
                history=history,
                prompt=prompt,
                store=store,
                system_prompt=SYSTEM_PROMPT,
            )
            total += time.perf_counter() - started
        return total, session_id
    finally:
        store.close()


if __name__ == "__main__":
    child_main(_child)
