"""One conversation from start to tasks: open the session, run each turn, extract the tasks.

This is the use case the CLI and the demo share. It wires the settings, the OpenAI client, the tool
registry and the Acontext mirror together; it decides nothing about exit codes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openai_basic.agent import run_agent
from openai_basic.errors import AgentError
from openai_basic.mirror import AcontextMirror, TaskReport
from openai_basic.output import Output
from openai_basic.sample_tools import TOOLS
from openai_basic.settings import Settings
from openai_basic.tools import ToolFunction, ToolRegistry

INTERRUPT_SYNC_SECONDS = 3.0


class Interrupted(AgentError):
    """The user pressed Ctrl-C; the history is consistent and the session can be resumed."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"interrupted; resume with: agent --resume {session_id}")


@dataclass(frozen=True)
class ChatOutcome:
    session_id: str
    replies: tuple[str, ...]
    history: tuple[dict[str, Any], ...]
    report: TaskReport
    journal: Path


def make_registry(settings: Settings, tools: Iterable[ToolFunction] = TOOLS) -> ToolRegistry:
    return ToolRegistry(
        tools,
        timeout=settings.tool_timeout_seconds,
        max_result_chars=settings.tool_result_max_chars,
    )


def chat(
    *,
    settings: Settings,
    prompts: Iterable[str],
    out: Output,
    resume: str | None = None,
    registry: ToolRegistry | None = None,
) -> ChatOutcome:
    """Run every prompt as a turn in one Acontext session, then flush it and read its tasks."""
    from openai import OpenAI

    registry = registry if registry is not None else make_registry(settings)
    client = OpenAI(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        max_retries=settings.openai_max_retries,
    )
    client.chat.completions  # noqa: B018  (load it now: the mirror's writer imports in parallel)
    mirror = AcontextMirror(settings, on_problem=lambda text: out.status(f"acontext: {text}"))
    try:
        if resume:
            opened = mirror.resume(resume, default_system_prompt=settings.system_prompt)
            out.status(f"resumed session {opened.session_id} ({len(opened.history)} messages)")
        else:
            opened = mirror.create(
                model=settings.openai_model, system_prompt=settings.system_prompt
            )
            out.status(f"session {opened.session_id}")
        replies: list[str] = []
        try:
            for prompt in prompts:
                result = run_agent(
                    client=client,
                    model=settings.openai_model,
                    registry=registry,
                    history=opened.history,
                    user_message=prompt,
                    sink=mirror,
                    system_prompt=opened.system_prompt,
                    max_iterations=settings.max_iterations,
                    on_tool_result=out.tool,
                )
                if result.hit_limit:
                    out.status(
                        f"stopped calling tools after {settings.max_iterations} rounds "
                        "(AGENT_MAX_ITERATIONS); the model answered with what it had"
                    )
                out.reply(result.reply)
                replies.append(result.reply)
        except KeyboardInterrupt:
            _save(mirror, out, min(INTERRUPT_SYNC_SECONDS, settings.sync_wait_seconds))
            raise Interrupted(opened.session_id) from None
        except AgentError:
            _save(mirror, out, settings.sync_wait_seconds)
            out.status(f"session {opened.session_id} is kept: agent --resume {opened.session_id}")
            raise
        report = mirror.finish(on_sync=out.syncing, on_wait=out.waiting)
        return ChatOutcome(
            opened.session_id, tuple(replies), tuple(opened.history), report, mirror.journal.path
        )
    finally:
        mirror.close()


def _save(mirror: AcontextMirror, out: Output, seconds: float) -> None:
    """Give the writer a moment to send what is waiting; say where the rest is."""
    try:
        left = mirror.sync(timeout=seconds, on_progress=out.syncing)
    except AgentError:
        left = mirror.journal.count_waiting()
    if left:
        out.unsent(left, mirror.journal.path)
