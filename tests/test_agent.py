"""The agent loop against the scripted model: what it sends, what it keeps, what the sink sees.

The loop gets tools of its own here, so the sample tools can change without touching these tests.
"""

from __future__ import annotations

import _thread
import dataclasses
import io
import time
from typing import Any

import openai
import pytest

from openai_basic import AgentSpec, ToolRegistry, TurnResult, run_agent
from openai_basic.agent import CANCELLED, LIMIT_NOTE, NO_RESULT
from openai_basic.conversation import chat
from openai_basic.errors import ConfigError, ServiceError
from openai_basic.output import Output
from openai_basic.settings import Settings
from tests.fakes.openai_server import FakeOpenAI, ToolCallSpec, error, text, tool_calls


def lookup(city: str) -> str:
    """Look a city up.

    Args:
        city: The city's name.
    """
    return f"{city}: population {len(city) * 1000}"


def reserve(venue: str, day: str) -> str:
    """Reserve a table.

    Args:
        venue: Where.
        day: Which day.
    """
    return f"Reserved {venue} on {day}."


class ListSink:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.metas: list[dict[str, Any] | None] = []

    def append(self, message: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
        self.messages.append(message)
        self.metas.append(meta)


def agent(**changes: Any) -> AgentSpec:
    spec = AgentSpec(
        model="gpt-4o-mini",
        registry=ToolRegistry([lookup, reserve]),
        system_prompt="Be brief.",
        max_iterations=5,
    )
    return dataclasses.replace(spec, **changes)


def turn(
    model: FakeOpenAI, history: list[dict[str, Any]], prompt: str, **options: Any
) -> tuple[TurnResult, ListSink]:
    sink = options.pop("sink", ListSink())
    spec = options.pop("spec", None) or agent(**options.pop("changes", {}))
    client = openai.OpenAI(api_key="sk-test", base_url=model.base_url, max_retries=0)
    result = run_agent(
        spec, client=client, history=history, user_message=prompt, sink=sink, **options
    )
    return result, sink


def test_a_turn_with_a_tool_call_keeps_and_sinks_every_message_in_order(model: FakeOpenAI) -> None:
    model.script(
        tool_calls(ToolCallSpec("lookup", '{"city": "Helsinki"}', id="call_w")),
        text("It has 8000 people."),
    )
    history: list[dict[str, Any]] = []
    result, sink = turn(model, history, "How big is Helsinki?")

    expected = [
        {"role": "user", "content": "How big is Helsinki?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_w",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"city": "Helsinki"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_w", "content": "Helsinki: population 8000"},
        {"role": "assistant", "content": "It has 8000 people."},
    ]
    assert history == expected
    assert sink.messages == expected
    assert list(result.messages) == expected
    assert (result.reply, result.model_calls, result.hit_limit) == ("It has 8000 people.", 2, False)


def test_the_model_gets_the_system_prompt_first_and_the_strict_tools(model: FakeOpenAI) -> None:
    model.script(text("hello"))
    turn(model, [], "hi", changes={"system_prompt": "You are terse."})
    request = model.requests[0]
    assert request["model"] == "gpt-4o-mini"
    assert request["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hi"},
    ]
    assert [tool["function"]["name"] for tool in request["tools"]] == ["lookup", "reserve"]
    assert all(tool["function"]["strict"] for tool in request["tools"])


def test_history_carries_over_between_turns(model: FakeOpenAI) -> None:
    model.script(text("one"), text("two"))
    history: list[dict[str, Any]] = []
    turn(model, history, "first")
    turn(model, history, "second")
    assert [m["content"] for m in model.requests[1]["messages"]] == [
        "Be brief.",
        "first",
        "one",
        "second",
    ]


def test_parallel_tool_calls_are_all_answered_in_call_order(model: FakeOpenAI) -> None:
    model.script(
        tool_calls(
            ToolCallSpec("lookup", '{"city": "Oslo"}', id="a"),
            ToolCallSpec("reserve", '{"venue": "X", "day": "d"}', id="b"),
            ToolCallSpec("lookup", '{"city": "Rome"}', id="c"),
        ),
        text("done"),
    )
    history: list[dict[str, Any]] = []
    turn(model, history, "go")
    tool_messages = [m for m in history if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["a", "b", "c"]
    assert "Oslo" in tool_messages[0]["content"] and "Rome" in tool_messages[2]["content"]
    # the fake rejects a history in which any call lacks its answer
    assert model.requests[1]["messages"][-3:] == tool_messages


def test_tool_errors_go_back_to_the_model_and_the_loop_goes_on(model: FakeOpenAI) -> None:
    model.script(
        tool_calls(
            ToolCallSpec("lookup", '{"city": ', id="bad_json"),
            ToolCallSpec("lookup", '{"town": "Oslo"}', id="bad_args"),
            ToolCallSpec("fly_to_moon", "{}", id="unknown"),
        ),
        text("Sorry, let me try again."),
    )
    history: list[dict[str, Any]] = []
    result, _ = turn(model, history, "go")
    answers = {m["tool_call_id"]: m["content"] for m in history if m["role"] == "tool"}
    assert answers["bad_json"].startswith("Error: the arguments are not valid JSON")
    assert answers["bad_args"].startswith("Error: invalid arguments for lookup")
    assert answers["unknown"].startswith("Error: unknown tool 'fly_to_moon'")
    assert result.reply == "Sorry, let me try again."


def test_the_iteration_limit_ends_with_an_answer_and_a_valid_history(model: FakeOpenAI) -> None:
    model.script(*[tool_calls(("lookup", '{"city": "Oslo"}')) for _ in range(2)])
    model.script(text("Here is what I found."))
    history: list[dict[str, Any]] = []
    result, sink = turn(model, history, "loop", changes={"max_iterations": 2})
    assert (result.hit_limit, result.model_calls, result.reply) == (
        True,
        3,
        "Here is what I found.",
    )
    last_request = model.requests[-1]
    assert last_request["tool_choice"] == "none"
    assert last_request["messages"][-1] == {"role": "system", "content": LIMIT_NOTE}
    assert [m["role"] for m in history] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    assert sink.messages == history  # the limit note is not part of the conversation


def test_ctrl_c_in_a_tool_answers_every_call_made_and_is_re_raised(model: FakeOpenAI) -> None:
    def slow_search(query: str) -> str:
        """Search slowly."""
        _thread.interrupt_main()  # what Ctrl-C does while the tool runs
        time.sleep(5)
        return "never seen"

    model.script(tool_calls(ToolCallSpec("slow_search", '{"query": "x"}', id="s1")))
    history: list[dict[str, Any]] = []
    sink = ListSink()
    with pytest.raises(KeyboardInterrupt):
        turn(model, history, "search", changes={"registry": ToolRegistry([slow_search])}, sink=sink)
    assert history[-1] == {"role": "tool", "tool_call_id": "s1", "content": CANCELLED}
    assert sink.messages == history


def test_a_rejected_key_is_a_configuration_error(model: FakeOpenAI) -> None:
    model.api_key = "sk-other"
    history: list[dict[str, Any]] = []
    with pytest.raises(ConfigError) as raised:
        turn(model, history, "hi")
    assert str(raised.value) == "OpenAI key rejected: check OPENAI_API_KEY"
    assert history == [{"role": "user", "content": "hi"}]  # the user's message is kept


def test_a_server_error_is_a_service_error(model: FakeOpenAI) -> None:
    model.script(error(500, "the model is on fire"))
    with pytest.raises(ServiceError, match="OpenAI: HTTP 500: the model is on fire"):
        turn(model, [], "hi")


def test_an_unreachable_model_server_is_a_service_error(model: FakeOpenAI) -> None:
    model.stop()
    with pytest.raises(ServiceError, match="cannot reach the model server"):
        turn(model, [], "hi")


def test_assistant_messages_carry_model_usage_and_latency_in_their_meta(model: FakeOpenAI) -> None:
    model.script(text("hi", usage=(12, 3)))
    _, sink = turn(model, [], "hello")
    assert sink.metas[0] is None  # the user's message
    meta = sink.metas[1]
    assert meta["model"] == "gpt-4o-mini"
    assert meta["usage"] == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    assert isinstance(meta["latency_ms"], int)


def test_a_history_ending_in_unanswered_tool_calls_is_repaired_first(model: FakeOpenAI) -> None:
    history: list[dict[str, Any]] = [
        {"role": "user", "content": "how big?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "a",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": "{}"},
                },
                {
                    "id": "b",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": "big"},
    ]
    model.script(text("Where were we?"))
    _, sink = turn(model, history, "go on")
    assert sink.messages[0] == {"role": "tool", "tool_call_id": "b", "content": NO_RESULT}
    assert sink.messages[1] == {"role": "user", "content": "go on"}
    assert [m["role"] for m in history] == [
        "user",
        "assistant",
        "tool",
        "tool",
        "user",
        "assistant",
    ]


def test_a_model_that_rejects_tools_gets_a_hint(model: FakeOpenAI) -> None:
    model.script(error(400, "tools are not supported by this model"))
    with pytest.raises(ConfigError, match=r"rejected the tools .* choose a model with tool"):
        turn(model, [], "hi")


def test_a_tool_that_overruns_its_timeout_is_answered_with_an_error(model: FakeOpenAI) -> None:
    def hang(seconds: float) -> str:
        """Sleep."""
        time.sleep(seconds)
        return "woke"

    registry = ToolRegistry()
    registry.register(hang, timeout=0.2)
    model.script(tool_calls(ToolCallSpec("hang", '{"seconds": 30}', id="h")), text("It hung."))
    history: list[dict[str, Any]] = []
    result, _ = turn(model, history, "hang", changes={"registry": registry})
    assert history[2] == {
        "role": "tool",
        "tool_call_id": "h",
        "content": "Error: hang did not finish within 0.2 s.",
    }
    assert result.reply == "It hung."


def test_tool_results_are_capped_before_the_model_and_the_session_see_them(
    model: FakeOpenAI,
) -> None:
    def dump(size: int) -> str:
        """Return a lot of text."""
        return "x" * size

    model.script(tool_calls(ToolCallSpec("dump", '{"size": 1000}', id="d")), text("ok"))
    registry = ToolRegistry([dump], max_result_chars=100)
    _, sink = turn(model, [], "dump", changes={"registry": registry})
    assert sink.messages[2]["content"] == "x" * 100 + "\n[truncated: 900 more characters]"
    assert model.requests[1]["messages"][-1]["content"] == sink.messages[2]["content"]


def test_a_streamed_turn_is_identical_to_the_same_turn_not_streamed(model: FakeOpenAI) -> None:
    script = [
        tool_calls(
            ToolCallSpec("lookup", '{"city": "Helsinki"}', id="w1"),
            ToolCallSpec("reserve", '{"venue": "A", "day": "d"}', id="w2"),
        ),
        text("Helsinki is **big**, and your table is reserved. Enjoy the trip!"),
    ]
    model.script(*script)
    plain, plain_sink = turn(model, [], "go")
    model.script(*script)
    pieces: list[str] = []
    streamed, streamed_sink = turn(model, [], "go", on_text=pieces.append)

    assert streamed_sink.messages == plain_sink.messages
    assert streamed.reply == plain.reply
    assert "".join(pieces) == plain.reply
    assert len(pieces) > 3  # it really came in pieces
    assert model.requests[2]["stream"] is True
    assert model.requests[2]["stream_options"] == {"include_usage": True}
    assert streamed.usage.prompt_tokens == plain.usage.prompt_tokens
    assert streamed.usage.completion_tokens == plain.usage.completion_tokens


def test_usage_is_summed_over_the_model_calls_of_a_turn(model: FakeOpenAI) -> None:
    model.script(tool_calls(("lookup", '{"city": "Oslo"}'), usage=(100, 10)))
    model.script(text("done", usage=(150, 20)))
    result, _ = turn(model, [], "go")
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (250, 30)
    assert result.usage.model_calls == 2


def test_a_server_without_usage_numbers_is_fine(model: FakeOpenAI) -> None:
    model.script(text("hi", usage=None))
    result, sink = turn(model, [], "hello")
    assert result.usage.prompt_tokens == 0 and result.usage.model_calls == 1
    assert "usage" not in sink.metas[1]


def test_a_server_that_rejects_strict_schemas_is_asked_again_without(model: FakeOpenAI) -> None:
    model.script(error(400, "Unknown parameter: 'tools[0].function.strict'."), text("hi"))
    result, _ = turn(model, [], "hello")
    assert result.reply == "hi"
    assert model.requests[0]["tools"][0]["function"]["strict"] is True
    assert "strict" not in model.requests[1]["tools"][0]["function"]


def test_a_server_without_strict_is_asked_without_it_for_the_rest_of_the_turn(
    model: FakeOpenAI,
) -> None:
    model.accepts_strict = False
    model.script(tool_calls(("lookup", '{"city": "Oslo"}')), text("done"))
    result, _ = turn(model, [], "go")
    assert result.reply == "done"
    assert ["strict" in r["tools"][0]["function"] for r in model.requests] == [True, False, False]
    assert result.strict_tools is False


def test_the_next_turn_of_the_conversation_is_not_asked_with_strict_again(
    model: FakeOpenAI,
) -> None:
    model.accepts_strict = False
    model.script(text("one"), text("two"))
    history: list[dict[str, Any]] = []
    first, _ = turn(model, history, "first")
    second, _ = turn(model, history, "second", spec=agent().for_next_turn(first))
    assert (first.reply, second.reply) == ("one", "two")
    assert len(model.requests) == 3  # strict refused once, then two plain calls


def test_a_conversation_remembers_a_server_without_strict_for_all_its_turns(
    model: FakeOpenAI, settings: Settings
) -> None:
    model.accepts_strict = False
    model.script(tool_calls(("get_time", "{}")), text("noon"), text("still noon"))

    def get_time() -> str:
        """Tell the time."""
        return "12:00"

    out = Output(stdout=io.StringIO(), stderr=io.StringIO(), stream=False)
    registry = ToolRegistry([get_time])
    outcome = chat(settings=settings, prompts=["time?", "and now?"], out=out, registry=registry)
    assert outcome.replies == ("noon", "still noon")
    assert len(model.requests) == 4  # strict refused once, then three plain calls


def test_strict_tools_off_sends_no_strict_flag(model: FakeOpenAI) -> None:
    model.script(text("hi"))
    turn(model, [], "hello", changes={"strict_tools": False})
    assert all("strict" not in tool["function"] for tool in model.requests[0]["tools"])


def test_a_streamed_reply_with_a_lone_surrogate_is_kept_valid(model: FakeOpenAI) -> None:
    model.script(text("half \ud83d of an emoji"))
    pieces: list[str] = []
    result, sink = turn(model, [], "hi", on_text=pieces.append)
    assert "".join(pieces) == "half \ud83d of an emoji"  # the terminal makes its own peace
    assert result.reply == "half \ufffd of an emoji"
    assert sink.messages[-1] == {"role": "assistant", "content": "half \ufffd of an emoji"}


def test_an_unknown_model_is_a_configuration_error(model: FakeOpenAI) -> None:
    model.script(error(404, "The model `gpt-9` does not exist"))
    with pytest.raises(ConfigError) as raised:
        turn(model, [], "hi")
    assert str(raised.value) == (
        "model 'gpt-4o-mini' not found: set OPENAI_MODEL to a model you have"
    )
