"""SAMPLE TOOLS: replace these with your own.

A tool is a typed function with a docstring. The first paragraph tells the model what it does; the
``Args:`` section describes each parameter. Add your function to ``TOOLS`` and the agent offers it.
Mark a tool that acts on the world (books, pays, deletes, sends) with ``@needs_approval``: the user
is asked before each of its calls runs.
"""

from __future__ import annotations

import zlib

from openai_basic.tools import ToolFunction, needs_approval

_SKIES = ("sunny", "partly cloudy", "cloudy", "light rain", "clear and cold")


def get_weather(city: str) -> str:
    """Get the current weather in a city (sample tool: returns made-up weather).

    Args:
        city: The city name, for example "Helsinki".
    """
    seed = zlib.crc32(city.strip().lower().encode())
    return f"The weather in {city} is {_SKIES[seed % len(_SKIES)]}, {seed % 25} degrees Celsius."


@needs_approval
def book_flight(from_city: str, to_city: str, date: str) -> str:
    """Book the cheapest flight between two cities (sample tool: books nothing).

    Args:
        from_city: The departure city.
        to_city: The destination city.
        date: The departure date, for example "2026-12-01" or "tomorrow".
    """
    reference = f"SAMPLE-{zlib.crc32(f'{from_city}|{to_city}|{date}'.encode()) % 100000:05d}"
    return f"Booked the cheapest flight from {from_city} to {to_city} on {date}: {reference}."


TOOLS: list[ToolFunction] = [get_weather, book_flight]
