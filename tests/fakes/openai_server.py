"""An in-process fake of the OpenAI Chat Completions HTTP API, for tests.

The fake is a real HTTP/1.1 server on 127.0.0.1 (random port) so that the real
``openai`` SDK can talk to it unchanged::

    with start_fake_openai() as fake:
        fake.script(text("hello"), tool_calls(("get_time", "{}")))
        client = openai.OpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0)
        ...
        assert fake.requests[0]["messages"][-1]["content"] == "hi"

Each POST to ``/v1/chat/completions`` pops one scripted :class:`Reply` (FIFO);
when the queue is empty the optional ``responder`` answers from the request's
``messages``; otherwise the fake answers HTTP 500 "fake model: script exhausted".

Requests are validated roughly like the real API does (tool-call / tool-message
pairing, roles, strict tool schemas); invalid ones get a 400
``invalid_request_error`` and do not consume a scripted reply.

Only the standard library is used.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

__all__ = [
    "EXHAUSTED_MESSAGE",
    "FakeOpenAI",
    "Reply",
    "Responder",
    "ToolCallSpec",
    "echo_responder",
    "error",
    "start_fake_openai",
    "text",
    "tool_calls",
]

JSONDict = dict[str, Any]

EXHAUSTED_MESSAGE = "fake model: script exhausted"

_VALID_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

_DEFAULT_ERROR_MESSAGES: dict[int, str] = {
    400: "Bad request.",
    401: "Incorrect API key provided.",
    403: "You are not allowed to perform this request.",
    404: "The model does not exist or you do not have access to it.",
    408: "Request timed out.",
    409: "Conflict.",
    422: "Unprocessable entity.",
    429: "Rate limit reached for requests. Please try again shortly.",
    500: "The server had an error while processing your request.",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
}


# --------------------------------------------------------------------------- #
# Script items
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class ToolCallSpec:
    """One tool call the fake model makes. ``id`` defaults to ``call_<n>``."""

    name: str
    arguments: str
    id: str | None = None


@dataclass(frozen=True)
class Reply:
    """One scripted answer of the fake model.

    ``status != 200`` produces an OpenAI-style error body instead of a completion.
    ``finish_reason`` overrides the computed one ("tool_calls" / "stop"), e.g. "length".
    ``error_type`` / ``error_code`` override the defaults derived from ``status``.
    ``cut_after``: a streamed answer stops after this many chunks, the connection closed.
    """

    content: str | None = None
    tool_calls: tuple[ToolCallSpec, ...] = ()
    status: int = 200
    error_message: str = ""
    delay: float = 0.0
    usage: tuple[int, int] | None = (10, 5)
    finish_reason: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    cut_after: int | None = None


Responder = Callable[[list[JSONDict]], Reply]
"""Answers a request from its ``messages`` (a deep copy) when the script queue is empty."""


def text(content: str, **kw: Any) -> Reply:
    """A plain assistant text reply."""
    return Reply(content=content, **kw)


def tool_calls(
    *calls: tuple[str, str | Mapping[str, Any]] | ToolCallSpec,
    content: str | None = None,
    **kw: Any,
) -> Reply:
    """A reply with tool calls; each call is ``(name, arguments_json)`` or a ToolCallSpec.

    Arguments given as a mapping are JSON-encoded for convenience.
    """
    specs: list[ToolCallSpec] = []
    for call in calls:
        if isinstance(call, ToolCallSpec):
            specs.append(call)
            continue
        name, arguments = call
        if not isinstance(arguments, str):
            arguments = json.dumps(dict(arguments))
        specs.append(ToolCallSpec(name=name, arguments=arguments))
    return Reply(content=content, tool_calls=tuple(specs), **kw)


def error(status: int, message: str = "", **kw: Any) -> Reply:
    """An error reply (``message`` defaults to an OpenAI-like text for ``status``)."""
    return Reply(status=status, error_message=message, **kw)


def _text_of(content: Any) -> str:
    """Text of a message ``content`` (a string or a list of content parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        ]
        return "".join(parts)
    return str(content)


def echo_responder(messages: list[JSONDict]) -> Reply:
    """Answer ``"echo: <content of the last user message>"``."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return text(f"echo: {_text_of(message.get('content'))}")
    return text("echo: ")


# --------------------------------------------------------------------------- #
# Request validation
# --------------------------------------------------------------------------- #


class _InvalidRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def _validate_messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise _InvalidRequest("Missing required parameter: 'messages'.", "messages")
    if not messages:
        raise _InvalidRequest("Invalid 'messages': empty array. Expected at least 1.", "messages")

    # ids of the tool calls of the last assistant message, while its tool block is open
    open_calls: list[str] | None = None
    open_index = -1
    answered: set[str] = set()

    def close_block(before: str) -> None:
        if open_calls is None:
            return
        missing = [call_id for call_id in open_calls if call_id not in answered]
        if missing:
            raise _InvalidRequest(
                f"An assistant message with 'tool_calls' (messages[{open_index}]) must be "
                f"followed by tool messages responding to each 'tool_call_id' {before}. "
                f"The following tool_call_ids did not have response messages: "
                f"{', '.join(missing)}",
                f"messages.[{open_index}].tool_calls",
            )

    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _InvalidRequest(f"Invalid '{where}': expected an object.", f"messages.[{i}]")
        role = message.get("role")
        if role is None:
            raise _InvalidRequest(
                f"Missing required parameter: '{where}.role'.", f"messages.[{i}].role"
            )
        if role not in _VALID_ROLES:
            raise _InvalidRequest(
                f"Invalid value: '{role}'. Supported values are: "
                f"{', '.join(sorted(_VALID_ROLES))} ('{where}.role').",
                f"messages.[{i}].role",
            )

        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _InvalidRequest(
                    f"Missing required parameter: '{where}.tool_call_id'.",
                    f"messages.[{i}].tool_call_id",
                )
            if open_calls is None:
                raise _InvalidRequest(
                    f"Invalid parameter: messages with role 'tool' must be a response to a "
                    f"preceding message with 'tool_calls' ({where} answers '{call_id}', but "
                    f"the message before it is not an assistant message with tool_calls).",
                    f"messages.[{i}].role",
                )
            if call_id not in open_calls:
                raise _InvalidRequest(
                    f"Invalid parameter: {where}.tool_call_id '{call_id}' does not match any "
                    f"tool call of the preceding assistant message (messages[{open_index}] "
                    f"has: {', '.join(open_calls)}).",
                    f"messages.[{i}].tool_call_id",
                )
            if call_id in answered:
                raise _InvalidRequest(
                    f"Invalid parameter: duplicate tool message for tool_call_id '{call_id}' "
                    f"({where}).",
                    f"messages.[{i}].tool_call_id",
                )
            if "content" not in message or message.get("content") is None:
                raise _InvalidRequest(
                    f"Missing required parameter: '{where}.content'.", f"messages.[{i}].content"
                )
            answered.add(call_id)
            continue

        close_block(f"before the next non-tool message ({where}, role '{role}')")
        open_calls = None
        answered = set()

        if role in ("system", "developer", "user") and message.get("content") is None:
            raise _InvalidRequest(
                f"Missing required parameter: '{where}.content'.", f"messages.[{i}].content"
            )

        if role == "assistant":
            calls = message.get("tool_calls")
            if calls:
                open_calls = _validate_assistant_tool_calls(calls, i)
                open_index = i
            elif message.get("content") is None and not any(
                message.get(key) for key in ("function_call", "audio", "refusal")
            ):
                raise _InvalidRequest(
                    f"Invalid value for '{where}.content': expected a string, got null "
                    f"(an assistant message needs 'content' or 'tool_calls').",
                    f"messages.[{i}].content",
                )

    close_block("(the conversation ends before they were answered)")


def _validate_assistant_tool_calls(calls: Any, index: int) -> list[str]:
    where = f"messages[{index}].tool_calls"
    if not isinstance(calls, list):
        raise _InvalidRequest(f"Invalid type for '{where}': expected an array.", where)
    ids: list[str] = []
    for j, call in enumerate(calls):
        here = f"{where}[{j}]"
        if not isinstance(call, dict):
            raise _InvalidRequest(f"Invalid type for '{here}': expected an object.", here)
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise _InvalidRequest(f"Missing required parameter: '{here}.id'.", here)
        if call_id in ids:
            raise _InvalidRequest(f"Invalid '{here}.id': duplicate tool call id '{call_id}'.", here)
        if call.get("type", "function") == "function":
            function = call.get("function")
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise _InvalidRequest(f"Missing required parameter: '{here}.function.name'.", here)
            if not isinstance(function.get("arguments"), str):
                raise _InvalidRequest(
                    f"Missing required parameter: '{here}.function.arguments' "
                    f"(must be a JSON string).",
                    here,
                )
        ids.append(call_id)
    return ids


def _check_strict_schema(schema: Any, tool_name: str, context: str) -> None:
    """Apply the structured-outputs rules the API enforces for ``strict: true``."""
    if isinstance(schema, list):
        for k, item in enumerate(schema):
            _check_strict_schema(item, tool_name, f"{context}[{k}]")
        return
    if not isinstance(schema, dict):
        return
    siblings = sorted(key for key in schema if key != "$ref")
    if "$ref" in schema and siblings:
        raise _InvalidRequest(
            f"Invalid schema for function '{tool_name}': in context {context or '(root)'}, "
            f"$ref cannot have keywords {{{', '.join(repr(key) for key in siblings)}}}.",
            "tools",
        )
    schema_type = schema.get("type")
    is_object = schema_type == "object" or (
        isinstance(schema_type, list) and "object" in schema_type
    )
    if is_object or isinstance(schema.get("properties"), dict):
        _check_strict_object(schema, tool_name, context)
    for key in ("items", "anyOf", "allOf", "oneOf", "prefixItems"):
        if key in schema:
            _check_strict_schema(schema[key], tool_name, f"{context}.{key}")
    for key in ("$defs", "definitions"):
        defs = schema.get(key)
        if isinstance(defs, dict):
            for name, sub in defs.items():
                _check_strict_schema(sub, tool_name, f"{context}.{key}.{name}")


def _check_strict_object(schema: JSONDict, tool_name: str, context: str) -> None:
    if schema.get("additionalProperties") is not False:
        raise _InvalidRequest(
            f"Invalid schema for function '{tool_name}': in context {context or '(root)'}, "
            f"'additionalProperties' is required to be supplied and to be false "
            f"(strict mode).",
            "tools",
        )
    properties = schema.get("properties")
    props = properties if isinstance(properties, dict) else {}
    required = schema.get("required")
    required_list = required if isinstance(required, list) else []
    missing = [name for name in props if name not in required_list]
    if props and (not isinstance(required, list) or missing):
        raise _InvalidRequest(
            f"Invalid schema for function '{tool_name}': in context {context or '(root)'}, "
            f"'required' is required to be supplied and to be an array including every "
            f"key in properties (strict mode). Missing: {', '.join(missing)}.",
            "tools",
        )
    for name, sub in props.items():
        _check_strict_schema(sub, tool_name, f"{context}.properties.{name}")


def _validate_tools(tools: Any, accepts_strict: bool) -> None:
    if not isinstance(tools, list):
        raise _InvalidRequest("Invalid type for 'tools': expected an array.", "tools")
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _InvalidRequest(f"Invalid type for '{where}': expected an object.", where)
        if tool.get("type") != "function":
            continue  # custom tools etc.: not validated
        function = tool.get("function")
        if not isinstance(function, dict):
            raise _InvalidRequest(f"Missing required parameter: '{where}.function'.", where)
        name = function.get("name")
        if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
            raise _InvalidRequest(
                f"Invalid '{where}.function.name': string does not match pattern "
                f"'^[a-zA-Z0-9_-]{{1,64}}$' (got {name!r}).",
                f"{where}.function.name",
            )
        if "strict" in function and not accepts_strict:  # as some compatible servers answer
            raise _InvalidRequest(
                f"Unknown parameter: '{where}.function.strict'.", f"{where}.function.strict"
            )
        if function.get("strict") is True:
            _check_strict_parameters(function.get("parameters"), name)


def _check_strict_parameters(parameters: Any, name: str) -> None:
    if not isinstance(parameters, dict):
        raise _InvalidRequest(
            f"Invalid schema for function '{name}': strict mode requires 'parameters' "
            f"to be an object schema.",
            "tools",
        )
    _check_strict_schema(parameters, name, "")


def _validate_request(body: JSONDict, *, accepts_strict: bool = True) -> None:
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _InvalidRequest("You must provide a model parameter.", "model")
    _validate_messages(body.get("messages"))
    tools = body.get("tools")
    if tools is not None:
        _validate_tools(tools, accepts_strict)
    if body.get("tool_choice") is not None and not tools:
        raise _InvalidRequest(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified.",
            "tool_choice",
        )
    if body.get("stream_options") is not None and body.get("stream") is not True:
        raise _InvalidRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )


# --------------------------------------------------------------------------- #
# Response building
# --------------------------------------------------------------------------- #


def _error_body(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> JSONDict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _default_error_type(status: int) -> tuple[str, str | None]:
    if status == 401:
        return "invalid_request_error", "invalid_api_key"
    if status == 403:
        return "permission_error", None
    if status == 404:
        return "invalid_request_error", "model_not_found"
    if status == 429:
        return "requests", "rate_limit_exceeded"
    if status >= 500:
        return "server_error", None
    return "invalid_request_error", None


def _usage_body(usage: tuple[int, int]) -> JSONDict:
    prompt, completion = usage
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _split_words(content: str) -> list[str]:
    """Split so that ``"".join(result) == content`` with one word (+ trailing space) each."""
    return re.findall(r"\S+\s*|\s+", content)


def _split_arguments(arguments: str) -> list[str]:
    """Split tool-call arguments into 2+ pieces (when there are at least 2 characters)."""
    if len(arguments) < 2:
        return [arguments] if arguments else []
    pieces = 3 if len(arguments) >= 3 else 2
    step = -(-len(arguments) // pieces)
    return [arguments[k : k + step] for k in range(0, len(arguments), step)]


@dataclass
class _Completion:
    """A successful reply resolved for one request (tool call ids assigned)."""

    completion_id: str
    created: int
    model: str
    content: str | None
    calls: list[tuple[str, str, str]]  # (id, name, arguments)
    finish_reason: str
    usage: tuple[int, int] | None

    def message(self) -> JSONDict:
        message: JSONDict = {"role": "assistant", "content": self.content, "refusal": None}
        if self.calls:
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
                for call_id, name, arguments in self.calls
            ]
        return message

    def full(self) -> JSONDict:
        body: JSONDict = {
            "id": self.completion_id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": self.message(),
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                }
            ],
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
        if self.usage is not None:
            body["usage"] = _usage_body(self.usage)
        return body

    def chunks(self, include_usage: bool) -> Iterator[JSONDict]:
        def chunk(delta: JSONDict, finish_reason: str | None = None) -> JSONDict:
            body: JSONDict = {
                "id": self.completion_id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "delta": delta,
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                ],
            }
            if include_usage:
                body["usage"] = None
            return body

        yield chunk(
            {
                "role": "assistant",
                "content": "" if self.content is not None else None,
                "refusal": None,
            }
        )
        for piece in _split_words(self.content or ""):
            yield chunk({"content": piece})
        for index, (call_id, name, arguments) in enumerate(self.calls):
            yield chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }
                    ]
                }
            )
            for piece in _split_arguments(arguments):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk({}, self.finish_reason)
        if include_usage and self.usage is not None:
            final = chunk({})
            final["choices"] = []
            final["usage"] = _usage_body(self.usage)
            yield final


# --------------------------------------------------------------------------- #
# HTTP plumbing
# --------------------------------------------------------------------------- #


class _BadBody(Exception):
    pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Client hang-ups (e.g. a stream closed after [DONE]) are normal; stay quiet.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"
    disable_nagle_algorithm = True  # small header/body writes must not wait for delayed ACKs
    server: _Server

    # -- lifecycle ---------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.open_connections.add(self.connection)
        self.server.fake._count_connection()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.open_connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- body / response helpers ------------------------------------------
    def _read_body(self) -> bytes:
        transfer_encoding = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in transfer_encoding:
            parts: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                if not size_line:
                    raise _BadBody("truncated chunked body")
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError as exc:
                    raise _BadBody("bad chunk size") from exc
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # discard trailers
                    return b"".join(parts)
                data = self.rfile.read(size)
                if len(data) != size:
                    raise _BadBody("truncated chunk")
                parts.append(data)
                self.rfile.readline(65537)  # CRLF after the chunk data
        length_header = self.headers.get("Content-Length")
        if not length_header:
            return b""
        try:
            length = int(length_header)
        except ValueError as exc:
            raise _BadBody("bad Content-Length") from exc
        data = self.rfile.read(length)
        if len(data) != length:
            raise _BadBody("truncated body")
        return data

    def _common_headers(self) -> None:
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
        self.send_header("openai-processing-ms", "1")
        self.send_header("openai-version", "2020-10-01")

    def _send_json(
        self, status: int, body: JSONDict, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self._common_headers()
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _send_error(
        self,
        status: int,
        message: str,
        type_: str,
        code: str | None = None,
        param: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._send_json(status, _error_body(message, type_, code, param), headers)

    def _send_stream(self, chunks: Iterator[JSONDict], *, cut: int | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self._common_headers()
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        try:
            for body in chunks:
                self._write_chunk(f"data: {json.dumps(body)}\n\n".encode())
            if cut is not None:  # no end: the client sees the connection close mid-answer
                self.close_connection = True
                return
            self._write_chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            # The client went away mid-stream; this connection is done.
            self.close_connection = True

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode("ascii") + data + b"\r\n")
        self.wfile.flush()

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/") or "/"

    def _check_auth(self) -> bool:
        expected = self.server.fake.api_key
        if expected is None:
            return True
        header = self.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if not header:
            self._send_error(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                "invalid_request_error",
            )
            return False
        if scheme.lower() != "bearer" or token.strip() != expected:
            shown = token.strip()
            masked = f"{shown[:3]}***{shown[-4:]}" if len(shown) > 8 else "***"
            self._send_error(
                401,
                f"Incorrect API key provided: {masked}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            )
            return False
        return True

    def _not_found(self) -> None:
        self._send_error(
            404,
            f"Invalid URL ({self.command} {self._path()})",
            "invalid_request_error",
        )

    # -- verbs ---------------------------------------------------------------
    def do_GET(self) -> None:
        try:
            self._read_body()
        except _BadBody:
            self.close_connection = True
            self._send_error(400, "Malformed request body.", "invalid_request_error")
            return
        path = self._path()
        if not path.startswith("/v1/models"):
            self._not_found()
            return
        if not self._check_auth():
            return
        fake = self.server.fake
        model = {"id": fake.model, "object": "model", "created": 1700000000, "owned_by": "system"}
        if path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [model]})
        elif path == f"/v1/models/{fake.model}":
            self._send_json(200, model)
        else:
            model_id = path.removeprefix("/v1/models/")
            self._send_error(
                404,
                f"The model '{model_id}' does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
                "model",
            )

    def do_POST(self) -> None:
        try:
            raw = self._read_body()
        except _BadBody as exc:
            self.close_connection = True
            self._send_error(400, f"Malformed request body: {exc}.", "invalid_request_error")
            return
        if self._path() != "/v1/chat/completions":
            self._not_found()
            return
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        if not isinstance(body, dict):
            self._send_error(
                400,
                "We could not parse the JSON body of your request. The request body must be "
                "a JSON object.",
                "invalid_request_error",
            )
            return

        fake = self.server.fake
        headers = {name.lower(): value for name, value in self.headers.items()}
        fake._record(body, headers)

        if not self._check_auth():
            return
        try:
            _validate_request(body, accepts_strict=fake.accepts_strict)
        except _InvalidRequest as exc:
            self._send_error(400, exc.message, "invalid_request_error", None, exc.param)
            return

        try:
            reply = fake._next_reply(copy.deepcopy(body["messages"]))
        except Exception as exc:  # a responder blew up: make it loud, not retried
            self._send_error(
                500,
                f"fake model: responder raised {type(exc).__name__}: {exc}",
                "server_error",
                headers=[("x-should-retry", "false")],
            )
            return
        if reply is None:
            self._send_error(
                500, EXHAUSTED_MESSAGE, "server_error", headers=[("x-should-retry", "false")]
            )
            return

        if reply.delay > 0:
            time.sleep(reply.delay)

        if reply.status != 200:
            type_, code = _default_error_type(reply.status)
            message = reply.error_message or _DEFAULT_ERROR_MESSAGES.get(
                reply.status, f"Error {reply.status}."
            )
            self._send_error(
                reply.status,
                message,
                reply.error_type or type_,
                reply.error_code if reply.error_code is not None else code,
                # Make SDK retries of scripted errors instant.
                headers=[("retry-after-ms", "1"), ("retry-after", "0")],
            )
            return

        completion = fake._resolve(reply, str(body["model"]))
        if body.get("stream") is True:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            chunks = completion.chunks(include_usage)
            self._send_stream(itertools.islice(chunks, reply.cut_after), cut=reply.cut_after)
        else:
            self._send_json(200, completion.full())


# --------------------------------------------------------------------------- #
# Public fake
# --------------------------------------------------------------------------- #


@dataclass(eq=False)
class FakeOpenAI:
    """A running fake OpenAI server (started on construction; see :func:`start_fake_openai`).

    With ``accepts_strict`` false it answers any tool that carries ``strict`` with a 400, as some
    OpenAI-compatible servers do.
    """

    api_key: str | None = "sk-test"
    model: str = "gpt-4o-mini"
    responder: Responder | None = None
    accepts_strict: bool = True
    requests: list[JSONDict] = field(default_factory=list, init=False)
    request_headers: list[dict[str, str]] = field(default_factory=list, init=False)
    base_url: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self._stopped = False
        self._lock = threading.Lock()
        self._queue: deque[Reply] = deque()
        self._call_ids = itertools.count(1)
        self._completion_ids = itertools.count(1)
        self._connections = 0
        self._server = _Server(self)
        port = self._server.server_port
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"fake-openai-{port}",
            daemon=True,
        )
        self._thread.start()

    # -- scripting -------------------------------------------------------------
    def script(self, *replies: Reply) -> None:
        """Append replies to the FIFO queue; each chat completion request pops one."""
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending(self) -> int:
        """Number of scripted replies not consumed yet."""
        with self._lock:
            return len(self._queue)

    @property
    def connections(self) -> int:
        """Number of TCP connections accepted so far (to observe keep-alive)."""
        with self._lock:
            return self._connections

    # -- lifecycle -------------------------------------------------------------
    def stop(self) -> None:
        """Stop serving and drop open (keep-alive) connections. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        with self._server.connections_lock:
            open_connections = list(self._server.open_connections)
        for conn in open_connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- used by the handler ---------------------------------------------------
    def _count_connection(self) -> None:
        with self._lock:
            self._connections += 1

    def _record(self, body: JSONDict, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append(copy.deepcopy(body))
            self.request_headers.append(dict(headers))

    def _next_reply(self, messages: list[JSONDict]) -> Reply | None:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            responder = self.responder
        if responder is None:
            return None
        return responder(messages)

    def _resolve(self, reply: Reply, model: str) -> _Completion:
        with self._lock:
            completion_id = f"chatcmpl-fake{next(self._completion_ids)}"
            calls = [
                (spec.id or f"call_{next(self._call_ids)}", spec.name, spec.arguments)
                for spec in reply.tool_calls
            ]
        finish_reason = reply.finish_reason or ("tool_calls" if calls else "stop")
        return _Completion(
            completion_id=completion_id,
            created=int(time.time()),
            model=model,
            content=reply.content,
            calls=calls,
            finish_reason=finish_reason,
            usage=reply.usage,
        )


def start_fake_openai(**kwargs: Any) -> FakeOpenAI:
    """Start a fake (kwargs: ``api_key``, ``model``, ``responder``, ``accepts_strict``); usable
    with ``with``."""
    return FakeOpenAI(**kwargs)
