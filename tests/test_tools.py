"""The tool registry: schemas from typed functions, and dispatch that never raises.

The registry gets tools of its own here; tests/test_sample_tools.py covers the sample tools.
"""

from __future__ import annotations

import asyncio
import threading
from enum import Enum
from typing import Any, Literal

import openai
import pytest
from pydantic import BaseModel

from openai_basic.errors import ToolDefinitionError
from openai_basic.tools import ToolCall, ToolRegistry
from tests.fakes.openai_server import FakeOpenAI, text


def get_time(city: str) -> str:
    """Get the local time in a city.

    Args:
        city: The city's name, for example "Oslo".
    """
    return f"It is noon in {city}."


def offer(model: FakeOpenAI, registry: ToolRegistry, *, strict: bool = True) -> None:
    """Send the registry's schemas to the fake model server, which checks them as OpenAI does."""
    model.script(text("ok"))
    client = openai.OpenAI(api_key="sk-test", base_url=model.base_url, max_retries=0)
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        tools=registry.schemas(strict=strict),  # type: ignore[arg-type]
    )


def test_a_schema_is_strict_and_described_by_the_docstring() -> None:
    assert ToolRegistry([get_time]).schemas() == [
        {
            "type": "function",
            "function": {
                "name": "get_time",
                "description": "Get the local time in a city.",
                "parameters": {
                    "type": "object",
                    "title": "get_time_arguments",
                    "properties": {
                        "city": {
                            "type": "string",
                            "title": "City",
                            "description": 'The city\'s name, for example "Oslo".',
                        }
                    },
                    "required": ["city"],
                    "additionalProperties": False,
                },
                "strict": True,
            },
        }
    ]


def test_the_schema_without_strict_differs_only_by_the_flag() -> None:
    registry = ToolRegistry([get_time])
    (strict,), (plain,) = registry.schemas(), registry.schemas(strict=False)
    assert plain["function"] == {k: v for k, v in strict["function"].items() if k != "strict"}


class Unit(Enum):
    C = "celsius"
    F = "fahrenheit"


class Passenger(BaseModel):
    name: str
    seat: str = "aisle"


def forecast(
    city: str, days: int = 3, unit: Unit = Unit.C, mode: Literal["brief", "full"] = "brief"
) -> str:
    """Forecast the weather.

    Several lines of description.

    Args:
        city: The city.
        days: How many days,
            from 1 to 7.
        unit: The unit.
        mode: How much detail.

    Returns:
        The forecast.
    """
    return f"{city} {days} {unit.value} {mode}"


def test_defaults_are_nullable_and_used_when_the_model_sends_null() -> None:
    registry = ToolRegistry([forecast])
    function = registry.schemas()[0]["function"]
    params = function["parameters"]
    assert function["description"] == "Forecast the weather.\n\nSeveral lines of description."
    assert params["required"] == ["city", "days", "unit", "mode"]
    assert params["properties"]["days"]["description"] == "How many days, from 1 to 7."
    assert {"type": "null"} in params["properties"]["days"]["anyOf"]
    assert "Returns" not in str(params)
    result = registry.call(
        ToolCall("c1", "forecast", '{"city": "Oslo", "days": null, "unit": null, "mode": "full"}')
    )
    assert (result.ok, result.content) == (True, "Oslo 3 celsius full")
    result = registry.call(
        ToolCall(
            "c2", "forecast", '{"city": "Oslo", "days": 5, "unit": "fahrenheit", "mode": null}'
        )
    )
    assert result.content == "Oslo 5 fahrenheit brief"


def book_seat(passenger: Passenger, unit: Unit, note: str = "") -> str:
    """Book a seat and say the cabin temperature.

    Args:
        passenger: Who travels.
        unit: The temperature unit.
        note: Anything for the crew.
    """
    return f"{passenger.name} in {passenger.seat}, cabin in {unit.value}, note {note!r}"


def test_enum_and_model_parameters_make_a_schema_strict_mode_accepts(model: FakeOpenAI) -> None:
    registry = ToolRegistry([book_seat])
    offer(model, registry)  # a {"$ref": ..., "description": ...} would be refused
    properties = registry.schemas()[0]["function"]["parameters"]["properties"]
    assert properties["passenger"]["description"] == "Who travels."
    assert properties["passenger"]["required"] == ["name", "seat"]
    assert properties["unit"]["description"] == "The temperature unit."
    assert properties["unit"]["enum"] == ["celsius", "fahrenheit"]
    result = registry.call(
        ToolCall(
            "c",
            "book_seat",
            '{"passenger": {"name": "Ada", "seat": "window"}, "unit": "celsius", "note": null}',
        )
    )
    assert (result.ok, result.content) == (True, "Ada in window, cabin in celsius, note ''")


def test_schemas_without_strict_are_offered_as_they_are(model: FakeOpenAI) -> None:
    offer(model, ToolRegistry([book_seat, get_time]), strict=False)
    assert all("strict" not in tool["function"] for tool in model.requests[0]["tools"])


def test_a_function_that_cannot_be_a_tool_reports_every_problem_at_once() -> None:
    def broken(city, *rest: str, **extra: str) -> str:  # type: ignore[no-untyped-def]
        return city  # type: ignore[no-any-return]

    with pytest.raises(ToolDefinitionError) as caught:
        ToolRegistry([broken])
    assert caught.value.function_name == "broken"
    assert caught.value.problems == [
        "it needs a docstring that says what it does",
        "parameter 'city' has no type hint",
        "*rest / **rest parameters are not supported",
        "*extra / **extra parameters are not supported",
    ]


def test_a_parameter_type_without_a_json_schema_is_rejected_at_registration() -> None:
    def takes_lock(lock: threading.Lock) -> str:  # type: ignore[valid-type]
        """Uses a lock."""
        return ""

    with pytest.raises(ToolDefinitionError, match="no JSON schema"):
        ToolRegistry([takes_lock])


def test_registering_a_name_twice_is_an_error() -> None:
    registry = ToolRegistry([get_time])
    with pytest.raises(ToolDefinitionError, match="already registered"):
        registry.register(get_time)


def test_register_works_as_a_decorator() -> None:
    registry = ToolRegistry()

    @registry.register
    def shout(text: str) -> str:
        """Shout the text."""
        return text.upper()

    assert shout("a") == "A"
    assert registry.call(ToolCall("c", "shout", '{"text": "hey"}')).content == "HEY"


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("get_time", '{"city": ', "Error: the arguments are not valid JSON"),
        ("get_time", "[1, 2]", "Error: invalid arguments for get_time: "),
        ("get_time", "{}", "Error: invalid arguments for get_time: city: Field required"),
        (
            "get_time",
            '{"city": 7}',
            "Error: invalid arguments for get_time: city: Input should be a valid string",
        ),
        (
            "get_time",
            '{"city": "Oslo", "when": "now"}',
            "Error: invalid arguments for get_time: when: Extra inputs are not permitted",
        ),
        ("teleport", "{}", "Error: unknown tool 'teleport'. Available tools: get_time, forecast."),
    ],
)
def test_bad_calls_become_error_text_for_the_model(
    name: str, arguments: str, expected: str
) -> None:
    result = ToolRegistry([get_time, forecast]).call(ToolCall("call_1", name, arguments))
    assert result.ok is False
    assert result.content.startswith(expected)
    assert result.as_message() == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": result.content,
    }


def test_an_exception_inside_a_tool_becomes_error_text() -> None:
    def divide(a: int, b: int) -> float:
        """Divide a by b."""
        return a / b

    result = ToolRegistry([divide]).call(ToolCall("c", "divide", '{"a": 1, "b": 0}'))
    assert (result.ok, result.content) == (
        False,
        "Error: divide failed: ZeroDivisionError: division by zero",
    )


def test_results_that_are_not_text_are_sent_as_json() -> None:
    def lookup(key: str) -> dict[str, object]:
        """Look a key up."""
        return {"key": key, "hits": [1, 2], "ok": True}

    result = ToolRegistry([lookup]).call(ToolCall("c", "lookup", '{"key": "ä"}'))
    assert result.content == '{"key": "ä", "hits": [1, 2], "ok": true}'


def test_several_calls_run_concurrently_and_answer_in_call_order() -> None:
    barrier = threading.Barrier(3, timeout=5)

    def wait_then_echo(text: str) -> str:
        """Wait for the other calls, then echo."""
        barrier.wait()  # raises BrokenBarrierError unless all three run at the same time
        return text

    calls = [ToolCall(f"c{i}", "wait_then_echo", f'{{"text": "t{i}"}}') for i in range(3)]
    results = ToolRegistry([wait_then_echo]).call_all(calls)
    assert [(r.call_id, r.content, r.ok) for r in results] == [
        ("c0", "t0", True),
        ("c1", "t1", True),
        ("c2", "t2", True),
    ]


def test_an_async_tool_is_run_and_its_result_returned() -> None:
    async def fetch(url: str) -> dict[str, Any]:
        """Fetch a page."""
        await asyncio.sleep(0)
        return {"url": url, "status": 200}

    result = ToolRegistry([fetch]).call(ToolCall("c", "fetch", '{"url": "https://x"}'))
    assert (result.ok, result.content) == (True, '{"url": "https://x", "status": 200}')


def test_an_async_tool_that_raises_becomes_error_text() -> None:
    async def fail() -> str:
        """Fail."""
        await asyncio.sleep(0)
        raise ConnectionError("host down")

    result = ToolRegistry([fail]).call(ToolCall("c", "fail", "{}"))
    assert (result.ok, result.content) == (False, "Error: fail failed: ConnectionError: host down")


def test_an_async_tool_that_overruns_its_timeout_is_answered_with_an_error() -> None:
    release = threading.Event()

    async def hang() -> str:
        """Hang."""
        while not release.is_set():
            await asyncio.sleep(0.01)
        return "woke"

    registry = ToolRegistry()
    registry.register(hang, timeout=0.2)
    try:
        result = registry.call(ToolCall("c", "hang", "{}"))
    finally:
        release.set()
    assert (result.ok, result.content) == (False, "Error: hang did not finish within 0.2 s.")


def test_async_tools_run_concurrently() -> None:
    barrier = threading.Barrier(2, timeout=30)

    async def meet(name: str) -> str:
        """Wait for the other call."""
        await asyncio.to_thread(barrier.wait)  # BrokenBarrierError unless both run at once
        return name

    calls = [ToolCall(f"c{i}", "meet", f'{{"name": "n{i}"}}') for i in range(2)]
    results = ToolRegistry([meet]).call_all(calls)
    assert [(r.content, r.ok) for r in results] == [("n0", True), ("n1", True)]
