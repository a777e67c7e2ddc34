"""The interactive chat: typed messages and slash commands, until the user leaves.

The conversation, and with it the Acontext session, is opened by the first message: commands typed
before it need no session, and leaving before it makes none. Ctrl-C during a turn cancels the turn
(every tool call made is answered, so the session stays valid); Ctrl-C or Ctrl-D at the prompt, or
``/exit``, ends the chat. A service that fails (the model, Acontext) costs the turn or the command,
not the chat: the error is told on one line and the prompt comes back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from openai_basic.acontext_api import AcontextApi
from openai_basic.errors import JournalError, ModelChoiceError, ServiceError, Terminated
from openai_basic.learning import RecallLoad, prefetch_recall
from openai_basic.output import Output
from openai_basic.preload import preload
from openai_basic.prompt import Prompt
from openai_basic.settings import Settings

if TYPE_CHECKING:  # the prompt comes up before the conversation's imports
    from openai_basic.conversation import Conversation
    from openai_basic.tools import ToolFunction, ToolRegistry

PROMPT, MORE = "you> ", "...  "
BLOCK = '"""'  # a line of it starts and ends a message of several lines
EXIT_COMMANDS = ("/exit", "/quit")
GREETING = "Chat with the agent. /help lists the commands; Ctrl-D or /exit ends."
HELP = (
    ("/help", "this list"),
    ("/tasks", "send the conversation to Acontext now and show its tasks"),
    ("/session", "the session id, its size and where it is kept"),
    ("/model [NAME]", "the model, or switch to NAME for the next turns"),
    ("/tools", "the tools the model can call"),
    ("/skills", "the skills of the learning space"),
    ("/learn", "attach this session to the learning space (as --learn does)"),
    ("/usage, /cost", "tokens and time used so far"),
    ("/exit, /quit", "end the chat and show the tasks (also Ctrl-D)"),
    (BLOCK, f"begin a message of several lines; a line of {BLOCK} sends it"),
    ("", "(a paste of several lines is one message too)"),
    ("Ctrl-R", "search the lines typed before, in this chat and earlier ones"),
    ("Ctrl-C", "cancel the turn; at the prompt, leave"),
)


class Chat:
    """One chat at a terminal. Use as a context manager: leaving it closes the conversation."""

    def __init__(
        self,
        *,
        settings: Settings,
        out: Output,
        tools: Iterable[ToolFunction] | None = None,
        resume: str | None = None,
        user: str | None = None,
    ) -> None:
        self.settings = settings
        self.out = out
        self.resume = resume
        self.prompt = Prompt(settings.state_dir / "history")
        self.conversation: Conversation | None = None
        self._tools = tools
        self._user = user
        self._registry: ToolRegistry | None = None
        self._recall: RecallLoad | None = None
        self._opened = contextlib.ExitStack()

    def __enter__(self) -> Chat:
        self.out.above_prompt(self.prompt.print_above)
        if self.settings.learn:  # the skills load while the first message is typed
            api = self._opened.enter_context(AcontextApi(self.settings))
            self._recall = prefetch_recall(self.settings, self._user, api)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.out.above_prompt(None)
        self._opened.close()

    def run(self) -> None:
        """Chat until the user leaves; the history of typed lines is saved at the end."""
        print(GREETING, file=sys.stderr)
        try:
            while (text := self._read()) is not None:
                if text == BLOCK:
                    self._turn(self._read_block())
                elif text.startswith("/"):
                    self._command(text)
                else:
                    self._turn(text)
        finally:
            self.prompt.close()

    def open(self) -> Conversation:
        """The conversation, opened (its session made or resumed) the first time it is needed."""
        if self.conversation is None:
            preload("openai")
            from openai_basic.conversation import Conversation

            self.conversation = self._opened.enter_context(
                Conversation(
                    settings=self.settings,
                    out=self.out,
                    registry=self.registry,
                    resume=self.resume,
                    user=self._user,
                    recall=self._recall,
                )
            )
        return self.conversation

    @property
    def registry(self) -> ToolRegistry:
        if self._registry is None:
            preload("openai")
            from openai_basic.conversation import make_registry
            from openai_basic.sample_tools import TOOLS

            tools = TOOLS if self._tools is None else self._tools
            self._registry = make_registry(self.settings, tools)
        return self._registry

    @property
    def user(self) -> str | None:
        return self._user

    @property
    def model(self) -> str:
        """The model the next turn asks."""
        return self.conversation.spec.model if self.conversation else self.settings.openai_model

    def use_model(self, model: str) -> None:
        if self.conversation is not None:
            self.conversation.use_model(model)
        else:  # the session is made with it
            self.settings = dataclasses.replace(self.settings, openai_model=model)

    def _read(self) -> str | None:
        """The next line, stripped; None when the user leaves."""
        try:
            text = self.prompt.read(PROMPT).strip()
        except Terminated:
            raise
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return None
        return None if text in EXIT_COMMANDS else text

    def _read_block(self) -> str:
        """The lines up to a line of ``BLOCK`` or Ctrl-D, as one message; Ctrl-C drops them."""
        lines: list[str] = []
        try:
            while (line := self.prompt.read(MORE)).strip() != BLOCK:
                lines.append(line)
        except Terminated:
            raise
        except EOFError:
            print(file=sys.stderr)
        except KeyboardInterrupt:
            print(file=sys.stderr)
            self.out.status("message dropped")
            return ""
        return "\n".join(lines).strip("\n")

    def _turn(self, text: str) -> None:
        if text.strip():
            with self._outlived("turn cancelled; Ctrl-C again or Ctrl-D to leave"):
                self.open().turn(text)

    def _command(self, text: str) -> None:
        name, *arguments = text.split()
        command = COMMANDS.get(name)
        if command is None:
            self.out.status(f"unknown command {name}; /help lists them")
            return
        with self._outlived(f"{name} cancelled"):
            command(self, arguments)

    @contextlib.contextmanager
    def _outlived(self, cancelled: str) -> Iterator[None]:
        """What the chat outlives: Ctrl-C, and a service that failed. A signal, a journal that
        cannot be written and a setting to fix end it; the CLI says how to resume."""
        try:
            yield
        except Terminated:
            raise
        except KeyboardInterrupt:
            self.out.end_reply()
            self.out.status(cancelled)
        except JournalError:
            raise
        except ModelChoiceError as exc:  # the chat can fix this one
            self._tell(f"{exc}; or choose another with /model NAME")
        except ServiceError as exc:
            self._tell(str(exc))

    def _tell(self, error: str) -> None:
        self.out.end_reply()
        self.out.error(" ".join(error.split()))


def _help(chat: Chat, arguments: list[str]) -> None:
    chat.out.lines(f"{name:<14} {text}" for name, text in HELP)


def _tasks(chat: Chat, arguments: list[str]) -> None:
    if chat.conversation is None and chat.resume is None:
        chat.out.lines(["no tasks yet: they come from the conversation your first message starts"])
        return
    report = chat.open().tasks()
    if report.unsent:
        chat.out.status(
            f"{report.unsent} messages have not reached Acontext yet; "
            "/tasks shows the tasks once they have"
        )
    else:
        chat.out.tasks(report)


def _session(chat: Chat, arguments: list[str]) -> None:
    conversation = chat.conversation
    if conversation is None:
        if chat.resume:
            chat.out.lines([f"session   {chat.resume} (resumed with your first message)"])
        else:
            chat.out.lines(["no session yet: your first message starts one"])
        return
    settings = chat.settings
    chat.out.lines(
        [
            f"session   {conversation.session_id}",
            f"messages  {len(conversation.history)}",
            f"model     {conversation.spec.model}",
            f"acontext  {settings.acontext_base_url}",
            f"journal   {conversation.mirror.journal.path}",
            f"resume    agent --resume {conversation.session_id}",
        ]
    )


def _model(chat: Chat, arguments: list[str]) -> None:
    if len(arguments) > 1:
        chat.out.status("usage: /model [NAME]")
    elif arguments:
        chat.use_model(arguments[0])
        chat.out.status(f"the next turns ask {arguments[0]}")
    else:
        chat.out.lines([chat.model])


def _tools(chat: Chat, arguments: list[str]) -> None:
    lines = []
    for tool in chat.registry:
        parameters = tool.schema()["function"]["parameters"]["properties"]
        asks = " (asks you first)" if tool.needs_approval else ""
        summary = tool.description.splitlines()[0]
        lines.append(f"{tool.name}({', '.join(parameters)}){asks}: {summary}")
    chat.out.lines(lines or ["no tools"])


def _skills(chat: Chat, arguments: list[str]) -> None:
    from openai_basic.skills import known_skills

    if chat.conversation is not None:
        found = chat.conversation.learning.skills()
    else:
        found = known_skills(chat.settings, chat.user)
    if found is None:
        chat.out.status("no learning space yet: /learn makes one with this session")
        return
    space_id, skills = found
    lines = [f"{skill.name}: {' '.join(skill.description.split())}" for skill in skills]
    chat.out.lines(lines or [f"Learning space {space_id} has no skills yet."])


def _learn(chat: Chat, arguments: list[str]) -> None:
    attached = "this session is attached to the learning space"
    if chat.conversation is not None:
        fresh = chat.conversation.learning.attach()
    else:  # the session is made, and attached, with the first message
        fresh = not chat.settings.learn
        chat.settings = dataclasses.replace(chat.settings, learn=True)
    if fresh:
        chat.out.status(
            f"{attached}: Acontext learns from it, and the model gets the space's skills"
        )
    else:
        chat.out.status(f"{attached} already")


def _usage(chat: Chat, arguments: list[str]) -> None:
    if chat.conversation is None:
        chat.out.lines(["no model calls yet"])
        return
    usage = chat.conversation.usage
    chat.out.lines(
        [
            f"model calls        {usage.model_calls}",
            f"prompt tokens      {usage.prompt_tokens}",
            f"completion tokens  {usage.completion_tokens}",
            f"time with model    {usage.seconds:.1f}s",
        ]
    )


COMMANDS: dict[str, Callable[[Chat, list[str]], None]] = {
    "/help": _help,
    "/tasks": _tasks,
    "/session": _session,
    "/model": _model,
    "/tools": _tools,
    "/skills": _skills,
    "/learn": _learn,
    "/usage": _usage,
    "/cost": _usage,
}
