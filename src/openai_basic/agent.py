"""The agent loop: chat completions with tools until the model answers.

``run_agent`` knows the OpenAI client, the tool registry and a ``MessageSink``. Every message it
adds to the history goes to the sink the moment it exists, so a mirror sees it in order.
It never imports Acontext.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, cast

import openai
from openai import Omit, OpenAI, Stream, omit
from openai.lib.streaming.chat import ChatCompletionStreamState, ContentDeltaEvent
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessage,
    ChatCompletionMessageParam,
)
from openai.types.completion_usage import CompletionUsage

from openai_basic.errors import ServiceError
from openai_basic.model_errors import refusal, refuses_strict
from openai_basic.text import valid
from openai_basic.tools import Approver, ToolCall, ToolRegistry, ToolResult

Message = dict[str, Any]
CANCELLED = "Error: cancelled by the user before this tool finished."
NO_RESULT = "Error: no result was recorded for this tool call (the earlier run was interrupted)."
LIMIT_NOTE = (
    "You have reached the limit of tool calls for this turn. "
    "Answer the user now with what you have, without calling tools."
)


@dataclass(frozen=True, kw_only=True)
class AgentSpec:
    """What the agent is, the same for every turn: its model, prompt, tools and limits."""

    model: str
    registry: ToolRegistry
    system_prompt: str = ""
    max_iterations: int = 10  # model calls with tools per turn before the model must answer
    strict_tools: bool = True  # False for a server that rejects strict tool schemas

    def for_next_turn(self, result: TurnResult) -> AgentSpec:
        """This spec with what the turn learnt about the server: whether it takes strict tools."""
        return self if result.strict_tools else replace(self, strict_tools=False)


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

    @classmethod
    def of(cls, tokens: CompletionUsage | None, seconds: float) -> Usage:
        """One model call's usage."""
        if tokens is None:
            return cls(model_calls=1, seconds=seconds)
        return cls(tokens.prompt_tokens, tokens.completion_tokens, 1, seconds)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.model_calls + other.model_calls,
            self.seconds + other.seconds,
        )


@dataclass(frozen=True)
class TurnResult:
    """What one user turn produced.

    ``strict_tools`` is false once the server has rejected strict tool schemas: pass it on to the
    next turn's spec, so the conversation does not ask with them again.
    """

    reply: str
    messages: tuple[Message, ...]
    model_calls: int
    hit_limit: bool
    usage: Usage = Usage()
    strict_tools: bool = True


@dataclass
class _Turn:
    """One turn in progress. The history and the sink are kept in step: nothing reaches one
    without the other."""

    spec: AgentSpec
    client: OpenAI
    history: list[Message]
    sink: MessageSink
    on_text: Callable[[str], None] | None
    strict: bool
    added: list[Message] = field(default_factory=list)
    usage: Usage = Usage()

    def add(self, message: Message, meta: dict[str, Any] | None = None) -> None:
        self.history.append(message)
        self.added.append(message)
        self.sink.append(message, meta)

    def answer_unanswered(self, content: str) -> None:
        """Answer every tool call of the last assistant message that has no answer yet."""
        for call in unanswered_tool_calls(self.history):
            self.add({"role": "tool", "tool_call_id": call.id, "content": content})

    def result(self, reply: Message, calls: int, hit_limit: bool) -> TurnResult:
        content = reply.get("content") or ""
        return TurnResult(content, tuple(self.added), calls, hit_limit, self.usage, self.strict)


def run_agent(
    spec: AgentSpec,
    *,
    client: OpenAI,
    history: list[Message],
    user_message: str,
    sink: MessageSink,
    on_tool_result: Callable[[ToolResult], None] = lambda result: None,
    on_text: Callable[[str], None] | None = None,
    approve: Approver | None = None,
) -> TurnResult:
    """Run one user turn; ``history`` (without the system prompt) is extended in place. With
    ``on_text`` the reply is streamed and each piece of text passed to it as it arrives; the
    history and the sink still get each message once, complete. ``approve`` answers the calls of
    tools that need approval (without it they are refused); it is asked on this thread."""
    turn = _Turn(spec, client, history, sink, on_text, strict=spec.strict_tools)
    turn.answer_unanswered(NO_RESULT)  # a history left by an interrupted run
    turn.add({"role": "user", "content": valid(user_message)})
    try:
        for calls_made in range(1, spec.max_iterations + 1):
            assistant = _complete(turn)
            calls = _tool_calls(assistant)
            if not calls:
                return turn.result(assistant, calls_made, hit_limit=False)
            for result in spec.registry.call_all(calls, approve=approve):
                turn.add(result.as_message())
                on_tool_result(result)
        final = _complete(turn, last_call=True)
        return turn.result(final, spec.max_iterations + 1, hit_limit=True)
    except KeyboardInterrupt:
        turn.answer_unanswered(CANCELLED)  # so the history stays valid for the next request
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


def _complete(turn: _Turn, *, last_call: bool = False) -> Message:
    """Call the model once, add its message to the turn, and return it."""
    started = time.perf_counter()
    completion = _ask(turn, last_call=last_call)
    seconds = time.perf_counter() - started
    if completion is None or not completion.choices:
        raise ServiceError("OpenAI", "the model returned no choices")
    message = _message(completion.choices[0].message)
    turn.usage += Usage.of(completion.usage, seconds)
    turn.add(message, _meta(completion, seconds, turn.spec.model))
    return message


def _ask(turn: _Turn, *, last_call: bool) -> ChatCompletion | None:
    """One model call, in this package's errors. A server that rejects strict tool schemas is
    asked again without them, and is not asked with them again in this turn."""
    try:
        return _send(turn, last_call=last_call)
    except openai.APIError as exc:
        if not (turn.strict and refuses_strict(exc)):
            raise refusal(exc, turn.spec.model).error() from exc
    turn.strict = False
    return _ask(turn, last_call=last_call)


def _send(turn: _Turn, *, last_call: bool) -> ChatCompletion | None:
    """The request; a streamed reply is put together by the SDK, its text passed on as it comes."""
    spec = turn.spec
    system = [{"role": "system", "content": spec.system_prompt}] if spec.system_prompt else []
    limit = [{"role": "system", "content": LIMIT_NOTE}] if last_call else []
    # the history is kept as the JSON the API takes, which is what these types describe
    messages = cast("list[ChatCompletionMessageParam]", [*system, *turn.history, *limit])
    tools = cast("list[ChatCompletionFunctionToolParam]", spec.registry.schemas(strict=turn.strict))
    choice: Literal["none"] | Omit = "none" if tools and last_call else omit
    create = turn.client.chat.completions.create
    if turn.on_text is None:
        return create(model=spec.model, messages=messages, tools=tools or omit, tool_choice=choice)
    with create(
        model=spec.model,
        messages=messages,
        tools=tools or omit,
        tool_choice=choice,
        stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        return _gathered(stream, turn.on_text)


def _gathered(
    stream: Stream[ChatCompletionChunk], on_text: Callable[[str], None]
) -> ChatCompletion | None:
    """The streamed completion as the SDK accumulates it (None when nothing came)."""
    state: ChatCompletionStreamState[None] = ChatCompletionStreamState()
    completion: ChatCompletion | None = None
    try:
        for chunk in stream:
            for event in state.handle_chunk(chunk):
                if isinstance(event, ContentDeltaEvent) and event.delta:
                    on_text(event.delta)
            completion = state.current_completion_snapshot
    except openai.APIConnectionError as exc:
        if completion is None:  # nothing came: the server could not be reached
            raise
        # the SDK says the same of a reply cut off: name it, so no one checks their settings
        raise ServiceError("OpenAI", "the reply was cut off mid-stream; ask again") from exc
    return completion


def _message(reply: ChatCompletionMessage) -> Message:
    """The assistant message to keep, its text made valid (a reply can carry a lone surrogate)."""
    content = None if reply.content is None else valid(reply.content)
    message: Message = {"role": "assistant", "content": content}
    calls = [call for call in reply.tool_calls or () if call.type == "function"]
    if calls:
        message["tool_calls"] = [
            {
                "id": valid(call.id),
                "type": "function",
                "function": {
                    "name": valid(call.function.name),
                    "arguments": valid(call.function.arguments),
                },
            }
            for call in calls
        ]
    return message


def _meta(completion: ChatCompletion, seconds: float, model: str) -> dict[str, Any]:
    """What the session keeps beside an answer: the model, the time, and the tokens if told."""
    meta: dict[str, Any] = {"model": completion.model or model, "latency_ms": round(seconds * 1000)}
    tokens = completion.usage
    if tokens is not None:
        meta["usage"] = {
            "prompt_tokens": tokens.prompt_tokens,
            "completion_tokens": tokens.completion_tokens,
            "total_tokens": tokens.prompt_tokens + tokens.completion_tokens,
        }
    return meta


def _tool_calls(message: Message) -> list[ToolCall]:
    return [
        ToolCall(call["id"], call["function"]["name"], call["function"]["arguments"])
        for call in message.get("tool_calls") or []
    ]
