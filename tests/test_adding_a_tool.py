"""The README's walk-through: a new tool, driven through the scripted model.

It registers the walk-through's tool on its own, so it passes before the README's step and after,
and checks that the README shows this very function.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from openai import OpenAI

from openai_basic import AgentSpec, ToolRegistry, run_agent
from tests.fakes.openai_server import FakeOpenAI, text, tool_calls


def get_exchange_rate(base: str, quote: str) -> str:
    """Get today's exchange rate between two currencies.

    Args:
        base: The currency to convert from, as an ISO code like "EUR".
        quote: The currency to convert to, as an ISO code like "USD".
    """
    return f"1 {base} = 1.08 {quote}"


TOOLS = [get_exchange_rate]
README = Path(__file__).resolve().parents[1] / "README.md"


class ListSink:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def append(self, message: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
        self.messages.append(message)


def test_the_model_can_use_the_exchange_rate_tool(model: FakeOpenAI) -> None:
    model.script(
        tool_calls(("get_exchange_rate", '{"base": "EUR", "quote": "USD"}')),
        text("1 EUR is 1.08 USD today."),
    )
    history: list[dict[str, Any]] = []
    result = run_agent(
        AgentSpec(model="gpt-4o-mini", registry=ToolRegistry(TOOLS)),
        client=OpenAI(api_key="sk-test", base_url=model.base_url),
        history=history,
        user_message="How many dollars is a euro?",
        sink=ListSink(),
    )
    assert history[2]["content"] == "1 EUR = 1.08 USD"
    assert result.reply == "1 EUR is 1.08 USD today."
    (offered,) = [tool["function"] for tool in model.requests[0]["tools"]]
    assert offered["name"] == "get_exchange_rate"
    assert offered["parameters"]["properties"]["base"]["description"] == (
        'The currency to convert from, as an ISO code like "EUR".'
    )


def test_the_readme_shows_this_tool_as_written() -> None:
    assert inspect.getsource(get_exchange_rate) in README.read_text()
