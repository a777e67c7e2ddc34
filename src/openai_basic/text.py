"""Text made valid at the edge: whatever bytes come in, what goes on is valid Unicode.

Python hands undecodable bytes from argv, the environment and surrogate-escaped streams over as
lone surrogates, and a JSON reply may carry one too. Such a string cannot be encoded, so it would
crash the first HTTP request or journal write that meets it. Each becomes U+FFFD instead.

Text a model, a tool or a session wrote is made ``printable`` before it reaches a terminal: no
escape sequence in it is obeyed. Also ``plural``, so that one is not told as "1 messages".
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")
# What a terminal would obey rather than show: escape sequences (a string such as OSC's runs to
# its terminator, or unfinished to the end of the line), their 8-bit C1 forms, the C0 controls but
# tab and newline, DEL, and the bidi overrides that make text read otherwise than it is stored.
_CONTROLS = re.compile(
    r"""
      (?: \x1b[P\]X^_] | [\x90\x98\x9d\x9e\x9f] ) [^\x07\x1b\x9c\n]* (?: \x07 | \x1b\\ | \x9c )?
    | (?: \x1b\[ | \x9b ) [0-?]* [ -/]* [@-~]?
    | \x1b [ -/]* [0-~]?
    | [\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]
    """,
    re.VERBOSE,
)


def valid(text: str) -> str:
    """``text`` with undecodable bytes and lone surrogates replaced by U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:  # bytes escaped by Python's decoder: decode them again, keeping what was valid
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # surrogates that stand for no byte
        return _SURROGATE.sub(REPLACEMENT, text)


def valid_data(value: Any) -> Any:
    """A JSON-like value with every string in it (keys too) made valid."""
    if isinstance(value, str):
        return valid(value)
    if isinstance(value, dict):
        return {valid_data(key): valid_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [valid_data(item) for item in value]
    return value


def plural(count: int, noun: str) -> str:
    """``count`` with ``noun``, made plural unless it is one: "1 message", "2 messages"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def decode(data: bytes) -> tuple[str, bool]:
    """UTF-8 bytes as text, and whether anything had to be replaced."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace"), True


def printable(text: str) -> str:
    """The text without anything a terminal would obey: a model, a tool or a session wrote it."""
    return _CONTROLS.sub("", text)
