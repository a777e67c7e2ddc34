"""The agent loop: chat completions with tools until the model answers.

``run_agent`` knows the OpenAI client, the tool registry and a ``MessageSink``. Every message it
adds to the history goes to the sink the moment it exists, so a mirror sees it in order.
It never imports Acontext.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from openai_basic.errors import ConfigError, ServiceError
from openai_basic.tools import ToolCall, ToolRegistry, ToolResult

if TYPE_CHECKING:
    from openai import OpenAI

Message = dict[str, Any]
CANCELLED = "Error: cancelled by the user before this tool finished."
NO_RESULT = "Error: no result was recorded for this tool call (the earlier run was interrupted)."
LIMIT_NOTE = (
    "You have reached the limit of tool calls for this turn. "
    "Answer the user now with what you have, without calling tools."
)


class MessageSink(Protocol):
    """Receives each message of the conversation once, in order."""

    def append(self, message: Message, meta: dict[str, Any] | None = None) -> None: ...


@dataclass(frozen=True)
class TurnResult:
    """What one user turn produced."""

    reply: str
    messages: tuple[Message, ...]
    model_calls: int
    hit_limit: bool


@dataclass
class _Turn:
    """The history and the sink, kept in step: nothing reaches one without the other."""

    history: list[Message]
    sink: MessageSink
    added: list[Message] = field(default_factory=list)

    def add(self, message: Message, meta: dict[str, Any] | None = None) -> None:
        self.history.append(message)
        self.added.append(message)
        self.sink.append(message, meta)


def run_agent(
    *,
    client: OpenAI,
    model: str,
    registry: ToolRegistry,
    history: list[Message],
    user_message: str,
    sink: MessageSink,
    system_prompt: str = "",
    max_iterations: int = 10,
    on_tool_result: Callable[[ToolResult], None] | None = None,
) -> TurnResult:
    """Run one user turn. ``history`` (without the system prompt) is extended in place."""
    turn = _Turn(history, sink)
    for call in unanswered_tool_calls(history):  # a history left by an interrupted run
        turn.add({"role": "tool", "tool_call_id": call.id, "content": NO_RESULT})
    turn.add({"role": "user", "content": user_message})
    pending: list[ToolCall] = []
    try:
        for calls_made in range(1, max_iterations + 1):
            assistant, meta = _complete(client, model, system_prompt, history, registry)
            turn.add(assistant, meta)
            pending = _tool_calls(assistant)
            if not pending:
                return TurnResult(
                    assistant.get("content") or "", tuple(turn.added), calls_made, False
                )
            for result in registry.call_all(pending):
                turn.add(result.as_message())
                pending = [c for c in pending if c.id != result.call_id]
                if on_tool_result is not None:
                    on_tool_result(result)
        final, meta = _complete(client, model, system_prompt, history, registry, last_call=True)
        turn.add(final, meta)
        return TurnResult(final.get("content") or "", tuple(turn.added), max_iterations + 1, True)
    except KeyboardInterrupt:
        for call in pending:  # every tool call made gets an answer, so the history stays valid
            turn.add({"role": "tool", "tool_call_id": call.id, "content": CANCELLED})
        raise


def _complete(
    client: OpenAI,
    model: str,
    system_prompt: str,
    history: list[Message],
    registry: ToolRegistry,
    *,
    last_call: bool = False,
) -> tuple[Message, dict[str, Any]]:
    import openai

    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages += history
    if last_call:
        messages.append({"role": "system", "content": LIMIT_NOTE})
    options: dict[str, Any] = {}
    if len(registry):
        options["tools"] = registry.schemas()
        if last_call:
            options["tool_choice"] = "none"
    started = time.perf_counter()
    try:
        completion = client.chat.completions.create(model=model, messages=messages, **options)  # type: ignore[arg-type]
    except openai.AuthenticationError as exc:
        raise ConfigError("OPENAI_API_KEY was rejected by the model server") from exc
    except openai.BadRequestError as exc:
        text = _error_text(exc)
        if any(word in text.lower() for word in ("tool", "strict", "function")):
            raise ConfigError(
                f"model {model!r} rejected the tools ({text}); choose a model with tool calling "
                "(OPENAI_MODEL)"
            ) from exc
        raise ServiceError("OpenAI", f"HTTP 400: {text}") from exc
    except openai.APIStatusError as exc:
        raise ServiceError("OpenAI", f"HTTP {exc.status_code}: {_error_text(exc)}") from exc
    except openai.APIConnectionError as exc:
        raise ServiceError("OpenAI", f"cannot reach the model server ({exc})") from exc
    if not completion.choices:
        raise ServiceError("OpenAI", "the model returned no choices")
    reply = completion.choices[0].message
    message: Message = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
            for call in reply.tool_calls
            if call.type == "function"
        ]
    usage = completion.usage
    meta: dict[str, Any] = {
        "model": completion.model or model,
        "latency_ms": round((time.perf_counter() - started) * 1000),
    }
    if usage is not None:
        meta["usage"] = {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        }
    return message, meta


def unanswered_tool_calls(history: list[Message]) -> list[ToolCall]:
    """The tool calls of the last assistant message that no tool message answers."""
    answered: set[str] = set()
    for message in reversed(history):
        if message.get("role") == "tool":
            answered.add(str(message.get("tool_call_id")))
        elif message.get("role") == "assistant":
            return [call for call in _tool_calls(message) if call.id not in answered]
        else:
            return []
    return []


def _tool_calls(message: Message) -> list[ToolCall]:
    return [
        ToolCall(call["id"], call["function"]["name"], call["function"]["arguments"])
        for call in message.get("tool_calls") or []
    ]


def _error_text(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(exc, "message", exc))
