"""One conversation from start to tasks: open the session, run each turn, extract the tasks.

This is the use case the CLI and the demo share. It wires the settings, the OpenAI client, the tool
registry and the Acontext mirror together; it decides nothing about exit codes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from openai_basic.agent import run_agent
from openai_basic.errors import AgentError
from openai_basic.mirror import AcontextMirror, TaskReport
from openai_basic.output import Output
from openai_basic.sample_tools import TOOLS
from openai_basic.settings import Settings
from openai_basic.tools import ToolRegistry


class Interrupted(AgentError):
    """The user pressed Ctrl-C; the session is consistent and can be resumed."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"interrupted; resume with: agent --resume {session_id}")


@dataclass(frozen=True)
class ChatOutcome:
    session_id: str
    replies: tuple[str, ...]
    report: TaskReport


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

    registry = registry if registry is not None else ToolRegistry(TOOLS)
    mirror = AcontextMirror(settings)
    try:
        if resume:
            opened = mirror.resume(resume, default_system_prompt=settings.system_prompt)
            out.status(f"resumed session {opened.session_id} ({len(opened.history)} messages)")
        else:
            opened = mirror.create(
                model=settings.openai_model, system_prompt=settings.system_prompt
            )
            out.status(f"session {opened.session_id}")
        client = OpenAI(api_key=settings.openai_api_key, base_url=settings.openai_base_url)
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
            raise Interrupted(opened.session_id) from None
        except AgentError:
            out.status(f"session {opened.session_id} is kept: agent --resume {opened.session_id}")
            raise
        report = mirror.finish(on_wait=out.waiting)
        return ChatOutcome(opened.session_id, tuple(replies), report)
    finally:
        mirror.close()
