"""The package's exceptions.

``AgentError`` is the one base. A ``ToolDefinitionError`` is a developer mistake found at
registration; the others are runtime failures. Only the CLI turns them into messages and exit codes.
"""

from __future__ import annotations

import signal


class AgentError(Exception):
    """Base class for every error this package raises on purpose."""


class ToolDefinitionError(AgentError):
    """A Python function cannot become a tool; every problem is listed at once."""

    def __init__(self, function_name: str, problems: list[str]) -> None:
        self.function_name = function_name
        self.problems = problems
        super().__init__(f"tool {function_name!r} cannot be registered: " + "; ".join(problems))


class ConfigError(AgentError):
    """The settings or the command line are wrong; the user can fix it (exit code 2)."""


class SessionNotFoundError(ConfigError):
    """The session to resume does not exist in Acontext."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"no Acontext session {session_id}")


class ModelChoiceError(ConfigError):
    """The model cannot serve this agent (unknown, or without tool calling); another model can."""


class StateError(ConfigError):
    """The state folder or its journal cannot be used; the message says how to fix it."""


class ServiceError(AgentError):
    """OpenAI or Acontext failed at run time (exit code 1)."""

    def __init__(self, service: str, message: str) -> None:
        self.service = service
        self.detail = message
        super().__init__(f"{service}: {message}")


class SpaceNotFoundError(ServiceError):
    """The learning space named by the setting, or remembered, does not exist in Acontext."""

    def __init__(self, space_id: str) -> None:
        self.space_id = space_id
        super().__init__("Acontext", f"no learning space {space_id}")


class JournalError(ServiceError):
    """Writing the local journal failed at run time (a full disk, a lock held too long)."""

    def __init__(self, message: str) -> None:
        super().__init__("journal", message)


class Interrupted(AgentError):
    """Ctrl-C, SIGTERM or SIGHUP; the history is consistent and the session can be resumed."""

    def __init__(self, session_id: str, signum: int = signal.SIGINT) -> None:
        self.session_id = session_id
        self.exit_code = 128 + signum
        super().__init__(f"interrupted; resume with: agent --resume {session_id}")


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: every path that handles Ctrl-C handles it the same way."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def signal_number(interrupt: KeyboardInterrupt) -> int:
    return interrupt.signum if isinstance(interrupt, Terminated) else signal.SIGINT
