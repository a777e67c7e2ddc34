"""The tool registry: plain typed Python functions in, strict OpenAI function tools out.

A tool is a function with type hints and a docstring. Its JSON schema comes from a pydantic model
built from the signature; the docstring gives the description and, in its ``Args:`` section, the
parameter descriptions. Dispatch never raises: every failure becomes text the model can act on.
"""

from __future__ import annotations

import inspect
import json
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from openai_basic.errors import ToolDefinitionError

ToolFunction = Callable[..., Any]
_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Returns|Return|Raises|Yields|Examples?|Notes?):\s*$"
)
_ARG_ENTRY = re.compile(r"^\s*\**(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


@dataclass(frozen=True)
class ToolCall:
    """One call the model asked for."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolResult:
    """The answer to one tool call, as the model will read it."""

    call_id: str
    name: str
    arguments: str
    content: str
    ok: bool
    seconds: float

    def as_message(self) -> dict[str, Any]:
        return {"role": "tool", "tool_call_id": self.call_id, "content": self.content}


@dataclass(frozen=True)
class Tool:
    """A registered function and what the model is told about it."""

    name: str
    description: str
    function: ToolFunction
    arguments_model: type[BaseModel]
    defaults: frozenset[str]

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": _strict(self.arguments_model.model_json_schema()),
                "strict": True,
            },
        }


class ToolRegistry:
    """Tools by name; turns model tool calls into tool results."""

    def __init__(self, functions: Iterable[ToolFunction] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for function in functions:
            self.register(function)

    def register(self, function: ToolFunction) -> ToolFunction:
        """Add a function as a tool (usable as a decorator). Raises ``ToolDefinitionError``."""
        tool = _make_tool(function)
        if tool.name in self._tools:
            raise ToolDefinitionError(tool.name, ["a tool with this name is already registered"])
        self._tools[tool.name] = tool
        return function

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Any:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        return [tool.schema() for tool in self._tools.values()]

    def call(self, call: ToolCall) -> ToolResult:
        started = time.perf_counter()
        content, ok = self._run(call)
        return ToolResult(
            call.id, call.name, call.arguments, content, ok, time.perf_counter() - started
        )

    def call_all(self, calls: list[ToolCall]) -> list[ToolResult]:
        """Run the calls concurrently; results come back in the order of ``calls``."""
        if len(calls) <= 1:
            return [self.call(call) for call in calls]
        pool = ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="tool")
        try:
            return list(pool.map(self.call, calls))
        finally:  # on Ctrl-C, do not wait here for tools that are still running
            pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, call: ToolCall) -> tuple[str, bool]:
        tool = self._tools.get(call.name)
        if tool is None:
            known = ", ".join(self._tools) or "none"
            return f"Error: unknown tool {call.name!r}. Available tools: {known}.", False
        try:
            raw = json.loads(call.arguments or "{}")
        except json.JSONDecodeError as exc:
            return (
                f"Error: the arguments are not valid JSON ({exc.msg}). Send a JSON object.",
                False,
            )
        try:
            parsed = tool.arguments_model.model_validate(raw)
        except ValidationError as exc:
            return f"Error: invalid arguments for {tool.name}: {_describe(exc)}", False
        kwargs = {
            name: getattr(parsed, name)
            for name in type(parsed).model_fields
            if not (name in tool.defaults and getattr(parsed, name) is None)
        }
        try:
            value = tool.function(**kwargs)
        except Exception as exc:  # a tool's failure is the model's to handle
            return f"Error: {tool.name} failed: {type(exc).__name__}: {exc}", False
        return _to_text(value), True


def _make_tool(function: ToolFunction) -> Tool:
    name = getattr(function, "__name__", "")
    problems: list[str] = []
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        problems.append("the name must be 1-64 letters, digits, '_' or '-'")
    doc = inspect.getdoc(function) or ""
    summary, arg_docs = _parse_docstring(doc)
    if not summary:
        problems.append("it needs a docstring that says what it does")
    try:
        hints = get_type_hints(function)
    except Exception as exc:
        hints = {}
        problems.append(f"its type hints cannot be resolved ({exc})")
    fields: dict[str, Any] = {}
    defaults: set[str] = set()
    for param in inspect.signature(function).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            problems.append(f"*{param.name} / **{param.name} parameters are not supported")
            continue
        if param.kind is param.POSITIONAL_ONLY:
            problems.append(f"parameter {param.name!r} is positional-only")
            continue
        if param.name not in hints:
            problems.append(f"parameter {param.name!r} has no type hint")
            continue
        description = arg_docs.get(param.name)
        if param.default is param.empty:
            fields[param.name] = (hints[param.name], Field(description=description))
        else:  # strict mode requires every field; null means "use the default"
            defaults.add(param.name)
            fields[param.name] = (hints[param.name] | None, Field(None, description=description))
    if problems:
        raise ToolDefinitionError(name or repr(function), problems)
    try:
        model = create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
        model.model_json_schema()
    except Exception as exc:
        raise ToolDefinitionError(name, [f"its parameters have no JSON schema ({exc})"]) from exc
    return Tool(name, summary, function, model, frozenset(defaults))


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its description and its ``Args:`` entries."""
    description: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in doc.splitlines():
        header = _SECTION.match(line)
        if header:
            section, current = header.group(1), None
        elif section is None:
            description.append(line)
        elif section in ("Args", "Arguments", "Parameters") and line.strip():
            entry = _ARG_ENTRY.match(line)
            if entry and _indent(line) <= 4:
                current = entry.group(1)
                args[current] = entry.group(2).strip()
            elif current:
                args[current] = f"{args[current]} {line.strip()}".strip()
    return "\n".join(description).strip(), args


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _strict(node: Any) -> Any:
    """Make a pydantic schema acceptable to OpenAI's strict mode."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    cleaned = {
        key: (
            {n: _strict(s) for n, s in value.items()}
            if key in ("properties", "$defs")
            else _strict(value)
        )
        for key, value in node.items()
        if key not in ("title", "default")
    }
    if cleaned.get("type") == "object":
        cleaned.setdefault("properties", {})
        cleaned["additionalProperties"] = False
        cleaned["required"] = list(cleaned["properties"])
    return cleaned


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "arguments"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return json.dumps(value, ensure_ascii=False, default=str)
