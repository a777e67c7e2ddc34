"""The interactive chat: line editing, history across runs, slash commands, Ctrl-C that cancels.

Ctrl-C during a turn cancels the turn (every tool call made is answered, so the session stays
valid); Ctrl-C or Ctrl-D at the prompt, or ``/exit``, ends the chat.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from openai_basic.errors import AgentError, Terminated
from openai_basic.text import valid

if TYPE_CHECKING:  # the prompt comes up before the conversation's imports
    from openai_basic.conversation import Conversation

PROMPT = "you> "
HELP = {
    "/help": "this list",
    "/tasks": "send the conversation to Acontext now and show its tasks",
    "/session": "the session id, its size and where it is kept",
    "/tools": "the tools the model can call",
    "/skills": "the skills of the learning space",
    "/learn": "attach this session to the learning space now (as --learn does)",
    "/usage": "tokens and time used so far",
    "/exit": "end the chat and show the tasks (also Ctrl-D)",
}
EXIT_COMMANDS = ("/exit", "/quit")


def read_line(prompt: str = PROMPT) -> str:
    """Read a line; the prompt goes to stdout only when it is the terminal, else to stderr."""
    if sys.stdout is not None and sys.stdout.isatty():
        return valid(input(prompt))
    print(prompt, end="", file=sys.stderr, flush=True)
    return valid(input())


def enable_line_editing(history_file: Path) -> Callable[[], None]:
    """Arrow keys and a history kept across runs; returns the function that saves it."""
    try:
        import readline
    except ImportError:  # no readline on this platform: plain input still works
        return lambda: None
    with contextlib.suppress(OSError):  # no history is better than no chat
        history_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        readline.read_history_file(history_file)
    readline.set_history_length(1000)

    def save() -> None:
        with contextlib.suppress(OSError):
            readline.write_history_file(history_file)

    return save


def interact(conversation: Conversation, first: str | None = None) -> None:
    """Chat until the user leaves. ``first`` is a line already read before the session opened."""
    line: str | None = first
    while True:
        if line is None:
            try:
                line = read_line()
            except Terminated:
                raise
            except (EOFError, KeyboardInterrupt):
                print(file=sys.stderr)
                return
        text, line = line.strip(), None
        if text in EXIT_COMMANDS:
            return
        if text:
            _answer(conversation, text)


def _answer(conversation: Conversation, text: str) -> None:
    """Run a slash command, or a turn that Ctrl-C cancels without ending the chat."""
    out = conversation.out
    if text.startswith("/"):
        command = COMMANDS.get(text.split()[0])
        if command is None:
            out.status(f"unknown command {text.split()[0]}; /help lists them")
        else:
            command(conversation)
        return
    try:
        conversation.turn(text)
    except Terminated:
        raise
    except KeyboardInterrupt:
        out.end_reply()
        out.status("turn cancelled; Ctrl-C again or Ctrl-D to leave")


def _help(conversation: Conversation) -> None:
    conversation.out.lines(f"{name:<9} {text}" for name, text in HELP.items())


def _tasks(conversation: Conversation) -> None:
    conversation.out.tasks(conversation.tasks())


def _session(conversation: Conversation) -> None:
    settings = conversation.settings
    conversation.out.lines(
        [
            f"session   {conversation.session_id}",
            f"messages  {len(conversation.history)}",
            f"model     {settings.openai_model}",
            f"acontext  {settings.acontext_base_url}",
            f"journal   {conversation.mirror.journal.path}",
            f"resume    agent --resume {conversation.session_id}",
        ]
    )


def _tools(conversation: Conversation) -> None:
    lines = []
    for tool in conversation.registry:
        parameters = tool.schema()["function"]["parameters"]["properties"]
        lines.append(f"{tool.name}({', '.join(parameters)}): {tool.description.splitlines()[0]}")
    conversation.out.lines(lines or ["no tools"])


def _skills(conversation: Conversation) -> None:
    from openai_basic.learning import NO_SPACE

    try:
        found = conversation.learning.skills()
    except AgentError as exc:  # Acontext down: the chat goes on
        conversation.out.error(str(exc))
        return
    if found is None:
        conversation.out.status(NO_SPACE.replace("`agent --learn`", "/learn"))
        return
    space_id, skills = found
    lines = [f"{skill.name}: {' '.join(skill.description.split())}" for skill in skills]
    conversation.out.lines(lines or [f"Learning space {space_id} has no skills yet."])


def _learn(conversation: Conversation) -> None:
    if conversation.learning.attach():
        conversation.out.status(
            "this session is attached to the learning space: Acontext learns from it, and the "
            "space's skills are given to the model from the next turn"
        )
    else:
        conversation.out.status("this session is attached to the learning space already")


def _usage(conversation: Conversation) -> None:
    usage = conversation.usage
    conversation.out.lines(
        [
            f"model calls        {usage.model_calls}",
            f"prompt tokens      {usage.prompt_tokens}",
            f"completion tokens  {usage.completion_tokens}",
            f"time with model    {usage.seconds:.1f}s",
        ]
    )


COMMANDS: dict[str, Callable[[Conversation], None]] = {
    "/help": _help,
    "/tasks": _tasks,
    "/session": _session,
    "/tools": _tools,
    "/skills": _skills,
    "/learn": _learn,
    "/usage": _usage,
}
