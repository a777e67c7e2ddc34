"""Tests of the fake OpenAI server, driven only through the real ``openai`` SDK."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageParam,
)

from tests.fakes.openai_server import (
    EXHAUSTED_MESSAGE,
    FakeOpenAI,
    ToolCallSpec,
    echo_responder,
    error,
    start_fake_openai,
    text,
    tool_calls,
)

MODEL = "gpt-4o-mini"

WEATHER_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with start_fake_openai() as server:
        yield server


@pytest.fixture
def client(fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0) as sdk:
        yield sdk


def user(content: str) -> ChatCompletionMessageParam:
    return {"role": "user", "content": content}


def collect_stream(
    stream: openai.Stream[ChatCompletionChunk],
) -> tuple[list[ChatCompletionChunk], str, dict[int, dict[str, Any]]]:
    """Reassemble a streamed completion: (chunks, content, tool calls by index)."""
    chunks: list[ChatCompletionChunk] = []
    content = ""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in stream:
        chunks.append(chunk)
        for choice in chunk.choices:
            if choice.delta.content:
                content += choice.delta.content
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(
                    delta.index, {"id": None, "name": None, "arguments": "", "pieces": 0}
                )
                if delta.id:
                    call["id"] = delta.id
                if delta.function and delta.function.name:
                    call["name"] = delta.function.name
                if delta.function and delta.function.arguments:
                    call["arguments"] += delta.function.arguments
                    call["pieces"] += 1
    return chunks, content, calls


def test_non_streamed_text(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script(text("Hello there, human."))

    completion = client.chat.completions.create(model=MODEL, messages=[user("hi")])

    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello there, human."
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (10, 5)
    assert completion.usage.total_tokens == 15
    assert fake.pending == 0


def test_usage_can_be_omitted(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script(text("x", usage=None))
    assert client.chat.completions.create(model=MODEL, messages=[user("hi")]).usage is None


def test_tool_calls_round_trip(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script(
        tool_calls(
            ("get_weather", '{"city": "Paris"}'),
            ToolCallSpec("get_weather", '{"city": "Oslo"}', id="call_custom"),
            content="Checking.",
        ),
        text("Paris is sunny, Oslo is cold."),
    )
    messages: list[ChatCompletionMessageParam] = [user("weather in Paris and Oslo?")]

    first = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])

    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Checking."
    calls = choice.message.tool_calls
    assert calls is not None
    assert [c.id for c in calls] == ["call_1", "call_custom"]
    assert all(c.type == "function" for c in calls)
    assert [c.function.name for c in calls] == ["get_weather", "get_weather"]  # type: ignore[union-attr]
    assert [json.loads(c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        {"city": "Paris"},
        {"city": "Oslo"},
    ]

    messages.append(choice.message.model_dump(exclude_none=True))  # type: ignore[arg-type]
    for call in calls:
        messages.append({"role": "tool", "tool_call_id": call.id, "content": "weather data"})
    second = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])

    assert second.choices[0].message.content == "Paris is sunny, Oslo is cold."
    assert second.choices[0].finish_reason == "stop"
    sent = fake.requests[1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    assert [m["tool_call_id"] for m in sent[2:]] == ["call_1", "call_custom"]


def test_auto_tool_call_ids_are_unique_across_replies(
    fake: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake.script(tool_calls(("a", "{}")), tool_calls(("b", {"k": 1})))
    ids = []
    for _ in range(2):
        completion = client.chat.completions.create(model=MODEL, messages=[user("go")])
        calls = completion.choices[0].message.tool_calls
        assert calls is not None
        ids.append(calls[0].id)
    assert ids == ["call_1", "call_2"]


def test_streamed_text_equals_non_streamed(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    content = "The quick brown fox jumps over the lazy dog."
    fake.script(text(content), text(content))

    plain = client.chat.completions.create(model=MODEL, messages=[user("hi")])
    stream = client.chat.completions.create(model=MODEL, messages=[user("hi")], stream=True)
    chunks, streamed, calls = collect_stream(stream)

    assert streamed == plain.choices[0].message.content == content
    assert calls == {}
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) >= 5  # split per word
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert all(c.usage is None for c in chunks)  # no include_usage -> no usage chunk


def test_streamed_tool_calls_reassembled(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script(
        tool_calls(
            ("get_weather", '{"city": "Paris"}'),
            ToolCallSpec("get_weather", '{"city": "Lyon"}', id="call_x"),
        )
    )

    stream = client.chat.completions.create(
        model=MODEL, messages=[user("weather?")], tools=[WEATHER_TOOL], stream=True
    )
    chunks, content, calls = collect_stream(stream)

    assert content == ""
    assert sorted(calls) == [0, 1]
    assert calls[0]["id"] == "call_1"
    assert calls[1]["id"] == "call_x"
    assert calls[0]["name"] == calls[1]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert json.loads(calls[1]["arguments"]) == {"city": "Lyon"}
    assert all(call["pieces"] >= 2 for call in calls.values())
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_stream_usage_with_include_usage(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script(text("counted words here", usage=(42, 7)))

    stream = client.chat.completions.create(
        model=MODEL,
        messages=[user("hi")],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks, content, _ = collect_stream(stream)

    assert content == "counted words here"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (42, 7)
    assert last.usage.total_tokens == 49
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_script_exhausted_is_internal_server_error(fake: FakeOpenAI) -> None:
    # Even with retries enabled, the fake tells the SDK not to retry (x-should-retry: false).
    with openai.OpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=2) as sdk:
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as excinfo:
            sdk.chat.completions.create(model=MODEL, messages=[user("hi")])
    assert time.monotonic() - started < 0.4
    assert EXHAUSTED_MESSAGE in str(excinfo.value)
    assert excinfo.value.status_code == 500
    assert len(fake.requests) == 1


def test_wrong_api_key_is_authentication_error(fake: FakeOpenAI) -> None:
    fake.script(text("never sent"))
    with (
        openai.OpenAI(api_key="sk-wrong-key-123", base_url=fake.base_url, max_retries=0) as sdk,
        pytest.raises(openai.AuthenticationError) as excinfo,
    ):
        sdk.chat.completions.create(model=MODEL, messages=[user("hi")])
    assert excinfo.value.status_code == 401
    assert excinfo.value.code == "invalid_api_key"
    assert excinfo.value.type == "invalid_request_error"
    assert "Incorrect API key" in excinfo.value.message
    assert fake.pending == 1  # rejected before the model was consulted


def test_api_key_check_can_be_disabled() -> None:
    with (
        start_fake_openai(api_key=None, responder=echo_responder) as fake,
        openai.OpenAI(api_key="anything", base_url=fake.base_url, max_retries=0) as sdk,
    ):
        reply = sdk.chat.completions.create(model=MODEL, messages=[user("ping")])
    assert reply.choices[0].message.content == "echo: ping"


def test_rate_limit_then_success_with_retries(fake: FakeOpenAI) -> None:
    fake.script(error(429, "slow down"), error(429), text("finally"))
    with openai.OpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=2) as sdk:
        started = time.monotonic()
        completion = sdk.chat.completions.create(model=MODEL, messages=[user("hi")])
        elapsed = time.monotonic() - started

    assert completion.choices[0].message.content == "finally"
    assert elapsed < 0.5  # retry-after-ms: 1 keeps the SDK backoff short
    assert [h["x-stainless-retry-count"] for h in fake.request_headers] == ["0", "1", "2"]


def test_rate_limit_error_shape(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script(error(429, "slow down"))
    with pytest.raises(openai.RateLimitError) as excinfo:
        client.chat.completions.create(model=MODEL, messages=[user("hi")])
    err = excinfo.value
    assert err.message == "Error code: 429 - slow down"
    assert err.body == {
        "message": "slow down",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert err.response.headers["retry-after-ms"] == "1"
    assert err.request_id is not None and err.request_id.startswith("req_")


def test_scripted_errors_map_to_sdk_exceptions(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script(error(400, "bad"), error(503), error(429, error_code="insufficient_quota"))
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[user("hi")])
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=MODEL, messages=[user("hi")])
    with pytest.raises(openai.RateLimitError) as excinfo:
        client.chat.completions.create(model=MODEL, messages=[user("hi")])
    assert excinfo.value.code == "insufficient_quota"


def test_scripted_error_in_streaming_mode(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script(error(500, "boom"))
    with pytest.raises(openai.InternalServerError, match="boom"):
        client.chat.completions.create(model=MODEL, messages=[user("hi")], stream=True)


def _tool_turn(call_id: str = "call_1") -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
    ]


INVALID_HISTORIES: dict[str, tuple[list[dict[str, Any]], str]] = {
    "dangling tool call at end": (_tool_turn(), "did not have response messages: call_1"),
    "dangling tool call then user": (
        [*_tool_turn(), {"role": "user", "content": "hello?"}],
        "did not have response messages: call_1",
    ),
    "tool answers unknown id": (
        [*_tool_turn(), {"role": "tool", "tool_call_id": "call_zzz", "content": "x"}],
        "'call_zzz' does not match",
    ),
    "tool without preceding tool_calls": (
        [
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "call_1", "content": "x"},
        ],
        "must be a response to a preceding message with 'tool_calls'",
    ),
    "tool answer after an intervening user message": (
        [
            *_tool_turn(),
            {"role": "user", "content": "wait"},
            {"role": "tool", "tool_call_id": "call_1", "content": "x"},
        ],
        "did not have response messages",
    ),
    "duplicate tool answer": (
        [
            *_tool_turn(),
            {"role": "tool", "tool_call_id": "call_1", "content": "x"},
            {"role": "tool", "tool_call_id": "call_1", "content": "y"},
        ],
        "duplicate tool message",
    ),
    "message without role": ([{"content": "who am I"}], "'messages[0].role'"),
}


@pytest.mark.parametrize("case", list(INVALID_HISTORIES), ids=list(INVALID_HISTORIES))
def test_invalid_history_is_bad_request(fake: FakeOpenAI, client: openai.OpenAI, case: str) -> None:
    messages, expected = INVALID_HISTORIES[case]
    fake.script(text("unused"))
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    assert expected in excinfo.value.message
    assert excinfo.value.type == "invalid_request_error"
    assert fake.pending == 1  # a rejected request does not consume a scripted reply
    assert len(fake.requests) == 1  # but it is recorded


def test_valid_parallel_tool_history_is_accepted(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    history = _tool_turn()
    history[1]["tool_calls"].append(
        {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    )
    history += [
        {"role": "tool", "tool_call_id": "call_2", "content": "b"},  # any order is fine
        {"role": "tool", "tool_call_id": "call_1", "content": "a"},
        {"role": "assistant", "content": "done"},
        {"role": "user", "content": "thanks"},
    ]
    fake.script(text("you're welcome"))
    completion = client.chat.completions.create(model=MODEL, messages=history)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "you're welcome"


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        (
            {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            "'additionalProperties' is required to be supplied and to be false",
        ),
        (
            {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
            "Missing: unit",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "where": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    }
                },
                "required": ["where"],
                "additionalProperties": False,
            },
            ".properties.where",
        ),
        (
            {
                "type": "object",
                "properties": {"unit": {"$ref": "#/$defs/Unit", "description": "The unit."}},
                "required": ["unit"],
                "additionalProperties": False,
                "$defs": {"Unit": {"type": "string", "enum": ["C", "F"]}},
            },
            "in context .properties.unit, $ref cannot have keywords {'description'}",
        ),
    ],
    ids=["no-additionalProperties", "missing-required", "nested-object", "ref-with-siblings"],
)
def test_invalid_strict_tool_schema_is_bad_request(
    fake: FakeOpenAI, client: openai.OpenAI, parameters: dict[str, Any], expected: str
) -> None:
    tool: ChatCompletionFunctionToolParam = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": parameters, "strict": True},
    }
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.chat.completions.create(model=MODEL, messages=[user("hi")], tools=[tool])
    assert expected in excinfo.value.message
    assert "get_weather" in excinfo.value.message


def test_non_strict_tool_schema_is_not_checked(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    tool: ChatCompletionFunctionToolParam = {
        "type": "function",
        "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {}}}},
    }
    fake.script(text("ok"))
    completion = client.chat.completions.create(model=MODEL, messages=[user("hi")], tools=[tool])
    assert completion.choices[0].message.content == "ok"


def test_a_fake_without_strict_refuses_the_flag_and_takes_the_tool_without_it(
    fake: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake.accepts_strict = False
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.chat.completions.create(model=MODEL, messages=[user("hi")], tools=[WEATHER_TOOL])
    assert excinfo.value.message.endswith(" - Unknown parameter: 'tools[0].function.strict'.")
    function = WEATHER_TOOL["function"].copy()
    del function["strict"]
    fake.script(text("ok"))
    completion = client.chat.completions.create(
        model=MODEL, messages=[user("hi")], tools=[{"type": "function", "function": function}]
    )
    assert completion.choices[0].message.content == "ok"


def test_requests_are_recorded(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script(text("one"), text("two"))
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "be brief"},
        user("first"),
    ]
    client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    client.chat.completions.create(
        model="other-model", messages=[user("second")], stream=True
    ).close()

    assert len(fake.requests) == len(fake.request_headers) == 2
    first, second = fake.requests
    assert first["model"] == MODEL
    assert first["messages"] == messages
    assert first["tools"] == [WEATHER_TOOL]
    assert "stream" not in first
    assert second["model"] == "other-model"
    assert second["stream"] is True
    assert second["messages"] == [{"role": "user", "content": "second"}]
    headers = fake.request_headers[0]
    assert headers["authorization"] == "Bearer sk-test"
    assert headers["content-type"] == "application/json"
    assert headers["x-stainless-lang"] == "python"

    # Records are deep copies: mutating them does not affect anything else.
    first["messages"].clear()
    assert fake.requests[0]["messages"] == []


def test_responder_used_when_queue_empty(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.responder = echo_responder
    fake.script(text("scripted first"))

    first = client.chat.completions.create(model=MODEL, messages=[user("a")])
    second = client.chat.completions.create(model=MODEL, messages=[user("b"), user("c")])
    streamed = client.chat.completions.create(model=MODEL, messages=[user("d e f")], stream=True)

    assert first.choices[0].message.content == "scripted first"
    assert second.choices[0].message.content == "echo: c"
    assert collect_stream(streamed)[1] == "echo: d e f"


def test_custom_responder_sees_conversation(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    seen: list[int] = []

    def responder(messages: list[dict[str, Any]]) -> Any:
        seen.append(len(messages))
        if messages[-1]["role"] == "user":
            return tool_calls(("get_weather", '{"city": "Rome"}'))
        return text(f"tool said {messages[-1]['content']}")

    fake.responder = responder
    history: list[Any] = [user("weather in Rome?")]
    first = client.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER_TOOL])
    message = first.choices[0].message
    assert message.tool_calls is not None
    history.append(message.model_dump(exclude_none=True))
    history.append({"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "warm"})
    second = client.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER_TOOL])

    assert second.choices[0].message.content == "tool said warm"
    assert seen == [1, 3]


def test_responder_exception_is_reported(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    def broken(messages: list[dict[str, Any]]) -> Any:
        raise ValueError("nope")

    fake.responder = broken
    with pytest.raises(openai.InternalServerError, match="responder raised ValueError: nope"):
        client.chat.completions.create(model=MODEL, messages=[user("hi")])


def test_delay_is_honoured(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.script(text("slow", delay=0.5), text("fast"))

    started = time.monotonic()
    client.chat.completions.create(model=MODEL, messages=[user("hi")])
    slow = time.monotonic() - started
    started = time.monotonic()
    client.chat.completions.create(model=MODEL, messages=[user("hi")])
    fast = time.monotonic() - started

    assert slow >= 0.5
    assert fast < 0.5  # the next reply does not wait (a margin for a loaded machine)


def test_delay_can_trigger_sdk_timeout(fake: FakeOpenAI) -> None:
    fake.script(text("too slow", delay=0.3))
    with (
        openai.OpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0, timeout=0.1) as sdk,
        pytest.raises(openai.APITimeoutError),
    ):
        sdk.chat.completions.create(model=MODEL, messages=[user("hi")])


def test_models_list(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    models = list(client.models.list())
    assert [m.id for m in models] == [fake.model]
    assert client.models.retrieve(fake.model).id == fake.model
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_custom_model_name() -> None:
    with (
        start_fake_openai(model="fake-1") as fake,
        openai.OpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0) as sdk,
    ):
        assert [m.id for m in sdk.models.list()] == ["fake-1"]


def test_keep_alive_reuses_connection(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.responder = echo_responder
    for i in range(4):
        completion = client.chat.completions.create(model=MODEL, messages=[user(str(i))])
        assert completion.choices[0].message.content == f"echo: {i}"
    list(client.models.list())
    assert fake.connections == 1


def test_async_client_streaming_and_keep_alive(fake: FakeOpenAI) -> None:
    fake.responder = echo_responder

    async def run() -> list[str]:
        async with openai.AsyncOpenAI(
            api_key="sk-test", base_url=fake.base_url, max_retries=0
        ) as sdk:
            results = []
            for word in ("alpha beta", "gamma"):
                stream = await sdk.chat.completions.create(
                    model=MODEL,
                    messages=[user(word)],
                    stream=True,
                    stream_options={"include_usage": True},
                )
                content = ""
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        content += chunk.choices[0].delta.content
                results.append(content)
            plain = await sdk.chat.completions.create(model=MODEL, messages=[user("delta")])
            results.append(plain.choices[0].message.content or "")
            return results

    assert asyncio.run(run()) == ["echo: alpha beta", "echo: gamma", "echo: delta"]
    # The async SDK drains the chunked body after [DONE], so the connection is reused.
    assert fake.connections == 1


def test_stop_is_idempotent_and_closes_port() -> None:
    fake = start_fake_openai()
    base_url = fake.base_url
    fake.stop()
    fake.stop()
    with (
        openai.OpenAI(api_key="sk-test", base_url=base_url, max_retries=0) as sdk,
        pytest.raises(openai.APIConnectionError),
    ):
        sdk.models.list()
