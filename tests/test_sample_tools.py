"""The sample tools: whatever TOOLS holds is offered to the model as strict schemas it accepts.

The tests of get_weather and book_flight skip once you replace them with tools of your own.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

from openai_basic import sample_tools
from openai_basic.tools import ToolRegistry
from tests.fakes.openai_server import FakeOpenAI, text


def sample(name: str) -> Any:
    """A sample tool, while TOOLS still offers it."""
    function = getattr(sample_tools, name, None)
    if function is None or function not in sample_tools.TOOLS:
        pytest.skip(f"the sample tool {name} has been replaced")
    return function


def test_every_tool_in_tools_is_offered_with_a_strict_schema_the_model_accepts(
    model: FakeOpenAI,
) -> None:
    registry = ToolRegistry(sample_tools.TOOLS)
    schemas = registry.schemas()
    assert [schema["function"]["name"] for schema in schemas] == [
        function.__name__ for function in sample_tools.TOOLS
    ]
    assert all(schema["function"]["strict"] for schema in schemas)
    assert all(schema["function"]["description"] for schema in schemas)
    model.script(text("ok"))
    client = openai.OpenAI(api_key="sk-test", base_url=model.base_url, max_retries=0)
    client.chat.completions.create(  # the fake refuses what OpenAI's strict mode refuses
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        tools=schemas,  # type: ignore[arg-type]
    )


def test_get_weather_is_made_up_but_the_same_every_time() -> None:
    get_weather = sample("get_weather")
    assert get_weather("Helsinki") == get_weather("Helsinki")
    assert get_weather("Helsinki").startswith("The weather in Helsinki is ")


def test_book_flight_books_nothing_but_gives_a_reference() -> None:
    book_flight = sample("book_flight")
    assert book_flight("Shanghai", "Helsinki", "tomorrow").startswith(
        "Booked the cheapest flight from Shanghai to Helsinki on tomorrow: SAMPLE-"
    )


def test_the_sample_schemas_describe_each_parameter() -> None:
    registry = ToolRegistry([sample("get_weather"), sample("book_flight")])
    weather, flight = (schema["function"] for schema in registry.schemas())
    assert weather["description"] == (
        "Get the current weather in a city (sample tool: returns made-up weather)."
    )
    assert weather["parameters"]["properties"]["city"]["description"] == (
        'The city name, for example "Helsinki".'
    )
    assert flight["parameters"]["required"] == ["from_city", "to_city", "date"]
    assert flight["parameters"]["properties"]["date"]["description"] == (
        'The departure date, for example "2026-12-01" or "tomorrow".'
    )
