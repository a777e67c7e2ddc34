"""An in-process stand-in for ``openai.OpenAI``: zero latency, real ``ChatCompletion`` objects.

``run_agent`` only calls ``client.chat.completions.create(...)``. The stub answers a request whose
last message is the user's with ``tool_turn`` (an assistant message with tool calls) and any other
with ``answer``. The completions are built once, so the stub costs next to nothing; what it does
cost is timed (``seconds``) so a benchmark can subtract it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from openai.types.chat import ChatCompletion

ToolCallSpec = tuple[str, str, str]  # (id, name, arguments JSON)


def completion(content: str | None, calls: Sequence[ToolCallSpec] = ()) -> ChatCompletion:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            for call_id, name, arguments in calls
        ]
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if calls else "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
    )


class StubClient:
    """``client.chat.completions.create`` answered from two prebuilt completions."""

    def __init__(self, *, tool_turn: ChatCompletion, answer: ChatCompletion) -> None:
        self.chat = self  # client.chat.completions.create -> self.create
        self.completions = self
        self._tool_turn = tool_turn
        self._answer = answer
        self.seconds = 0.0  # time spent inside create()
        self.calls: list[tuple[float, float]] = []  # (entered, returned) per call

    def create(self, *, model: str, messages: list[dict[str, Any]], **options: Any) -> Any:
        entered = time.perf_counter()
        reply = self._tool_turn if messages[-1].get("role") == "user" else self._answer
        returned = time.perf_counter()
        self.seconds += returned - entered
        self.calls.append((entered, returned))
        return reply
