"""Tools and a scripted model of the tests' own: the sample tools may be replaced, these stay."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.openai_server import Reply, text, tool_calls


def forecast(city: str) -> str:
    """Tell the weather in a city.

    Args:
        city: the city
    """
    return f"Sunny in {city}."


def reserve(origin: str, destination: str, day: str) -> str:
    """Reserve a seat on a flight.

    Args:
        origin: where it leaves from
        destination: where it goes
        day: when
    """
    return f"Seat reserved from {origin} to {destination} on {day}."


def look_up(city: str) -> str:
    """Look a city up.

    Args:
        city: the city
    """
    return f"facts about {city}"


def look_up_then_answer(messages: list[dict[str, Any]]) -> Reply:
    """A model that looks up every prompt, then answers from the tool result."""
    last = messages[-1]
    if last["role"] == "user":
        return tool_calls(("look_up", json.dumps({"city": last["content"]})))
    return text(f"done: {last['content']}")
