"""What the fake Acontext's routes share: error envelopes, query parsing, cursor paging.

Both the session routes (:mod:`tests.fakes.acontext_server`) and the learning-space routes
(:mod:`tests.fakes.learning`) answer through these, so they fail the same way the real server
does: a malformed id or parameter is HTTP 400 ``{"code": 400, "msg": "parameter error"}``.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_PAGE_LIMIT = 200
DEFAULT_LIST_LIMIT = 20


class Reply(Exception):
    """Raised inside a route to answer with an error envelope."""

    def __init__(self, http_status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.http_status = http_status
        self.code = code
        self.msg = msg


def param_error() -> Reply:
    return Reply(400, 400, "parameter error")


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def jsonb_contains(container: Any, contained: Any) -> bool:
    """PostgreSQL ``@>`` semantics on JSON values (objects recursively, arrays as sets)."""
    if isinstance(contained, dict):
        return isinstance(container, dict) and all(
            key in container and jsonb_contains(container[key], value)
            for key, value in contained.items()
        )
    if isinstance(contained, list):
        return isinstance(container, list) and all(
            any(jsonb_contains(candidate, value) for candidate in container) for value in contained
        )
    if isinstance(contained, bool) or isinstance(container, bool):
        return type(contained) is type(container) and contained == container
    if isinstance(contained, (int, float)) and isinstance(container, (int, float)):
        return contained == container
    return type(contained) is type(container) and contained == container


def _encode_cursor(kind: str, seq: int) -> str:
    raw = compact({"k": kind, "s": seq}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(kind: str, cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        if data["k"] != kind or not isinstance(data["s"], int):
            raise ValueError(cursor)
        return int(data["s"])
    except (ValueError, KeyError, TypeError) as exc:
        raise param_error() from exc


def parse_bool(value: str | None) -> bool:
    if value is None or value == "":
        return False
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise param_error()


def parse_limit(value: str | None, default: int | None) -> int | None:
    if value is None or value == "":
        return default
    try:
        limit = int(value)
    except ValueError as exc:
        raise param_error() from exc
    if limit < 0 or limit > MAX_PAGE_LIMIT:
        raise param_error()
    return limit


def paginate(
    items: list[Any],
    seq_of: Callable[[Any], int],
    *,
    kind: str,
    limit: int | None,
    cursor: str | None,
    desc: bool,
) -> tuple[list[Any], str | None, bool]:
    """Order by sequence, start after ``cursor``, take ``limit`` (None/0 = all)."""
    ordered = sorted(items, key=seq_of, reverse=desc)
    if cursor:
        after = _decode_cursor(kind, cursor)
        ordered = [i for i in ordered if (seq_of(i) < after if desc else seq_of(i) > after)]
    if not limit:
        return ordered, None, False
    page = ordered[:limit]
    has_more = len(ordered) > limit
    return page, _encode_cursor(kind, seq_of(page[-1])) if has_more else None, has_more


def canonical_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise param_error() from exc


def json_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise param_error()
    return body


def ok(data: Any, status: int = 200) -> tuple[int, dict[str, Any]]:
    """A success envelope: the real server's ``msg`` is empty on success."""
    return status, {"code": 0, "data": data, "msg": ""}


@dataclass(frozen=True)
class RawBody:
    """A non-JSON answer (a ZIP download): sent as is, with its content type and headers."""

    content: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


Answer = tuple[int, dict[str, Any] | RawBody]
