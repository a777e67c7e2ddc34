"""The agent loop: chat completions with tools until the model answers.

``run_agent`` knows the OpenAI client, the tool registry and a ``MessageSink``. Every message it
adds to the history goes to the sink the moment it exists, so a mirror sees it in order.
It never imports Acontext.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from openai_basic.errors import AgentError, ConfigError, ServiceError
from openai_basic.text import valid
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
# How model servers (OpenAI and compatible ones) word a 400 about a history they will not take,
# such as a tool message without its call or a call left unanswered ...
BAD_HISTORY_WORDS = ("tool_call_id", "with 'tool_calls'", "role 'tool'", "messages[", "messages.[")
# ... and about tools from a model that has no tool calling.
NO_TOOLS_WORDS = ("support", "unknown parameter", "unrecognized", "auto-tool-choice")


class MessageSink(Protocol):
    """Receives each message of the conversation once, in order."""

    def append(self, message: Message, meta: dict[str, Any] | None = None) -> None: ...


@dataclass(frozen=True)
class Usage:
    """Tokens and time spent on model calls (servers that report no usage count as zero)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_calls: int = 0
    seconds: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.model_calls + other.model_calls,
            self.seconds + other.seconds,
        )


@dataclass(frozen=True)
class TurnResult:
    """What one user turn produced."""

    reply: str
    messages: tuple[Message, ...]
    model_calls: int
    hit_limit: bool
    usage: Usage = Usage()


@dataclass
class _Turn:
    """The history and the sink, kept in step: nothing reaches one without the other."""

    history: list[Message]
    sink: MessageSink
    added: list[Message] = field(default_factory=list)
    usage: Usage = Usage()

    def add(self, message: Message, meta: dict[str, Any] | None = None) -> None:
        self.history.append(message)
        self.added.append(message)
        self.sink.append(message, meta)

    def result(self, reply: Message, calls: int, hit_limit: bool) -> TurnResult:
        return TurnResult(
            reply.get("content") or "", tuple(self.added), calls, hit_limit, self.usage
        )


@dataclass(frozen=True)
class _Model:
    """One way of calling the model for a whole turn."""

    client: OpenAI
    model: str
    system_prompt: str
    registry: ToolRegistry
    on_text: Callable[[str], None] | None
    strict: bool


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
    on_text: Callable[[str], None] | None = None,
    strict_tools: bool = True,
) -> TurnResult:
    """Run one user turn. ``history`` (without the system prompt) is extended in place.

    With ``on_text`` the reply is streamed and each piece of text is passed to it as it arrives;
    the history and the sink still get each message once, complete.
    """
    llm = _Model(client, model, system_prompt, registry, on_text, strict_tools)
    turn = _Turn(history, sink)
    for call in unanswered_tool_calls(history):  # a history left by an interrupted run
        turn.add({"role": "tool", "tool_call_id": call.id, "content": NO_RESULT})
    turn.add({"role": "user", "content": valid(user_message)})
    pending: list[ToolCall] = []
    try:
        for calls_made in range(1, max_iterations + 1):
            assistant = _complete(llm, turn)
            pending = _tool_calls(assistant)
            if not pending:
                return turn.result(assistant, calls_made, hit_limit=False)
            for result in registry.call_all(pending):
                turn.add(result.as_message())
                pending = pending[1:]
                if on_tool_result is not None:
                    on_tool_result(result)
        final = _complete(llm, turn, last_call=True)
        return turn.result(final, max_iterations + 1, hit_limit=True)
    except KeyboardInterrupt:
        for call in pending:  # every tool call made gets an answer, so the history stays valid
            turn.add({"role": "tool", "tool_call_id": call.id, "content": CANCELLED})
        raise


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


def _complete(llm: _Model, turn: _Turn, *, last_call: bool = False) -> Message:
    """Call the model once, add its message to the turn, and return it."""
    import openai

    messages = [{"role": "system", "content": llm.system_prompt}] if llm.system_prompt else []
    messages += turn.history
    if last_call:
        messages.append({"role": "system", "content": LIMIT_NOTE})
    started = time.perf_counter()
    strict = llm.strict
    while True:
        request = _request(llm, messages, strict=strict, last_call=last_call)
        try:
            if llm.on_text is None:
                message, usage, model = _answer(llm.client.chat.completions.create(**request))
            else:
                stream = llm.client.chat.completions.create(
                    **request, stream=True, stream_options={"include_usage": True}
                )
                message, usage, model = _gather(stream, llm.on_text)
            break
        except openai.BadRequestError as exc:
            text = _error_text(exc)
            if strict and "strict" in text.lower():  # a server without strict schemas
                strict = False
                continue
            raise _rejection(llm.model, text, exc.param) from exc
        except openai.AuthenticationError as exc:
            raise ConfigError("OPENAI_API_KEY was rejected by the model server") from exc
        except openai.APIStatusError as exc:
            raise ServiceError("OpenAI", f"HTTP {exc.status_code}: {_error_text(exc)}") from exc
        except openai.APIConnectionError as exc:
            raise ServiceError("OpenAI", f"cannot reach the model server ({exc})") from exc
    seconds = time.perf_counter() - started
    meta: dict[str, Any] = {"model": model or llm.model, "latency_ms": round(seconds * 1000)}
    if usage is not None:
        meta["usage"] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": usage[0] + usage[1],
        }
    turn.usage += Usage(*(usage or (0, 0)), model_calls=1, seconds=seconds)
    turn.add(message, meta)
    return message


def _rejection(model: str, text: str, param: str | None) -> AgentError:
    """Name what a 400 refused: the conversation so far, the tools, or something else.

    Both of the first two mention tools, so the history is told apart first: choosing another
    model does not repair a history.
    """
    lowered = text.lower()
    if (param or "").startswith("messages") or any(w in lowered for w in BAD_HISTORY_WORDS):
        return ServiceError(
            "OpenAI",
            f"the stored conversation is not valid for the model ({text}); "
            "inspect it with: agent history SESSION_ID",
        )
    mentions_tools = "tool" in lowered or "function" in lowered
    if mentions_tools and any(word in lowered for word in NO_TOOLS_WORDS):
        return ConfigError(
            f"model {model!r} rejected the tools ({text}); choose a model with tool calling "
            "(OPENAI_MODEL)"
        )
    return ServiceError("OpenAI", f"HTTP 400: {text}")


def _request(
    llm: _Model, messages: list[Message], *, strict: bool, last_call: bool
) -> dict[str, Any]:
    request: dict[str, Any] = {"model": llm.model, "messages": messages}
    if len(llm.registry):
        request["tools"] = llm.registry.schemas(strict=strict)
        if last_call:
            request["tool_choice"] = "none"
    return request


Answer = tuple[Message, tuple[int, int] | None, str | None]


def _answer(completion: Any) -> Answer:
    if not completion.choices:
        raise ServiceError("OpenAI", "the model returned no choices")
    reply = completion.choices[0].message
    calls = [
        (call.id, call.function.name, call.function.arguments)
        for call in reply.tool_calls or ()
        if call.type == "function"
    ]
    usage = completion.usage
    tokens = (usage.prompt_tokens, usage.completion_tokens) if usage is not None else None
    return _message(reply.content, calls), tokens, completion.model


def _gather(stream: Iterable[Any], on_text: Callable[[str], None]) -> Answer:
    """Put a streamed reply back together, passing text on as it arrives."""
    text: list[str] = []
    calls: dict[int, list[str]] = {}  # index -> [id, name, arguments]
    tokens: tuple[int, int] | None = None
    model: str | None = None
    for chunk in stream:
        model = chunk.model or model
        if chunk.usage is not None:
            tokens = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
        for choice in chunk.choices:
            if choice.delta.content:
                text.append(choice.delta.content)
                on_text(choice.delta.content)
            for delta in choice.delta.tool_calls or ():
                call = calls.setdefault(delta.index, ["", "", ""])
                call[0] = delta.id or call[0]
                if delta.function is not None:
                    call[1] += delta.function.name or ""
                    call[2] += delta.function.arguments or ""
    ordered = [tuple(calls[index]) for index in sorted(calls)]
    return _message("".join(text) or None, ordered), tokens, model


def _message(content: str | None, calls: list[Any]) -> Message:
    """The assistant message, its text made valid (a reply can carry a lone surrogate)."""
    message: Message = {"role": "assistant", "content": None if content is None else valid(content)}
    if calls:
        message["tool_calls"] = [
            {
                "id": valid(id_),
                "type": "function",
                "function": {"name": valid(name), "arguments": valid(arguments)},
            }
            for id_, name, arguments in calls
        ]
    return message


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
