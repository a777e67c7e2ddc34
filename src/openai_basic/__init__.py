"""openai-basic: a console OpenAI agent whose conversations live in Acontext.

Use the loop as a library::

    from openai_basic import AgentSpec, ToolRegistry, run_agent

The names load on first use, so importing the package (and ``agent --help``) stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openai_basic.agent import AgentSpec, MessageSink, TurnResult, run_agent
    from openai_basic.tools import ToolRegistry

__all__ = ["AgentSpec", "MessageSink", "ToolRegistry", "TurnResult", "run_agent"]


def __getattr__(name: str) -> Any:
    if name in ("AgentSpec", "MessageSink", "TurnResult", "run_agent"):
        from openai_basic import agent

        return getattr(agent, name)
    if name == "ToolRegistry":
        from openai_basic.tools import ToolRegistry

        return ToolRegistry
    raise AttributeError(f"module 'openai_basic' has no attribute {name!r}")
