"""An in-memory fake of the Acontext REST API, for tests.

The fake is a stdlib ``ThreadingHTTPServer`` bound to 127.0.0.1 on a free port, serving the
session endpoints the template uses, with the bodies, status codes and error envelopes a real
Acontext server answers (see the contract notes in the project's design docs).  The real
``acontext`` SDK works against it unchanged::

    with start_fake_acontext() as fake:
        client = AcontextClient(api_key=fake.api_key, base_url=fake.base_url)
        session = client.sessions.create()

What is modelled
    * envelope ``{"code", "data", "msg"}``, bearer auth (401), ``/ping``;
    * sessions: create (``use_uuid`` idempotent), list (``user``, ``filter_by_configs`` JSONB
      containment, ``limit``/``cursor``/``time_desc``), delete, configs get/put/patch;
    * messages: store (OpenAI blobs normalised into parts), get (OpenAI or acontext format,
      paging, ``edit_strategies``), message meta patch, token counts;
    * task extraction: deterministic and synchronous, driven by ``flush`` (at most
      ``flush_batch`` pending messages per call), observing status, task listing;
    * the per-endpoint answers for unknown / deleted / malformed session ids;
    * learning spaces and skills (``/learning_spaces``, ``/agent_skills``), in
      :mod:`tests.fakes.learning`: processing an attached session starts its learning.

Task extraction rule (deterministic stand-in for the real LLM): each processed user text
message opens a new task (``task_description`` = the text, status ``running``;
``user_preferences = [text]`` when the text contains "prefer"); each processed assistant text
message without tool calls appends ``"Agent responded to: <description>"`` to the latest task
and marks it ``success``.  Tool calls, tool results, system/developer messages change nothing.

Token counts are an estimate, not a tokenizer: see :func:`estimate_tokens`.

Test hooks are the public attributes and methods of :class:`FakeAcontext`, and of its
``learning`` (:class:`tests.fakes.learning.Learning`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.learning import Learning
from tests.fakes.wire import (
    DEFAULT_LIST_LIMIT,
    Answer,
    RawBody,
    Reply,
    canonical_uuid,
    compact,
    json_object,
    jsonb_contains,
    ok,
    paginate,
    param_error,
    parse_bool,
    parse_limit,
)

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_PROJECT_ID",
    "META_LIMIT_BYTES",
    "FakeAcontext",
    "FakeMessage",
    "FakeSession",
    "FakeTask",
    "RecordedRequest",
    "estimate_tokens",
    "start_fake_acontext",
]

API_PREFIX = "/api/v1"
DEFAULT_API_KEY = "sk-ac-test"
DEFAULT_PROJECT_ID = "00ea930a-c66d-463b-a5ac-d48da0ef625a"
META_LIMIT_BYTES = 64 * 1024
_USER_NAMESPACE = uuid.UUID("6f1d3c5e-2b7a-4c1e-9d3f-0a8b7c6d5e4f")
_OPENAI_ROLES = frozenset({"user", "assistant", "tool", "system", "developer"})


# ---------------------------------------------------------------------------
# Data model
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request the fake received.

    ``path`` has neither the ``/api/v1`` prefix nor the query string; ``query`` keeps the
    last value of each parameter; ``body`` is the parsed JSON body, the raw text when it is
    not JSON, or ``None`` when empty.
    """

    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class FakeTask:
    """A task extracted by ``flush``."""

    id: str
    session_id: str
    order: int
    task_description: str
    progresses: list[str] | None
    user_preferences: list[str] | None
    status: str
    created_at: str
    updated_at: str


@dataclass
class FakeMessage:
    """A stored message: ``role`` is the stored role (user/assistant), ``source_role`` the
    OpenAI role it was sent with (user/assistant/tool/system/developer)."""

    id: str
    session_id: str
    parent_id: str | None
    role: str
    source_role: str
    parts: list[dict[str, Any]]
    meta: dict[str, Any]
    session_task_process_status: str
    task_id: str | None
    created_at: str
    updated_at: str
    seq: int


@dataclass
class FakeSession:
    """A stored session with its messages (in order) and tasks (in order)."""

    id: str
    user: str | None
    user_id: str | None
    disable_task_tracking: bool
    configs: dict[str, Any] | None
    created_at: str
    updated_at: str
    seq: int
    messages: list[FakeMessage] = field(default_factory=list)
    tasks: list[FakeTask] = field(default_factory=list)


@dataclass
class _FailRule:
    remaining: int
    status: int
    path_contains: str
    drop_after_write: bool
    body_contains: str = ""
    delay: float = 0.0


def _database_error() -> Reply:
    return Reply(400, 500, "database error")


def _session_not_found() -> Reply:
    return Reply(404, 404, "session not found")


def _normalize_error() -> Reply:
    return Reply(400, 400, "failed to normalize openai message")


# ---------------------------------------------------------------------------
# Pure helpers: normalisation, conversion, tokens, edit strategies
# ---------------------------------------------------------------------------


def estimate_tokens(openai_item: Mapping[str, Any]) -> int:
    """Token estimate of one OpenAI-format message: ceil(len(compact JSON) / 4).

    ``this_time_tokens`` is the sum over the returned items, ``token_counts`` the sum over
    every stored message, and ``token_limit`` budgets with the same numbers.
    """
    return math.ceil(len(compact(openai_item)) / 4)


def _text_part(text: str) -> dict[str, Any]:
    # The real server omits empty fields: an empty string gives {"type": "text"}.
    return {"type": "text", "text": text} if text else {"type": "text"}


def _content_parts(content: Any, *, allow_none: bool) -> list[dict[str, Any]]:
    """Parts for a user/system/developer/assistant ``content`` value."""
    if content is None:
        if allow_none:
            return []
        raise _normalize_error()
    if isinstance(content, str):
        return [_text_part(content)]
    if not isinstance(content, list):
        raise _normalize_error()
    parts: list[dict[str, Any]] = []
    for item in content:
        if not isinstance(item, dict):
            raise _normalize_error()
        kind = item.get("type")
        if kind in ("text", "refusal"):
            text = item.get(kind if kind == "refusal" else "text")
            if not isinstance(text, str):
                raise _normalize_error()
            parts.append(_text_part(text))
        elif kind == "image_url" and isinstance(item.get("image_url"), dict):
            parts.append({"type": "image", "meta": {"image_url": item["image_url"]}})
        else:
            raise _normalize_error()
    return parts


def _tool_call_parts(blob: Mapping[str, Any]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    tool_calls = blob.get("tool_calls")
    if tool_calls is not None:
        if not isinstance(tool_calls, list):
            raise _normalize_error()
        for call in tool_calls:
            if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
                raise _normalize_error()
            function = call["function"]
            meta: dict[str, Any] = {
                "arguments": function.get("arguments", ""),
                "name": function.get("name", ""),
                "type": call.get("type", "function"),
            }
            if call.get("id"):
                meta["id"] = call["id"]
            parts.append({"type": "tool-call", "meta": meta})
    legacy = blob.get("function_call")
    if isinstance(legacy, dict):
        parts.append(
            {
                "type": "tool-call",
                "meta": {
                    "arguments": legacy.get("arguments", ""),
                    "name": legacy.get("name", ""),
                    "type": "function",
                },
            }
        )
    return parts


def normalize_openai_blob(blob: Any) -> tuple[str, str, list[dict[str, Any]]]:
    """Turn one OpenAI chat message into ``(stored_role, source_role, parts)``.

    Raises the server's 400 "failed to normalize openai message" for what the real server
    rejects (no role, unknown role, user content null, malformed content).
    """
    if not isinstance(blob, dict):
        raise _normalize_error()
    role = blob.get("role")
    if not isinstance(role, str) or role not in _OPENAI_ROLES:
        raise _normalize_error()
    content = blob.get("content")
    if role == "assistant":
        return "assistant", role, _content_parts(content, allow_none=True) + _tool_call_parts(blob)
    if role == "tool":
        if content is None:
            text = ""
        elif isinstance(content, str):
            text = content
        elif isinstance(content, list):
            text = "".join(str(item.get("text", "")) for item in content if isinstance(item, dict))
        else:
            raise _normalize_error()
        tool_call_id = blob.get("tool_call_id")
        part: dict[str, Any] = {
            "type": "tool-result",
            "meta": {"tool_call_id": tool_call_id if isinstance(tool_call_id, str) else ""},
        }
        if text:
            part["text"] = text
        return "user", role, [part]
    # user, system, developer: stored as user messages, original role remembered.
    return "user", role, _content_parts(content, allow_none=False)


def _openai_content(parts: list[dict[str, Any]]) -> Any:
    """Content value for text/image parts: one text part -> str, otherwise a parts list."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0].get("text", "")
    out: list[dict[str, Any]] = []
    for part in parts:
        if part["type"] == "text":
            out.append({"text": part.get("text", ""), "type": "text"})
        elif part["type"] == "image":
            out.append({"image_url": part["meta"]["image_url"], "type": "image_url"})
    return out


def to_openai(message: FakeMessage) -> dict[str, Any]:
    """The OpenAI-format item ``GET .../messages?format=openai`` returns for a message."""
    parts = message.parts
    if message.source_role == "tool" or any(p["type"] == "tool-result" for p in parts):
        result = next(p for p in parts if p["type"] == "tool-result")
        return {
            "content": result.get("text", ""),
            "tool_call_id": (result.get("meta") or {}).get("tool_call_id", ""),
            "role": "tool",
        }
    content_parts = [p for p in parts if p["type"] in ("text", "image")]
    if message.role == "assistant":
        item: dict[str, Any] = {}
        if content_parts:
            item["content"] = _openai_content(content_parts)
        calls = [
            {
                "id": p["meta"]["id"],
                "function": {"arguments": p["meta"]["arguments"], "name": p["meta"]["name"]},
                "type": p["meta"].get("type", "function"),
            }
            for p in parts
            if p["type"] == "tool-call" and p["meta"].get("id")
        ]
        if calls:
            item["tool_calls"] = calls
        item["role"] = "assistant"
        return item
    return {"content": _openai_content(content_parts), "role": message.source_role}


def to_wire_message(message: FakeMessage) -> dict[str, Any]:
    """The Message object (acontext format) as the API returns it."""
    return {
        "id": message.id,
        "session_id": message.session_id,
        "parent_id": message.parent_id,
        "role": message.role,
        "meta": copy.deepcopy(message.meta),
        "parts": copy.deepcopy(message.parts),
        "task_id": message.task_id,
        "session_task_process_status": message.session_task_process_status,
        "created_at": message.created_at,
        "updated_at": message.updated_at,
    }


def _tool_call_ids(message: FakeMessage) -> list[str]:
    return [
        p["meta"]["id"] for p in message.parts if p["type"] == "tool-call" and p["meta"].get("id")
    ]


def _tool_result_id(message: FakeMessage) -> str | None:
    for part in message.parts:
        if part["type"] == "tool-result":
            return str((part.get("meta") or {}).get("tool_call_id", ""))
    return None


def _linked_group(messages: list[FakeMessage], index: int) -> set[int]:
    """Indexes that must be dropped together with ``messages[index]``: an assistant message
    with tool calls and the tool results answering them."""
    group = {index}
    issuers = [index] if _tool_call_ids(messages[index]) else []
    result_id = _tool_result_id(messages[index])
    if result_id:
        for j in range(index - 1, -1, -1):
            if result_id in _tool_call_ids(messages[j]):
                issuers.append(j)
                break
    for issuer in issuers:
        group.add(issuer)
        ids = set(_tool_call_ids(messages[issuer]))
        for j, other in enumerate(messages):
            rid = _tool_result_id(other)
            if rid and rid in ids:
                group.add(j)
    return group


def _drop_oldest(messages: list[FakeMessage], limit: int) -> list[FakeMessage]:
    """``token_limit``: drop the oldest messages, each tool call with its results, until the
    rest fits. Linear: every message is estimated once."""
    tokens = [estimate_tokens(to_openai(m)) for m in messages]
    total = sum(tokens)
    issuer_of = {cid: i for i, m in enumerate(messages) for cid in _tool_call_ids(m)}
    results_of: dict[int, list[int]] = {}
    for i, message in enumerate(messages):
        rid = _tool_result_id(message)
        if rid and rid in issuer_of:
            results_of.setdefault(issuer_of[rid], []).append(i)
    dropped: set[int] = set()
    for i, message in enumerate(messages):
        if total <= limit:
            break
        if i in dropped:
            continue
        issuers = [i] if _tool_call_ids(message) else []
        rid = _tool_result_id(message)
        if rid and rid in issuer_of:
            issuers.append(issuer_of[rid])
        group = {i, *issuers, *(j for k in issuers for j in results_of.get(k, []))}
        total -= sum(tokens[j] for j in group - dropped)
        dropped |= group
    return [m for i, m in enumerate(messages) if i not in dropped]


def _total_tokens(messages: list[FakeMessage]) -> int:
    return sum(estimate_tokens(to_openai(m)) for m in messages)


def _int_param(params: Mapping[str, Any], name: str, default: int | None) -> int | None:
    value = params.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise param_error()
    return value


def apply_edit_strategies(messages: list[FakeMessage], strategies: list[Any]) -> list[FakeMessage]:
    """Apply ``edit_strategies`` to copies of ``messages`` (storage is never changed)."""
    edited = [copy.deepcopy(m) for m in messages]
    for strategy in strategies:
        if not isinstance(strategy, dict):
            raise param_error()
        params = strategy.get("params") or {}
        if not isinstance(params, dict):
            raise param_error()
        kind = strategy.get("type")
        if kind == "token_limit":
            limit = _int_param(params, "limit_tokens", None)
            if limit is None:
                raise param_error()
            edited = _drop_oldest(edited, limit)
        elif kind == "middle_out":
            target = _int_param(params, "token_reduce_to", None)
            if target is None:
                raise param_error()
            while edited and _total_tokens(edited) > target:
                drop = _linked_group(edited, len(edited) // 2)
                edited = [m for i, m in enumerate(edited) if i not in drop]
        elif kind == "remove_tool_result":
            _remove_tool_results(edited, params)
        elif kind == "remove_tool_call_params":
            _remove_tool_call_params(edited, params)
        else:
            raise param_error()
    return edited


def _tool_names(messages: list[FakeMessage]) -> dict[str, str]:
    return {
        p["meta"]["id"]: p["meta"].get("name", "")
        for m in messages
        for p in m.parts
        if p["type"] == "tool-call" and p["meta"].get("id")
    }


def _remove_tool_results(messages: list[FakeMessage], params: Mapping[str, Any]) -> None:
    keep_n = _int_param(params, "keep_recent_n_tool_results", 3) or 0
    placeholder = params.get("tool_result_placeholder", "Done")
    keep_tools = set(params.get("keep_tools") or [])
    gt_token = _int_param(params, "gt_token", None)
    names = _tool_names(messages)
    results = [p for m in messages for p in m.parts if p["type"] == "tool-result"]
    older = results[: max(len(results) - keep_n, 0)]
    for part in older:
        if names.get((part.get("meta") or {}).get("tool_call_id", "")) in keep_tools:
            continue
        if gt_token is not None and math.ceil(len(part.get("text", "")) / 4) <= gt_token:
            continue
        part["text"] = placeholder


def _remove_tool_call_params(messages: list[FakeMessage], params: Mapping[str, Any]) -> None:
    keep_n = _int_param(params, "keep_recent_n_tool_calls", 3) or 0
    keep_tools = set(params.get("keep_tools") or [])
    gt_token = _int_param(params, "gt_token", None)
    calls = [p for m in messages for p in m.parts if p["type"] == "tool-call"]
    for part in calls[: max(len(calls) - keep_n, 0)]:
        meta = part["meta"]
        if meta.get("name") in keep_tools:
            continue
        if gt_token is not None and math.ceil(len(str(meta.get("arguments", ""))) / 4) <= gt_token:
            continue
        meta["arguments"] = "{}"


# ---------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeAcontext) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about connections that :meth:`FakeAcontext.stop` cut mid-request."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stalls
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr request log."""

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, add=True, server=self.server)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, add=False, server=self.server)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        raw = self._read_body()
        split = urlsplit(self.path)
        answer = self.server.fake._handle(
            method=self.command,
            path=split.path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            raw_body=raw,
            authorization=self.headers.get("Authorization"),
        )
        if answer is None:  # injected "answer lost": drop the connection, no response
            self.close_connection = True
            return
        status, payload = answer
        if isinstance(payload, RawBody):
            body, content_type, headers = payload.content, payload.content_type, payload.headers
        else:
            body = json.dumps(payload, ensure_ascii=False).encode()
            content_type, headers = "application/json; charset=utf-8", {}
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()


_SessionRoute = Callable[[str, dict[str, str], Any], Answer]
_SESSION_ROUTE = re.compile(r"^/session/([^/]+)(?:/([a-z_]+))?$")
_MESSAGE_META_ROUTE = re.compile(r"^/session/([^/]+)/messages/([^/]+)/meta$")


# ---------------------------------------------------------------------------
# The fake
# ---------------------------------------------------------------------------


class FakeAcontext:
    """In-memory Acontext server on 127.0.0.1 for tests.

    Attributes (change them at any time; they are read per request):
        api_key: the only accepted key (``Authorization: Bearer <api_key>``).
        base_url: ``http://127.0.0.1:<port>/api/v1`` once started.
        project_id: the project id put on sessions and tasks.
        latency: seconds slept before answering every request.
        latency_range: when set, ``(low, high)``: each request sleeps a random time in it
            instead, drawn from ``random`` (a ``random.Random`` seeded with ``seed``, so a
            test can reproduce the draws; see :meth:`next_latency`).
        flush_batch: at most this many pending messages are processed per flush.
        flush_delay: seconds a flush sleeps (its batch shows as ``in_process`` meanwhile).
        flush_status / flush_errmsg: what flush answers; a status other than 200 simulates a
            failed flush (nothing is processed, ``{"status": flush_status, "errmsg": ...}``).
        auto_process: when True, every stored message is processed right away (as if the real
            server's idle buffer had fired at once); default False: only flush processes.
        requests: every request received, in order (:class:`RecordedRequest`).
        learning: the learning spaces and skills, with their knobs and helpers
            (:class:`tests.fakes.learning.Learning`).

    Methods: :meth:`fail_next`, :meth:`stored_messages`, :meth:`stored_metas`,
    :meth:`session`, :meth:`add_session`, :meth:`stop`, :meth:`restart`, :meth:`flapping`,
    :meth:`holding`;
    usable as a context manager (``__exit__`` stops it).

    :meth:`stop`, :meth:`start` and :meth:`restart` may be called from any thread while
    requests are in flight.  A request the fake had already read when it stopped is still
    applied, and its answer is lost with the cut connection, as when a server dies after
    committing.
    """

    _ROUTE_NAMES: ClassVar[frozenset[str]] = frozenset(
        {"configs", "messages", "flush", "task", "observing_status", "token_counts"}
    )

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        latency: float = 0.0,
        latency_range: tuple[float, float] | None = None,
        seed: int | None = None,
        flush_batch: int = 32,
        flush_delay: float = 0.0,
        flush_status: int = 200,
        flush_errmsg: str = "",
        auto_process: bool = False,
        project_id: str = DEFAULT_PROJECT_ID,
    ) -> None:
        self.api_key = api_key
        self.latency = latency
        self.latency_range = latency_range
        self.random = random.Random(seed)
        self.flush_batch = flush_batch
        self.flush_delay = flush_delay
        self.flush_status = flush_status
        self.flush_errmsg = flush_errmsg
        self.auto_process = auto_process
        self.project_id = project_id
        self.requests: list[RecordedRequest] = []
        self.base_url = ""
        self.port = 0
        self._lock = threading.RLock()
        self._sessions: dict[str, FakeSession] = {}
        self._fail_rules: list[_FailRule] = []
        self._fail_every: tuple[int, _FailRule] | None = None
        self._every_count = 0
        self._connections: set[socket.socket] = set()
        self._seq = 0
        self._last_time = datetime.now(UTC)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._answering = threading.Event()
        self._answering.set()
        self.learning = Learning(
            sessions=self._sessions, lock=self._lock, clock=self._now, user_id=self._user_id
        )

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> FakeAcontext:
        """Bind 127.0.0.1 (a free port the first time, the same port afterwards) and serve."""
        with self._lock:
            if self._server is not None:
                return self
            server = self._bind()
            self.port = int(server.server_address[1])
            self.base_url = f"http://127.0.0.1:{self.port}{API_PREFIX}"
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.005},  # stop() waits at most this long
                name=f"fake-acontext-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: the port refuses connections and open keep-alive connections are
        cut, so clients get ``TransportError``.  Data is kept (see :meth:`restart`)."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server, self._thread = None, None
            connections = list(self._connections)
        if server is None:
            return
        server.shutdown()
        server.server_close()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join(timeout=2)

    def restart(self) -> None:
        """Serve again on the same port with the same data (after :meth:`stop`)."""
        self.stop()
        self.start()

    @contextlib.contextmanager
    def flapping(
        self,
        *,
        up: tuple[float, float],
        down: tuple[float, float],
        seed: int | None = None,
    ) -> Iterator[list[float]]:
        """Stop and restart the fake from a background thread while the block runs: up for a
        random time in ``up`` seconds, down for one in ``down``, drawn from a
        ``random.Random(seed)``.  Yields the list of outage lengths so far; on leaving the
        block the flapping ends and the fake is serving."""
        rng = random.Random(seed)
        done = threading.Event()
        outages: list[float] = []

        def flap() -> None:
            while not done.wait(rng.uniform(*up)):
                self.stop()
                outages.append(rng.uniform(*down))
                done.wait(outages[-1])
                self.start()

        thread = threading.Thread(target=flap, name=f"fake-acontext-flap-{self.port}", daemon=True)
        thread.start()
        try:
            yield outages
        finally:
            done.set()
            thread.join()
            self.start()

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Requests received while the block runs wait, once recorded, until it ends: a test
        can be sure that a request is in flight, whatever the machine's speed."""
        self._answering.clear()
        try:
            yield
        finally:
            self._answering.set()

    def next_latency(self) -> float:
        """The seconds the next request sleeps: a draw from ``latency_range`` when it is set,
        otherwise ``latency``."""
        with self._lock:
            if self.latency_range is not None:
                return self.random.uniform(*self.latency_range)
            return self.latency

    def __enter__(self) -> FakeAcontext:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _bind(self) -> _Server:
        """The server socket; rebinding the same port is retried for a while, in case a
        client's outgoing connection took it as its local port while the fake was down."""
        deadline = time.monotonic() + 10
        while True:
            try:
                return _Server(("127.0.0.1", self.port), self)
            except OSError:
                if not self.port or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _track(self, conn: socket.socket, *, add: bool, server: _Server) -> None:
        with self._lock:
            if not add:
                self._connections.discard(conn)
            elif server is self._server:
                self._connections.add(conn)
            else:  # accepted just before stop() took its list of connections: cut it too
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    # -- test hooks ---------------------------------------------------------

    def fail_next(
        self,
        count: int,
        *,
        status: int = 503,
        path_contains: str = "",
        drop_after_write: bool = False,
        body_contains: str = "",
        delay: float = 0.0,
    ) -> None:
        """Make the next ``count`` requests whose path (without ``/api/v1``) contains
        ``path_contains`` (and whose raw body contains ``body_contains``) fail, after ``delay``
        seconds.

        By default they are not applied and answer HTTP ``status`` with
        ``{"code": status, "msg": "injected failure"}``.  With ``drop_after_write=True`` the
        request IS applied (e.g. the message is stored) but the connection is closed without
        a response, as when an answer is lost on the network.
        """
        rule = _FailRule(count, status, path_contains, drop_after_write, body_contains, delay)
        with self._lock:
            self._fail_rules.append(rule)

    def fail_every(
        self,
        n: int,
        *,
        status: int = 503,
        path_contains: str = "",
        drop_after_write: bool = False,
    ) -> None:
        """Make every ``n``-th matching request fail like ``fail_next`` (``n=0``: stop)."""
        with self._lock:
            self._every_count = 0
            self._fail_every = (
                (n, _FailRule(0, status, path_contains, drop_after_write)) if n > 0 else None
            )

    def stored_messages(self, session_id: str) -> list[dict[str, Any]]:
        """The OpenAI-format items of a session, in order, as GET would return them."""
        with self._lock:
            return [to_openai(m) for m in self._require(session_id).messages]

    def stored_metas(self, session_id: str) -> list[dict[str, Any]]:
        """The user metas of a session's messages, in order."""
        with self._lock:
            return [copy.deepcopy(m.meta) for m in self._require(session_id).messages]

    def session(self, session_id: str) -> FakeSession:
        """A deep copy of a stored session (with messages and tasks); KeyError if absent."""
        with self._lock:
            return copy.deepcopy(self._require(session_id))

    def session_ids(self) -> list[str]:
        """Ids of the live sessions, oldest first."""
        with self._lock:
            return [s.id for s in sorted(self._sessions.values(), key=lambda s: s.seq)]

    def add_session(
        self,
        *,
        configs: Mapping[str, Any] | None = None,
        messages: Iterable[Mapping[str, Any]] = (),
        session_id: str | None = None,
        user: str | None = None,
        disable_task_tracking: bool = False,
    ) -> str:
        """Seed a session directly (no HTTP), with OpenAI-format ``messages`` stored pending.
        Returns its id.  Raises ValueError for a blob the server would reject."""
        with self._lock:
            sid = str(uuid.UUID(session_id)) if session_id else str(uuid.uuid4())
            session = self._new_session(
                sid, user, disable_task_tracking, dict(configs) if configs is not None else None
            )
            for blob in messages:
                try:
                    self._store(session, dict(blob), {})
                except Reply as exc:
                    raise ValueError(f"{exc.msg}: {blob!r}") from exc
            return sid

    def delete_session(self, session_id: str) -> None:
        """Delete a session as ``DELETE /session/{id}`` would (no HTTP)."""
        with self._lock:
            self._sessions.pop(str(uuid.UUID(session_id)), None)

    def _require(self, session_id: str) -> FakeSession:
        try:
            return self._sessions[str(uuid.UUID(session_id))]
        except ValueError as exc:
            raise KeyError(session_id) from exc

    # -- internals ----------------------------------------------------------

    def _now(self) -> str:
        now = datetime.now(UTC)
        if now <= self._last_time:
            now = self._last_time + timedelta(microseconds=1)
        self._last_time = now
        return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def _user_id(self, user: str | None) -> str | None:
        """The id the server gives a user name, the same in sessions and learning spaces."""
        return str(uuid.uuid5(_USER_NAMESPACE, f"{self.project_id}:{user}")) if user else None

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _new_session(
        self,
        sid: str,
        user: str | None,
        disable_task_tracking: bool,
        configs: dict[str, Any] | None,
    ) -> FakeSession:
        now = self._now()
        session = FakeSession(
            id=sid,
            user=user,
            user_id=self._user_id(user),
            disable_task_tracking=disable_task_tracking,
            configs=copy.deepcopy(configs),
            created_at=now,
            updated_at=now,
            seq=self._next_seq(),
        )
        self._sessions[sid] = session
        return session

    def _store(
        self, session: FakeSession, blob: dict[str, Any], meta: dict[str, Any]
    ) -> FakeMessage:
        role, source_role, parts = normalize_openai_blob(blob)
        now = self._now()
        message = FakeMessage(
            id=str(uuid.uuid4()),
            session_id=session.id,
            parent_id=session.messages[-1].id if session.messages else None,
            role=role,
            source_role=source_role,
            parts=parts,
            meta=copy.deepcopy(meta),
            session_task_process_status=(
                "disable_tracking" if session.disable_task_tracking else "pending"
            ),
            task_id=None,
            created_at=now,
            updated_at=now,
            seq=self._next_seq(),
        )
        session.messages.append(message)
        return message

    def _take_rule(self, path: str, raw_body: bytes) -> _FailRule | None:
        with self._lock:
            for rule in self._fail_rules:
                if (
                    rule.remaining > 0
                    and rule.path_contains in path
                    and rule.body_contains.encode() in raw_body
                ):
                    rule.remaining -= 1
                    self._fail_rules = [r for r in self._fail_rules if r.remaining > 0]
                    return rule
            if self._fail_every is not None and self._fail_every[1].path_contains in path:
                self._every_count += 1
                if self._every_count % self._fail_every[0] == 0:
                    return self._fail_every[1]
        return None

    def _handle(
        self,
        *,
        method: str,
        path: str,
        query: dict[str, str],
        raw_body: bytes,
        authorization: str | None,
    ) -> Answer | None:
        """Answer one request: ``(http_status, envelope or raw body)``, or None to drop the
        connection."""
        body: Any = None
        parse_failed = False
        if raw_body:
            try:
                body = json.loads(raw_body)
            except ValueError:
                body = raw_body.decode("utf-8", "replace")
                parse_failed = True
        route = path[len(API_PREFIX) :] if path.startswith(API_PREFIX) else path
        route = route or "/"
        with self._lock:
            self.requests.append(RecordedRequest(method, route, dict(query), body))
        self._answering.wait()
        delay = self.next_latency()  # after recording: a test can see a request in flight
        if delay > 0:
            time.sleep(delay)
        rule = self._take_rule(route, raw_body)
        if rule is not None and rule.delay:
            time.sleep(rule.delay)
        if rule is not None and not rule.drop_after_write:
            return rule.status, {"code": rule.status, "msg": "injected failure"}
        try:
            if not path.startswith(API_PREFIX + "/") and path != API_PREFIX:
                raise Reply(404, 404, "not found")
            if authorization != f"Bearer {self.api_key}":
                raise Reply(401, 401, "Unauthorized")
            if parse_failed:
                raise param_error()
            status, payload = self._route(method, route, query, body)
        except Reply as reply:
            status, payload = reply.http_status, {"code": reply.code, "msg": reply.msg}
        except Exception as exc:  # a bug in the fake: answer it rather than drop the socket
            status, payload = 500, {"code": 500, "msg": f"fake acontext error: {exc!r}"}
        if rule is not None:  # drop_after_write: applied, answer lost
            return None
        return status, payload

    def _route(self, method: str, route: str, query: dict[str, str], body: Any) -> Answer:
        if route == "/ping" and method == "GET":
            return 200, {"code": 0, "msg": "pong"}
        if route == "/session":
            if method == "POST":
                return self._create_session(body)
            if method == "GET":
                return self._list_sessions(query)
        if route.startswith(("/learning_spaces", "/agent_skills")):
            return self.learning.route(method, route, query, body)
        meta_match = _MESSAGE_META_ROUTE.match(route)
        if meta_match and method == "PATCH":
            sid = canonical_uuid(meta_match.group(1))
            return self._patch_message_meta(sid, meta_match.group(2), body)
        match = _SESSION_ROUTE.match(route)
        if match and (match.group(2) is None or match.group(2) in self._ROUTE_NAMES):
            handler = self._session_handler(method, match.group(2))
            if handler is not None:
                return handler(canonical_uuid(match.group(1)), query, body)
        raise Reply(404, 404, "not found")

    def _session_handler(self, method: str, name: str | None) -> _SessionRoute | None:
        table: dict[tuple[str, str | None], _SessionRoute] = {
            ("DELETE", None): self._delete_session,
            ("GET", "configs"): self._get_configs,
            ("PUT", "configs"): self._put_configs,
            ("PATCH", "configs"): self._patch_configs,
            ("POST", "messages"): self._store_message,
            ("GET", "messages"): self._get_messages,
            ("POST", "flush"): self._flush,
            ("GET", "task"): self._get_tasks,
            ("GET", "observing_status"): self._observing_status,
            ("GET", "token_counts"): self._token_counts,
        }
        return table.get((method, name))

    def _session_json(self, session: FakeSession) -> dict[str, Any]:
        return {
            "id": session.id,
            "project_id": self.project_id,
            "user_id": session.user_id,
            "disable_task_tracking": session.disable_task_tracking,
            "configs": copy.deepcopy(session.configs),
            "created_at": session.created_at,
            "updated_at": session.updated_at,
        }

    # -- sessions -----------------------------------------------------------

    def _create_session(self, body: Any) -> Answer:
        payload = json_object(body if body is not None else {})
        user = payload.get("user")
        disable = payload.get("disable_task_tracking", False)
        configs = payload.get("configs")
        use_uuid = payload.get("use_uuid")
        if (
            (user is not None and not isinstance(user, str))
            or not isinstance(disable, bool)
            or (configs is not None and not isinstance(configs, dict))
            or (use_uuid is not None and not isinstance(use_uuid, str))
        ):
            raise param_error()
        with self._lock:
            if use_uuid is not None:
                sid = canonical_uuid(use_uuid)
                existing = self._sessions.get(sid)
                if existing is not None:  # the real server answers 200, not the 409 documented
                    return ok(self._session_json(existing))
            else:
                sid = str(uuid.uuid4())
            session = self._new_session(sid, user or None, disable, configs)
            return ok(self._session_json(session), 201)

    def _list_sessions(self, query: dict[str, str]) -> Answer:
        limit = parse_limit(query.get("limit"), DEFAULT_LIST_LIMIT) or DEFAULT_LIST_LIMIT
        desc = parse_bool(query.get("time_desc"))
        config_filter: Any = None
        if query.get("filter_by_configs"):
            try:
                config_filter = json.loads(query["filter_by_configs"])
            except ValueError as exc:
                raise param_error() from exc
            if not isinstance(config_filter, dict):
                raise param_error()
        user = query.get("user") or None
        with self._lock:
            sessions = [
                s
                for s in self._sessions.values()
                if (user is None or s.user == user)
                and (
                    not config_filter
                    or (s.configs is not None and jsonb_contains(s.configs, config_filter))
                )
            ]
            page, next_cursor, has_more = paginate(
                sessions,
                lambda s: s.seq,
                kind="session",
                limit=limit,
                cursor=query.get("cursor"),
                desc=desc,
            )
            data: dict[str, Any] = {
                "items": [self._session_json(s) for s in page],
                "has_more": has_more,
            }
        if next_cursor:
            data["next_cursor"] = next_cursor
        return ok(data)

    def _delete_session(self, sid: str, query: dict[str, str], body: Any) -> Answer:
        with self._lock:
            self._sessions.pop(sid, None)
        return 200, {"code": 0, "msg": ""}

    def _get_configs(self, sid: str, query: dict[str, str], body: Any) -> Answer:
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                raise _database_error()
            return ok(self._session_json(session))

    def _put_configs(self, sid: str, query: dict[str, str], body: Any) -> Answer:
        configs = json_object(body).get("configs")
        if configs is not None and not isinstance(configs, dict):
            raise param_error()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                raise _database_error()
            session.configs = copy.deepcopy(configs)
            session.updated_at = self._now()
        return 200, {"code": 0, "msg": ""}

    def _patch_configs(self, sid: str, query: dict[str, str], body: Any) -> Answer:
        patch = json_object(body).get("configs")
        if not isinstance(patch, dict):
            raise param_error()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                raise _session_not_found()
            merged = dict(session.configs or {})
            for key, value in patch.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = copy.deepcopy(value)
            session.configs = merged
            session.updated_at = self._now()
            return ok({"configs": copy.deepcopy(merged)})

    # -- messages -----------------------------------------------------------

    def _store_message(self, sid: str, query: dict[str, str], body: Any) -> Answer:
        payload = json_object(body)
        if payload.get("format", "openai") != "openai" or "blob" not in payload:
            raise param_error()
        meta = payload.get("meta")
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            raise param_error()
        if len(compact(meta).encode()) > META_LIMIT_BYTES:
            raise Reply(400, 400, f"meta size exceeds limit of {META_LIMIT_BYTES} bytes")
        normalize_openai_blob(payload["blob"])  # reject before touching storage
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                raise _database_error()
            message = self._store(session, payload["blob"], meta)
            if self.auto_process:
                self._process(session, [message])
            return ok(to_wire_message(message), 201)

    def _get_messages(self, sid: str, query: dict[str, str], body: Any) -> Answer:
        fmt = query.get("format") or "openai"
        if fmt not in ("openai", "acontext"):
            raise param_error()
        limit = parse_limit(query.get("limit"), None)
        desc = parse_bool(query.get("time_desc"))
        strategies: list[Any] = []
        if query.get("edit_strategies"):
            try:
                strategies = json.loads(query["edit_strategies"])
            except ValueError as exc:
                raise param_error() from exc
            if not isinstance(strategies, list):
                raise param_error()
        pin = query.get("pin_editing_strategies_at_message") or None
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                raise _database_error()
            page, next_cursor, has_more = paginate(
                list(session.messages),
                lambda m: m.seq,
                kind="message",
                limit=limit,
                cursor=query.get("cursor"),
                desc=desc,
            )
            page = copy.deepcopy(page)
        if strategies:
            cut = len(page)
            if pin is not None:
                cut = next((i + 1 for i, m in enumerate(page) if m.id == pin), len(page))
            page = apply_edit_strategies(page[:cut], strategies) + page[cut:]
        openai_items = [to_openai(m) for m in page]
        data: dict[str, Any] = {
            "items": openai_items if fmt == "openai" else [to_wire_message(m) for m in page],
            "ids": [m.id for m in page],
            "metas": [m.meta for m in page],
            "has_more": has_more,
            "this_time_tokens": sum(estimate_tokens(i) for i in openai_items),
        }
        if next_cursor:
            data["next_cursor"] = next_cursor
        edit_at = pin or (page[-1].id if page else None)
        if edit_at:
            data["edit_at_message_id"] = edit_at
        return ok(data)

    def _patch_message_meta(self, sid: str, message_id: str, body: Any) -> Answer:
        patch = json_object(body).get("meta")
        if not isinstance(patch, dict):
            raise param_error()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                raise _session_not_found()
            message = next((m for m in session.messages if m.id == message_id), None)
            if message is None:
                raise Reply(404, 404, "message not found")
            for key, value in patch.items():
                if value is None:
                    message.meta.pop(key, None)
                else:
                    message.meta[key] = copy.deepcopy(value)
            return ok({"meta": copy.deepcopy(message.meta)})

    def _token_counts(self, sid: str, query: dict[str, str], body: Any) -> Answer:
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                raise _session_not_found()
            return ok({"total_tokens": _total_tokens(session.messages)})

    # -- task extraction ----------------------------------------------------

    def _flush(self, sid: str, query: dict[str, str], body: Any) -> Answer:
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                raise _session_not_found()
            if self.flush_status != 200:
                return ok({"status": self.flush_status, "errmsg": self.flush_errmsg})
            batch = [m for m in session.messages if m.session_task_process_status == "pending"]
            batch = batch[: max(self.flush_batch, 0)]
            for message in batch:
                message.session_task_process_status = "running"
            delay = self.flush_delay
        if delay > 0:
            time.sleep(delay)
        with self._lock:
            self._process(session, batch)
        return ok({"status": 200, "errmsg": ""})

    def _process(self, session: FakeSession, batch: list[FakeMessage]) -> None:
        """Deterministic task extraction over ``batch`` (in order); marks them observed."""
        for message in batch:
            text = "\n".join(p.get("text", "") for p in message.parts if p["type"] == "text")
            has_calls = any(p["type"] == "tool-call" for p in message.parts)
            is_result = any(p["type"] == "tool-result" for p in message.parts)
            now = self._now()
            if message.source_role == "user" and text and not is_result:
                session.tasks.append(
                    FakeTask(
                        id=str(uuid.uuid4()),
                        session_id=session.id,
                        order=len(session.tasks) + 1,
                        task_description=text,
                        progresses=None,
                        user_preferences=[text] if "prefer" in text.lower() else None,
                        status="running",
                        created_at=now,
                        updated_at=now,
                    )
                )
            elif message.role == "assistant" and text and not has_calls and session.tasks:
                task = session.tasks[-1]
                task.progresses = [
                    *(task.progresses or []),
                    f"Agent responded to: {task.task_description}",
                ]
                task.status = "success"
                task.updated_at = now
            if session.tasks:
                message.task_id = session.tasks[-1].id
            message.session_task_process_status = "success"
            message.updated_at = now
        self.learning.on_processed(session)

    def _observing_status(self, sid: str, query: dict[str, str], body: Any) -> Answer:
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                raise _session_not_found()
            statuses = [m.session_task_process_status for m in session.messages]
            return ok(
                {
                    "observed": sum(s in ("success", "failed") for s in statuses),
                    "in_process": statuses.count("running"),
                    "pending": statuses.count("pending"),
                    "updated_at": self._now(),
                }
            )

    def _get_tasks(self, sid: str, query: dict[str, str], body: Any) -> Answer:
        limit = parse_limit(query.get("limit"), DEFAULT_LIST_LIMIT) or DEFAULT_LIST_LIMIT
        desc = parse_bool(query.get("time_desc"))
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                raise _session_not_found()
            page, next_cursor, has_more = paginate(
                list(session.tasks),
                lambda t: t.order,
                kind="task",
                limit=limit,
                cursor=query.get("cursor"),
                desc=desc,
            )
            items = [self._task_json(t) for t in page]
        data: dict[str, Any] = {"items": items, "has_more": has_more}
        if next_cursor:
            data["next_cursor"] = next_cursor
        return ok(data)

    def _task_json(self, task: FakeTask) -> dict[str, Any]:
        data: dict[str, Any] = {"task_description": task.task_description}
        if task.progresses is not None:  # the real server omits null fields here
            data["progresses"] = list(task.progresses)
        if task.user_preferences is not None:
            data["user_preferences"] = list(task.user_preferences)
        return {
            "id": task.id,
            "session_id": task.session_id,
            "project_id": self.project_id,
            "order": task.order,
            "data": data,
            "status": task.status,
            "is_planning": False,
            "created_at": task.created_at,
            "updated_at": task.updated_at,
        }


def start_fake_acontext(**kwargs: Any) -> FakeAcontext:
    """Create a :class:`FakeAcontext` (keyword arguments as its constructor) and start it."""
    return FakeAcontext(**kwargs).start()
