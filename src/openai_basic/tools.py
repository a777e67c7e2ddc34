"""The tool registry: plain typed Python functions in, strict OpenAI function tools out.

A tool is a function with type hints and a docstring, plain or ``async def``. A pydantic model is
built from the signature; the docstring gives the description and, in its ``Args:`` section, the
parameter descriptions; the openai SDK makes the model's JSON schema strict. Dispatch never
raises: every failure becomes text the model can act on.

A tool that acts on the world (books, pays, deletes, sends) can be marked with ``@needs_approval``
or registered with ``needs_approval=True``: each of its calls then runs only once an approver,
supplied by the caller of ``call_all``, says yes. A "no" is a tool result the model reads.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from openai_basic.errors import ToolDefinitionError
from openai_basic.settings import Settings
from openai_basic.text import valid

ToolFunction = Callable[..., Any]
Function = TypeVar("Function", bound=ToolFunction)
_APPROVAL_MARK = "__needs_approval__"
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
    declined: bool = False  # not run: it needed approval and did not get it

    def as_message(self) -> dict[str, Any]:
        return {"role": "tool", "tool_call_id": self.call_id, "content": self.content}


@dataclass(frozen=True)
class Approval:
    """An approver's answer to a call: run it, or not and what the model is told instead."""

    approved: bool
    reason: str = ""  # for a call not approved; empty: "The user declined this call to ..."


Approver = Callable[[ToolCall], Approval]


def needs_approval(function: Function) -> Function:
    """Mark a tool whose every call the user approves first (usable as a decorator).

    For a function that acts on the world: books, pays, deletes, sends. The function itself is
    unchanged, so it can be listed in ``TOOLS`` like any other.
    """
    setattr(function, _APPROVAL_MARK, True)
    return function


@dataclass(frozen=True)
class Tool:
    """A registered function and what the model is told about it."""

    name: str
    description: str
    function: ToolFunction
    arguments_model: type[BaseModel]
    defaults: frozenset[str]
    timeout: float
    definition: dict[str, Any]  # the strict function tool, as the openai SDK builds it
    needs_approval: bool = False

    def schema(self, *, strict: bool = True) -> dict[str, Any]:
        """The function tool; without ``strict`` for the servers that reject the flag."""
        function = dict(self.definition["function"])
        if not strict:
            function.pop("strict", None)  # a tool defined by its schema may have none
        return {"type": "function", "function": function}


class ToolRegistry:
    """Tools by name; turns model tool calls into tool results.

    Each call runs in a thread of its own, so several calls run at once and a call that overruns
    its timeout is abandoned (answered with an error) instead of blocking the conversation. The
    calls that need approval are asked about first, on the calling thread, before any call runs.
    """

    def __init__(
        self,
        functions: Iterable[ToolFunction] = (),
        *,
        timeout: float = Settings.tool_timeout_seconds,  # the settings' defaults
        max_result_chars: int = Settings.tool_result_max_chars,
    ) -> None:
        self._tools: dict[str, Tool] = {}
        self._timeout = timeout
        self._max_result_chars = max_result_chars
        for function in functions:
            self.register(function)

    def register(
        self, function: ToolFunction, *, timeout: float | None = None, needs_approval: bool = False
    ) -> ToolFunction:
        """Add a function as a tool (usable as a decorator). Raises ``ToolDefinitionError``.

        With ``needs_approval`` (or a function marked ``@needs_approval``) each call waits for
        an approver's yes; see ``call_all``.
        """
        approval = needs_approval or bool(getattr(function, _APPROVAL_MARK, False))
        tool = _make_tool(function, self._timeout if timeout is None else timeout, approval)
        if tool.name in self._tools:
            raise ToolDefinitionError(tool.name, ["a tool with this name is already registered"])
        self._tools[tool.name] = tool
        return function

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def extended(self, tools: Iterable[Tool]) -> ToolRegistry:
        """A registry with these tools too (``schema_tool`` makes them); this one is unchanged."""
        registry = copy.copy(self)
        registry._tools = dict(self._tools)
        for tool in tools:
            if tool.name in registry._tools:
                raise ToolDefinitionError(
                    tool.name, ["a tool with this name is already registered"]
                )
            registry._tools[tool.name] = tool
        return registry

    def __len__(self) -> int:
        return len(self._tools)

    def schemas(self, *, strict: bool = True) -> list[dict[str, Any]]:
        return [tool.schema(strict=strict) for tool in self._tools.values()]

    def call(self, call: ToolCall, *, approve: Approver | None = None) -> ToolResult:
        return self.call_all([call], approve=approve)[0]

    def call_all(
        self, calls: list[ToolCall], *, approve: Approver | None = None
    ) -> list[ToolResult]:
        """Run the calls concurrently; results come back in the order of ``calls``.

        Each call that needs approval is first put to ``approve``, one at a time on this thread,
        before any call starts: the time an answer takes counts against no tool's timeout, and
        Ctrl-C while it is asked leaves no tool running. Without ``approve`` they are refused.
        """
        runs = [self._prepare(call, approve or _cannot_ask) for call in calls]
        for run in runs:
            run.start()
        return [self._finish(run) for run in runs]

    def _prepare(self, call: ToolCall, approve: Approver) -> _Run:
        """The call ready to start, or already answered: unknown, invalid or not approved."""
        tool = self._tools.get(call.name)
        if tool is None:
            known = ", ".join(self._tools) or "none"
            return _Run(
                call,
                outcome=(f"Error: unknown tool {call.name!r}. Available tools: {known}.", False),
            )
        arguments = _arguments(tool, call.arguments)
        if isinstance(arguments, str):
            return _Run(call, outcome=(arguments, False))
        if tool.needs_approval:
            refused = _refused(tool, call, approve)
            if refused is not None:
                return refused
        return _Run(call, tool, arguments)

    def _finish(self, run: _Run) -> ToolResult:
        if run.thread is not None and run.tool is not None:
            run.thread.join(max(0.0, run.started + run.tool.timeout - time.perf_counter()))
            if run.thread.is_alive():
                run.outcome = (
                    f"Error: {run.tool.name} did not finish within {run.tool.timeout:g} s.",
                    False,
                )
        content, ok = run.outcome or ("Error: the tool returned nothing.", False)
        call = run.call
        return ToolResult(
            call.id,
            call.name,
            call.arguments,
            _capped(valid(content), self._max_result_chars),
            ok,
            time.perf_counter() - run.started,
            run.declined,
        )


def _refused(tool: Tool, call: ToolCall, approve: Approver) -> _Run | None:
    """None when the call is approved; else the call answered without running. Ctrl-C goes
    through."""
    try:
        approval = approve(call)
    except Exception as exc:  # an approver's bug is no reason to run the call, nor to crash
        failed = f"Error: {tool.name} was not run: asking for approval failed: {exc}"
        return _Run(call, outcome=(failed, False))
    if approval.approved:
        return None
    reason = approval.reason or f"The user declined this call to {tool.name}."
    return _Run(call, outcome=(reason, False), declined=True)


def _cannot_ask(call: ToolCall) -> Approval:
    return Approval(
        False, f"{call.name} was not run: it needs the user's approval, and no one could be asked."
    )


@dataclass
class _Run:
    """One call: ready to start, in flight, or answered without running."""

    call: ToolCall
    tool: Tool | None = None
    arguments: dict[str, Any] | None = None
    outcome: tuple[str, bool] | None = None
    declined: bool = False
    started: float = 0.0
    thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the tool in a thread of its own; its time, and its timeout, count from now."""
        self.started = time.perf_counter()
        if self.tool is None or self.arguments is None:
            return
        # a daemon thread: an abandoned tool never keeps the agent from exiting
        self.thread = threading.Thread(
            target=self._execute,
            args=(self.tool, self.arguments),
            daemon=True,
            name=f"tool-{self.tool.name}",
        )
        self.thread.start()

    def _execute(self, tool: Tool, arguments: dict[str, Any]) -> None:
        try:
            value = tool.function(**arguments)
            if inspect.iscoroutine(value):  # an async tool: run it in this thread's own loop
                value = asyncio.run(value)
            self.outcome = (_to_text(value), True)
        except Exception as exc:  # a tool's failure is the model's to handle
            self.outcome = (f"Error: {tool.name} failed: {type(exc).__name__}: {exc}", False)


def _arguments(tool: Tool, arguments: str) -> dict[str, Any] | str:
    """The keyword arguments for the call, or the error text that tells the model what is wrong."""
    try:
        raw = json.loads(arguments or "{}")
    except json.JSONDecodeError as exc:
        return f"Error: the arguments are not valid JSON ({exc.msg}). Send a JSON object."
    try:
        parsed = tool.arguments_model.model_validate(raw)
    except ValidationError as exc:
        return f"Error: invalid arguments for {tool.name}: {_describe(exc)}"
    fields = {  # null for a parameter with a default means "use the default"
        name: getattr(parsed, name)
        for name in type(parsed).model_fields
        if not (name in tool.defaults and getattr(parsed, name) is None)
    }
    return {**fields, **(parsed.model_extra or {})}  # a schema tool's arguments are all extra


def _capped(content: str, limit: int) -> str:
    if len(content) <= limit:
        return content
    return content[:limit] + f"\n[truncated: {len(content) - limit} more characters]"


def _make_tool(function: ToolFunction, timeout: float, needs_approval: bool) -> Tool:
    name = getattr(function, "__name__", "")
    summary, arg_docs = _parse_docstring(inspect.getdoc(function) or "")
    problems: list[str] = []
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        problems.append("the name must be 1-64 letters, digits, '_' or '-'")
    if not summary:
        problems.append("it needs a docstring that says what it does")
    fields, defaults = _fields(function, arg_docs, problems)
    if problems:
        raise ToolDefinitionError(name or repr(function), problems)
    try:
        model = create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
        definition = _definition(name, summary, model)
    except Exception as exc:
        raise ToolDefinitionError(name, [f"its parameters have no JSON schema ({exc})"]) from exc
    return Tool(name, summary, function, model, defaults, timeout, definition, needs_approval)


def _fields(
    function: ToolFunction, arg_docs: dict[str, str], problems: list[str]
) -> tuple[dict[str, Any], frozenset[str]]:
    """The pydantic fields of the parameters, and which have defaults; adds to ``problems``."""
    try:
        hints = get_type_hints(function)
    except Exception as exc:
        hints = {}
        problems.append(f"its type hints cannot be resolved ({exc})")
    fields: dict[str, Any] = {}
    defaults: set[str] = set()
    for param in inspect.signature(function).parameters.values():
        problem = _parameter_problem(param, hints)
        if problem:
            problems.append(problem)
            continue
        description = arg_docs.get(param.name)
        if param.default is param.empty:
            fields[param.name] = (hints[param.name], Field(description=description))
        else:  # strict mode requires every field; null means "use the default"
            defaults.add(param.name)
            fields[param.name] = (hints[param.name] | None, Field(None, description=description))
    return fields, frozenset(defaults)


def _parameter_problem(param: inspect.Parameter, hints: dict[str, Any]) -> str | None:
    if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
        return f"*{param.name} / **{param.name} parameters are not supported"
    if param.kind is param.POSITIONAL_ONLY:
        return f"parameter {param.name!r} is positional-only"
    if param.name not in hints:
        return f"parameter {param.name!r} has no type hint"
    return None


def _definition(name: str, description: str, model: type[BaseModel]) -> dict[str, Any]:
    from openai import pydantic_function_tool  # seconds to import: not at `agent --help`

    return dict(pydantic_function_tool(model, name=name, description=description))


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


class _AnyArguments(BaseModel):
    """The arguments of a tool defined by its schema: any JSON object, passed on whole."""

    model_config = ConfigDict(extra="allow")


def schema_tool(
    definition: dict[str, Any],
    function: Callable[[dict[str, Any]], Any],
    *,
    timeout: float = Settings.tool_timeout_seconds,
) -> Tool:
    """A tool defined by its OpenAI function schema, sent as it is (not made strict), whose
    ``function`` is called with the parsed arguments: for tools that come with their schema,
    such as an SDK's. Add it with ``ToolRegistry.extended``."""
    described = definition["function"]

    def call(**arguments: Any) -> Any:
        return function(arguments)

    return Tool(
        name=described["name"],
        description=described.get("description", ""),
        function=call,
        arguments_model=_AnyArguments,
        defaults=frozenset(),
        timeout=timeout,
        definition=definition,
    )
