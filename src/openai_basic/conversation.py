"""One conversation from start to tasks: open the session, run each turn, extract the tasks.

``Conversation`` is the use case that the one-shot and piped CLI, the interactive chat and the
demo share. It wires the settings, the OpenAI client, the tool registry, the Acontext mirror and the
terminal together; it decides nothing about exit codes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from openai import OpenAI

from openai_basic.acontext_api import TaskReport
from openai_basic.agent import AgentSpec, TurnResult, Usage, run_agent
from openai_basic.approval import approver
from openai_basic.errors import AgentError, ConfigError, Interrupted, ServiceError, signal_number
from openai_basic.journal import Held
from openai_basic.learning import LearningOutcome, RecallLoad, SessionLearning
from openai_basic.mirror import AcontextMirror, OpenedSession
from openai_basic.output import Output
from openai_basic.sample_tools import TOOLS
from openai_basic.settings import Settings
from openai_basic.text import plural
from openai_basic.tools import ToolFunction, ToolRegistry

INTERRUPT_SYNC_SECONDS = 3.0


@dataclass(frozen=True)
class ChatOutcome:
    session_id: str
    replies: tuple[str, ...]
    history: tuple[dict[str, Any], ...]
    report: TaskReport
    journal: Path
    usage: Usage
    held: tuple[Held, ...] = ()
    learning: LearningOutcome | None = None  # with learning on


def make_registry(settings: Settings, tools: Iterable[ToolFunction] = TOOLS) -> ToolRegistry:
    return ToolRegistry(
        tools,
        timeout=settings.tool_timeout_seconds,
        max_result_chars=settings.tool_result_max_chars,
    )


def make_client(settings: Settings) -> OpenAI:
    return OpenAI(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        max_retries=settings.openai_max_retries,
    )


def make_spec(settings: Settings, registry: ToolRegistry, system_prompt: str) -> AgentSpec:
    """The agent the settings describe; a resumed session brings its own system prompt."""
    return AgentSpec(
        model=settings.openai_model,
        registry=registry,
        system_prompt=system_prompt,
        max_iterations=settings.max_iterations,
        strict_tools=settings.strict_tools,
    )


class Conversation:
    """One Acontext session being talked to. Use as a context manager.

    ``recall`` is the learning space's skills when their loading started before the session (a
    chat starts it as its prompt comes up).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        out: Output,
        registry: ToolRegistry | None = None,
        resume: str | None = None,
        user: str | None = None,
        recall: RecallLoad | None = None,
    ) -> None:
        self.settings = settings
        self.out = out
        self.registry = registry if registry is not None else make_registry(settings)
        self.client = make_client(settings)
        self.mirror = AcontextMirror(
            settings, on_problem=lambda text: out.status(f"acontext: {text}"), on_held=out.held
        )
        self.approve = approver(settings.approve_tools, out)  # its "always" lasts the session
        self.replies: list[str] = []
        self.usage = Usage()
        opened = self._open(resume, user)
        self.session_id = opened.session_id
        self.history = opened.history
        self.spec = make_spec(settings, self.registry, opened.system_prompt)
        self._system_prompt = opened.system_prompt  # the session's; recall adds to the model's
        self.learning = SessionLearning(
            settings, mirror=self.mirror, out=out, user=user, prefetched=recall
        )
        if settings.learn:
            self.learning.attach()

    def _open(self, resume: str | None, user: str | None) -> OpenedSession:
        settings, out = self.settings, self.out
        try:
            if resume:
                opened = self.mirror.resume(resume, default_system_prompt=settings.system_prompt)
                size = plural(len(opened.history), "message")
                out.status(f"resumed session {opened.session_id} ({size})")
            else:
                opened = self.mirror.create(
                    model=settings.openai_model, system_prompt=settings.system_prompt, user=user
                )
                out.status(f"session {opened.session_id}")
        except BaseException:
            self.mirror.close()
            raise
        return opened

    def __enter__(self) -> Conversation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.mirror.close()

    def turn(self, prompt: str) -> TurnResult:
        """One user turn. Ctrl-C stops it with every tool call answered, and is re-raised."""
        self._recall()
        out = self.out
        with out.spinner(f"waiting for {self.spec.model}"):
            result = run_agent(
                self.spec,
                client=self.client,
                history=self.history,
                user_message=prompt,
                sink=self.mirror,
                on_tool_result=out.tool,
                on_text=out.text_piece if out.stream else None,
                approve=self.approve,
            )
        self.spec = self.spec.for_next_turn(result)
        if result.hit_limit:
            out.status(
                f"stopped calling tools after {self.settings.max_iterations} rounds "
                "(AGENT_MAX_ITERATIONS); the model answered with what it had"
            )
        out.reply(result.reply)
        self.replies.append(result.reply)
        self.usage += result.usage
        out.usage(result.usage, label="turn")
        if self.mirror.journal_failure is not None:  # the reply is printed; stop spending
            raise self.mirror.journal_failure
        return result

    def use_model(self, model: str) -> None:
        """Ask ``model`` from the next turn on; the meta of each answer names its model."""
        self.spec = replace(self.spec, model=model)

    def save(self, seconds: float) -> None:
        """Give the writer a moment to send what is waiting; say where the rest is."""
        try:
            with self.out.spinner("sending to Acontext"):
                left = self.mirror.sync(
                    timeout=seconds, on_progress=self.out.syncing, session_id=self.session_id
                )
        except AgentError:
            left = self.mirror.unsent()
        if left:
            self.out.unsent(left, self.mirror.journal.path)

    def keep(self, error: AgentError) -> None:
        """After an error that ends the conversation: send what can be sent, say how to go on.

        A new session that the model never answered because it refused the settings (the key,
        the model) is forgotten instead, so that Acontext gets no session of lone prompts.
        """
        if isinstance(error, ConfigError) and self.mirror.discard_unanswered():
            return
        self.save(self.settings.sync_wait_seconds)
        self.out.status(f"session {self.session_id} is kept: agent --resume {self.session_id}")

    def tasks(self) -> TaskReport:
        """Send what waits, flush until extraction has seen it all, and read the tasks."""
        try:
            with self.out.spinner("sending the conversation to Acontext"):
                return self.mirror.finish(on_sync=self.out.syncing, on_wait=self.out.waiting)
        except ServiceError as exc:
            raise ServiceError(
                exc.service,
                f"{exc.detail}. The conversation is stored; see its tasks later with: "
                f"agent tasks {self.session_id}",
            ) from exc

    def _recall(self) -> None:
        """Give the model the skills of the learning space, once they are loaded: their tools
        next to the user's, their names and descriptions after the system prompt."""
        recall = self.learning.recall()
        if recall is not None:
            self.spec = replace(
                self.spec,
                registry=self.registry.extended(recall.tools),
                system_prompt=recall.system_prompt(self._system_prompt),
            )

    def finish(self) -> ChatOutcome:
        report = self.tasks()
        if len(self.replies) > 1:  # after one turn, the session's usage is that turn's
            self.out.usage(self.usage, label="session")
        return ChatOutcome(
            self.session_id,
            tuple(self.replies),
            tuple(self.history),
            report,
            self.mirror.journal.path,
            self.usage,
            tuple(self.mirror.held()),
            learning=self.learning.conclude(report),
        )


def chat(
    *,
    settings: Settings,
    prompts: Iterable[str],
    out: Output,
    resume: str | None = None,
    registry: ToolRegistry | None = None,
    user: str | None = None,
) -> ChatOutcome:
    """Run every prompt as a turn in one Acontext session, then flush it and read its tasks."""
    with Conversation(
        settings=settings, out=out, registry=registry, resume=resume, user=user
    ) as conversation:
        try:
            for prompt in prompts:
                conversation.turn(prompt)
        except KeyboardInterrupt as interrupt:
            conversation.save(min(INTERRUPT_SYNC_SECONDS, settings.sync_wait_seconds))
            raise Interrupted(conversation.session_id, signal_number(interrupt)) from None
        except AgentError as error:
            conversation.keep(error)
            raise
        return conversation.finish()
