"""What a failed model call means, in this package's words, for the loop and ``agent doctor``.

A refusal names the part of the setup to fix (the key, the model, its tools, the stored
conversation, the server) and says how. The loop stops with ``refusal.error()``; the doctor shows
``refusal.detail`` on the line of the check that failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import openai

from openai_basic.errors import AgentError, ConfigError, ModelChoiceError, ServiceError

# How model servers (OpenAI and compatible ones) word a 400 about a history they will not take,
# such as a tool message without its call or a call left unanswered ...
BAD_HISTORY_WORDS = ("tool_call_id", "with 'tool_calls'", "role 'tool'", "messages[", "messages.[")
# ... and about tools from a model that has no tool calling.
NO_TOOLS_WORDS = ("support", "unknown parameter", "unrecognized", "auto-tool-choice")

Part = Literal["key", "model", "tools", "history", "request", "server"]


@dataclass(frozen=True)
class Refusal:
    """The part of the setup a failed model call blames, and what to do about it."""

    part: Part
    detail: str
    model: str

    def error(self) -> AgentError:
        """The error to stop with: a ConfigError when the user's settings are to blame."""
        if self.part == "key":
            return ConfigError(f"OpenAI key {self.detail}")
        if self.part in ("model", "tools"):
            return ModelChoiceError(f"model {self.model!r} {self.detail}")
        return ServiceError("OpenAI", self.detail)


def refusal(exc: openai.APIError, model: str) -> Refusal:
    """Name what the model server refused, and how to fix it."""
    if isinstance(exc, openai.AuthenticationError):
        return Refusal("key", "rejected: check OPENAI_API_KEY", model)
    if isinstance(exc, openai.NotFoundError):
        return Refusal("model", "not found: set OPENAI_MODEL to a model you have", model)
    if isinstance(exc, openai.BadRequestError):
        return _bad_request(error_text(exc), exc.param, model)
    if isinstance(exc, openai.APIStatusError):
        return Refusal("server", f"HTTP {exc.status_code}: {error_text(exc)}", model)
    if isinstance(exc, openai.APIConnectionError):
        fix = "check OPENAI_BASE_URL and the network"
        return Refusal("server", f"cannot reach the model server ({exc}): {fix}", model)
    return Refusal("server", f"an answer that cannot be read ({exc})", model)


def refuses_strict(exc: openai.APIError) -> bool:
    """A server without strict tool schemas names the flag in a 400."""
    return isinstance(exc, openai.BadRequestError) and "strict" in error_text(exc).lower()


def _bad_request(text: str, param: str | None, model: str) -> Refusal:
    """Tell a refused history from a model without tool calling from anything else.

    Both of the first two mention tools, so the history is told apart first: choosing another
    model does not repair a history.
    """
    lowered = text.lower()
    if (param or "").startswith("messages") or any(w in lowered for w in BAD_HISTORY_WORDS):
        return Refusal(
            "history",
            f"the stored conversation is not valid for the model ({text}); "
            "inspect it with: agent history SESSION_ID",
            model,
        )
    mentions_tools = "tool" in lowered or "function" in lowered
    if mentions_tools and any(word in lowered for word in NO_TOOLS_WORDS):
        fix = "choose a model with tool calling (OPENAI_MODEL)"
        return Refusal("tools", f"rejected the tools ({text}); {fix}", model)
    return Refusal("request", f"HTTP 400: {text}", model)


def error_text(exc: openai.APIError) -> str:
    """The server's own message, without the SDK's "Error code: ..." wrapping."""
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return exc.message
