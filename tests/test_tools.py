"""The tool registry: schemas from typed functions, and dispatch that never raises."""

from __future__ import annotations

import threading
from enum import Enum
from typing import Literal

import pytest

from openai_basic.errors import ToolDefinitionError
from openai_basic.sample_tools import TOOLS, book_flight, get_weather
from openai_basic.tools import ToolCall, ToolRegistry


def test_sample_tool_schemas_are_strict_and_described() -> None:
    assert ToolRegistry(TOOLS).schemas() == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get the current weather in a city "
                "(sample tool: returns made-up weather).",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {
                            "type": "string",
                            "description": 'The city name, for example "Helsinki".',
                        }
                    },
                    "required": ["city"],
                    "additionalProperties": False,
                },
                "strict": True,
            },
        },
        {
            "type": "function",
            "function": {
                "name": "book_flight",
                "description": "Book the cheapest flight between two cities "
                "(sample tool: books nothing).",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "from_city": {"type": "string", "description": "The departure city."},
                        "to_city": {"type": "string", "description": "The destination city."},
                        "date": {
                            "type": "string",
                            "description": 'The departure date, for example "2026-12-01" '
                            'or "tomorrow".',
                        },
                    },
                    "required": ["from_city", "to_city", "date"],
                    "additionalProperties": False,
                },
                "strict": True,
            },
        },
    ]


class Unit(Enum):
    C = "celsius"
    F = "fahrenheit"


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
    registry = ToolRegistry([get_weather])
    with pytest.raises(ToolDefinitionError, match="already registered"):
        registry.register(get_weather)


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
        ("get_weather", '{"city": ', "Error: the arguments are not valid JSON"),
        ("get_weather", "[1, 2]", "Error: invalid arguments for get_weather: "),
        ("get_weather", "{}", "Error: invalid arguments for get_weather: city: Field required"),
        (
            "get_weather",
            '{"city": 7}',
            "Error: invalid arguments for get_weather: city: Input should be a valid string",
        ),
        (
            "get_weather",
            '{"city": "Oslo", "when": "now"}',
            "Error: invalid arguments for get_weather: when: Extra inputs are not permitted",
        ),
        (
            "teleport",
            "{}",
            "Error: unknown tool 'teleport'. Available tools: get_weather, book_flight.",
        ),
    ],
)
def test_bad_calls_become_error_text_for_the_model(
    name: str, arguments: str, expected: str
) -> None:
    result = ToolRegistry(TOOLS).call(ToolCall("call_1", name, arguments))
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


def test_sample_tools_are_deterministic() -> None:
    assert get_weather("Helsinki") == get_weather("Helsinki")
    assert get_weather("Helsinki").startswith("The weather in Helsinki is ")
    assert book_flight("Shanghai", "Helsinki", "tomorrow").startswith(
        "Booked the cheapest flight from Shanghai to Helsinki on tomorrow: SAMPLE-"
    )
