"""The command line. The only place that turns errors into messages and exit codes.

The modules that import openai (``conversation``, ``demo``, ``doctor``) are imported by the
commands that need them, after ``preload``: ``--help`` and usage errors answer at once, and an
interactive chat shows its prompt while the SDKs load.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import itertools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from openai_basic.acontext_api import AcontextApi, SessionSummary, TaskReport
from openai_basic.chat import Chat
from openai_basic.errors import (
    AgentError,
    ConfigError,
    Interrupted,
    Terminated,
    signal_number,
)
from openai_basic.journal import Journal, kind
from openai_basic.mirror import AcontextMirror
from openai_basic.output import Output, task_payload
from openai_basic.preload import preload
from openai_basic.settings import Settings, load_settings
from openai_basic.text import decode, plural, valid

if TYPE_CHECKING:
    from openai_basic.conversation import ChatOutcome, Conversation
    from openai_basic.learning import LearningOutcome
    from openai_basic.tools import ToolFunction, ToolRegistry

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DESCRIPTION = "A console OpenAI agent whose conversation is mirrored into Acontext."
COMMAND_HELP = {
    "sessions": "list this agent's recent sessions (on a terminal, pick one to go on with)",
    "history": "show a session as a transcript",
    "tasks": "show a session's tasks",
    "sync": "send messages still waiting in the local journal",
    "skills": "list the learning space's skills ('show NAME' prints one, 'pull DIR' saves them)",
    "doctor": "check the settings, Acontext and the model",
}
# How like a command name a one-word PROMPT must be to be taken for a typo of it: "session",
# "histroy" and "doctr" are; "docker", "seasons" and "masks" are prompts.
TYPO_LIKENESS = 0.82


def build_parser() -> argparse.ArgumentParser:
    commands = "; ".join(f"'agent {name}' to {text}" for name, text in COMMAND_HELP.items())
    parser = argparse.ArgumentParser(
        prog="agent",
        description=DESCRIPTION,
        epilog=(
            "Without PROMPT it reads one prompt per line from piped stdin, or chats "
            f"interactively on a terminal (/help lists its commands). Also: {commands}. "
            "Settings come from the environment and ./.env (see .env.example)."
        ),
    )
    parser.add_argument("prompt", nargs="?", help="run one turn with this prompt")
    _add_session_arguments(parser)
    _add_agent_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object when done")
    parser.add_argument("--no-stream", action="store_true", help="print replies when complete")
    return parser


def _add_session_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the session")
    resume = group.add_mutually_exclusive_group()
    resume.add_argument("--resume", metavar="SESSION_ID", help="continue an Acontext session")
    resume.add_argument(
        "-c",
        "--continue",
        dest="continue_last",
        action="store_true",
        help="continue this agent's newest session",
    )
    group.add_argument("--user", metavar="NAME", help="the user the new session belongs to")
    group.add_argument(
        "--learn",
        action="store_true",
        help="learn from this session and recall what earlier ones taught (AGENT_LEARN=true)",
    )
    group.add_argument("--demo", action="store_true", help="run the scripted trip demo")


def _add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the agent")
    group.add_argument("--model", help="the chat model (instead of OPENAI_MODEL)")
    system = group.add_mutually_exclusive_group()
    system.add_argument("--system", metavar="TEXT", help="the system prompt for a new session")
    system.add_argument("--system-file", metavar="PATH", type=Path, help="read it from a file")
    group.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="run the tools that need approval without asking (AGENT_APPROVE_TOOLS=always)",
    )


def build_command_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"agent {command}", description=COMMAND_HELP[command])
    if command in ("tasks", "history"):
        parser.add_argument("session_id", metavar="SESSION_ID")
    if command == "sessions":
        parser.add_argument("--limit", type=int, default=10, help="how many (default 10)")
    if command == "sync":
        parser.add_argument(
            "--skip",
            metavar="MESSAGE_ID",
            help="give up on a message Acontext rejected (and the tool answers to its calls)",
        )
    if command == "skills":
        add_skills_arguments(parser)
    if command != "doctor":
        parser.add_argument("--json", action="store_true", help="print JSON")
    return parser


def add_skills_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=("show", "pull"), help="what to do")
    parser.add_argument(
        "target", nargs="?", metavar="NAME|DIR", help="show: a skill; pull: a folder"
    )
    parser.add_argument("--skill", metavar="NAME", help="pull: this skill only")
    parser.add_argument("--user", metavar="NAME", help="the space remembered for this user")


def main(argv: Sequence[str] | None = None, *, tools: Iterable[ToolFunction] | None = None) -> int:
    """Run the command line; ``tools`` replaces the sample tools (for an entry point of yours)."""
    argv = [valid(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    command = argv[0] if argv and argv[0] in COMMAND_HELP else None
    args = _parse(command, argv)
    if args is None:
        return EXIT_USAGE
    out = Output(
        json_mode=getattr(args, "json", False), stream=not getattr(args, "no_stream", False)
    )
    _fill_closed_descriptors()
    _tolerate_any_bytes()
    restore = _terminate_like_ctrl_c()
    try:
        return _run(command, args, out, tools)
    except (KeyboardInterrupt, AgentError) as exc:
        out.error("interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc))
        return _exit_code(exc)
    finally:
        restore()


def _run(
    command: str | None,
    args: argparse.Namespace,
    out: Output,
    tools: Iterable[ToolFunction] | None,
) -> int:
    settings = load_settings(require_openai=command is None, on_note=out.status)
    out.hide(settings.openai_api_key, settings.acontext_api_key)
    someone_at_a_terminal = _is_terminal(sys.stdin) and _is_terminal(sys.stdout)
    if command == "sessions" and someone_at_a_terminal and not args.json:
        return _pick_session(args, settings, out, tools)
    if command:
        return COMMANDS[command](args, settings, out)
    return _chat(args, _with_flags(settings, args, out), out, tools)


def _exit_code(exc: KeyboardInterrupt | AgentError) -> int:
    """2 for what the user can fix, 128 + the signal for an interruption, 1 for the rest."""
    if isinstance(exc, KeyboardInterrupt):
        return 128 + signal_number(exc)
    if isinstance(exc, Interrupted):
        return exc.exit_code
    return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED


def _parse(command: str | None, argv: list[str]) -> argparse.Namespace | None:
    """The arguments of the command (or of a chat); None after a usage error was told."""
    if command:
        return build_command_parser(command).parse_args(argv[1:])
    args = build_parser().parse_args(argv)
    if args.demo and (args.prompt or args.resume or args.continue_last):
        print("error: --demo takes no PROMPT, --resume or --continue", file=sys.stderr)
        return None
    meant = _command_meant(args.prompt)
    if meant is not None:
        print(
            f"error: {args.prompt!r} is not a command: did you mean `agent {meant}`? "
            "(to ask the model, write more than one word)",
            file=sys.stderr,
        )
        return None
    return args


def _command_meant(prompt: str | None) -> str | None:
    """The command a one-word PROMPT is a typo of (``agent session``), if it looks like one."""
    if prompt is None or len(prompt.split()) != 1:
        return None
    word = prompt.strip().lower()
    close = difflib.get_close_matches(word, COMMAND_HELP, 1, TYPO_LIKENESS)
    # a slip of the fingers keeps the first letter: "histroy" is a typo, "story" a word
    return close[0] if close and close[0][0] == word[0] else None


def _fill_closed_descriptors() -> None:
    """Give a standard descriptor closed at start the null device, so that the journal's file
    can never be opened as 0, 1 or 2 and receive what is meant for a terminal."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _tolerate_any_bytes() -> None:
    """Typed bytes that are not UTF-8 reach ``text.valid`` instead of raising, and text the
    terminal's encoding cannot show is replaced instead of raising."""
    for stream, errors in (
        (sys.stdin, "surrogateescape"),
        (sys.stdout, "replace"),
        (sys.stderr, "replace"),
    ):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors=errors)


def _terminate_like_ctrl_c() -> Callable[[], None]:
    """SIGTERM and SIGHUP (``kill``, a closed terminal) end a turn the way Ctrl-C does: every
    tool call answered, the messages synced, the history saved. Returns what undoes it."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signals reach only the main thread; a library caller keeps its own

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    wanted = [signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]
    previous = {signum: signal.signal(signum, terminate) for signum in wanted}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore


def _with_flags(settings: Settings, args: argparse.Namespace, out: Output) -> Settings:
    if args.learn:
        settings = dataclasses.replace(settings, learn=True)
    system_prompt = args.system or settings.system_prompt
    if args.system_file:
        system_prompt = _read_system_file(args.system_file, out)
    return dataclasses.replace(
        settings,
        openai_model=args.model or settings.openai_model,
        system_prompt=system_prompt,
        approve_tools="always" if args.yes else settings.approve_tools,
    )


def _read_system_file(path: Path, out: Output) -> str:
    """The prompt in the file; a stray byte that is not UTF-8 should not cost the run."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read --system-file {path}: {exc.strerror}") from exc
    text, replaced = decode(raw)
    if replaced:
        out.status(
            f"note: bytes in --system-file {path} that are not UTF-8 were replaced with \ufffd"
        )
    return text.strip()


def _chat(
    args: argparse.Namespace, settings: Settings, out: Output, tools: Iterable[ToolFunction] | None
) -> int:
    if args.demo:
        preload("openai")
        from openai_basic.demo import run_demo

        outcome = run_demo(settings=settings, out=out, registry=_registry(settings, tools))
        return _report(outcome, out, args.json)
    resume = _newest_session(settings, out) if args.continue_last else args.resume
    if args.prompt is None and _is_terminal(sys.stdin):
        return _interactive(settings, out, tools, resume=resume, user=args.user, as_json=args.json)
    prompts = _prompts(args.prompt, out)
    first = next(prompts, None)  # a usage error (an empty prompt) before any session exists
    if first is None:
        out.status("no prompt given")
        return EXIT_OK
    preload("openai")
    from openai_basic.conversation import chat

    outcome = chat(
        settings=settings,
        prompts=itertools.chain([first], prompts),
        out=out,
        resume=resume,
        registry=_registry(settings, tools),
        user=args.user,
    )
    out.tasks(outcome.report)
    return _report(outcome, out, args.json)


def _newest_session(settings: Settings, out: Output) -> str:
    """The session ``--continue`` goes on with: the newest that only this journal has (none
    made here since reached Acontext), else the newest in Acontext, wherever it was made."""
    journal = Journal(settings.state_dir)
    try:
        local = journal.newest_unsent_session(settings.session_tag)
    finally:
        journal.close()
    if local is not None:
        return local
    with out.spinner("looking for the newest session"), AcontextApi(settings) as api:
        newest = api.newest_session()
    if newest is None:
        raise ConfigError(
            f"no session of {settings.session_tag} to continue yet: start one with: agent"
        )
    return newest


def _registry(settings: Settings, tools: Iterable[ToolFunction] | None) -> ToolRegistry | None:
    """The registry of the tools ``main`` was given; None for the sample tools."""
    from openai_basic.conversation import make_registry

    return make_registry(settings, tools) if tools is not None else None


def _interactive(
    settings: Settings,
    out: Output,
    tools: Iterable[ToolFunction] | None,
    *,
    resume: str | None,
    user: str | None,
    as_json: bool,
) -> int:
    """The chat on a terminal. Its prompt comes up while the SDKs load; its first message opens
    the session, so leaving before one makes none."""
    Journal(settings.state_dir).close()  # a state folder that cannot work fails before any typing
    preload()
    with Chat(settings=settings, out=out, tools=tools, resume=resume, user=user) as chat:
        outcome = _chat_until_left(chat)
    if outcome is None:
        return EXIT_OK
    out.tasks(outcome.report)
    return _report(outcome, out, as_json)


def _chat_until_left(chat: Chat) -> ChatOutcome | None:
    """The chat, then its tasks (None if it opened no session). A signal ends it as Ctrl-C ends a
    turn, and an error the chat does not outlive ends it; either way the session is kept."""
    try:
        chat.run()
    except Terminated as interrupt:
        if chat.conversation is None:
            raise
        _save_interrupted(chat.conversation)
        raise Interrupted(chat.conversation.session_id, interrupt.signum) from None
    except AgentError as error:
        if chat.conversation is not None:
            chat.conversation.keep(error)
        raise
    if chat.conversation is None:
        return None
    try:
        return chat.conversation.finish()
    except KeyboardInterrupt as interrupt:
        raise Interrupted(chat.conversation.session_id, signal_number(interrupt)) from None


def _save_interrupted(conversation: Conversation) -> None:
    from openai_basic.conversation import INTERRUPT_SYNC_SECONDS

    conversation.save(min(INTERRUPT_SYNC_SECONDS, conversation.settings.sync_wait_seconds))


def _report(outcome: ChatOutcome, out: Output, as_json: bool) -> int:
    report, learning = outcome.report, outcome.learning
    if learning is not None:
        out.learned(learning)
        if learning.problem:
            out.error(learning.problem)
    if outcome.held:
        out.status(f"Acontext rejected {plural(len(outcome.held), 'message')} (see above)")
    if report.unsent:
        out.unsent(report.unsent, outcome.journal)
    elif report.unprocessed:
        out.status(
            f"Acontext has not processed {plural(report.unprocessed, 'message')} yet; "
            f"see the tasks later with: agent tasks {outcome.session_id}"
        )
    if as_json:
        out.json(_outcome_payload(outcome))
    failed = report.unsent or outcome.held or (learning is not None and learning.problem)
    return EXIT_FAILED if failed else EXIT_OK


def _outcome_payload(outcome: ChatOutcome) -> dict[str, object]:
    """What ``--json`` prints at the end of a conversation."""
    report, learning = outcome.report, outcome.learning
    return {
        "session_id": outcome.session_id,
        "reply": outcome.replies[-1] if outcome.replies else "",
        "replies": list(outcome.replies),
        "tasks": [task_payload(task) for task in report.tasks],
        "unprocessed": report.unprocessed,
        "unsent": report.unsent,
        "held": [dataclasses.asdict(held) for held in outcome.held],
        "usage": dataclasses.asdict(outcome.usage),
        **(_learning_payload(learning) if learning is not None else {}),
    }


def _learning_payload(learning: LearningOutcome) -> dict[str, object]:
    from openai_basic.learning import skill_payload

    return {
        "skills": [skill_payload(change) for change in learning.changes],
        "learning": learning.payload(),
    }


def _sync(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    """Send every message waiting in the journal, in order, without duplicates."""
    with AcontextMirror(
        settings, on_problem=lambda text: out.status(f"acontext: {text}"), on_held=out.held
    ) as mirror:
        skipped = mirror.journal.skip(args.skip) if args.skip else []
        for entry in skipped:
            out.status(
                f"skipped message {entry.client_id} ({kind(entry.message)}) of session "
                f"{entry.session_id}: it will not be sent"
            )
        mirror.journal.retry_held()  # its cause may be fixed; if not, it is told again
        with out.spinner("sending to Acontext"):
            left = mirror.sync(timeout=settings.sync_wait_seconds, on_progress=out.syncing)
        held = mirror.journal.held()
        sent = mirror.delivered
    if args.json:
        out.json(
            {
                "sent": sent,
                "waiting": left,
                "held": [dataclasses.asdict(message) for message in held],
                "skipped": [entry.client_id for entry in skipped],
            }
        )
    else:
        out.status(f"sent {plural(sent, 'message')}; {left} still waiting; {len(held)} held")
    return EXIT_FAILED if left or held or mirror.learn_problems else EXIT_OK


def _tasks(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    with AcontextApi(settings) as api:
        tasks = api.tasks(args.session_id)
    if args.json:
        out.json({"session_id": args.session_id, "tasks": [task_payload(t) for t in tasks]})
    else:
        out.tasks(TaskReport(tasks))
    return EXIT_OK


def _sessions(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    sessions = _listed_sessions(args, settings)
    if args.json:
        out.json({"sessions": [dataclasses.asdict(s) for s in sessions]})
    elif not sessions:
        out.lines(["No sessions yet. Start one with: agent"])
    else:
        out.lines(_session_line(s) for s in sessions)
    return EXIT_OK


def _pick_session(
    args: argparse.Namespace, settings: Settings, out: Output, tools: Iterable[ToolFunction] | None
) -> int:
    """``agent sessions`` on a terminal: the sessions, numbered, and a chat that goes on with
    the one picked."""
    sessions = _listed_sessions(args, settings)
    if not sessions:
        out.lines(["No sessions yet. Start one with: agent"])
        return EXIT_OK
    out.lines(f"{number:>3}  {_session_line(s)}" for number, s in enumerate(sessions, 1))
    picked = _picked(sessions, out)
    if picked is None:
        return EXIT_OK
    settings = load_settings()  # a chat needs the OpenAI key that listing did not
    return _interactive(settings, out, tools, resume=picked.id, user=None, as_json=False)


def _picked(sessions: list[SessionSummary], out: Output) -> SessionSummary | None:
    """The session whose number is typed; None when nothing is (Enter, Ctrl-D, Ctrl-C)."""
    while True:
        try:
            answer = valid(input(f"continue which (1-{len(sessions)}, Enter for none)? ")).strip()
        except Terminated:
            raise
        except (EOFError, KeyboardInterrupt):
            return None
        if not answer:
            return None
        if answer.isdigit() and 1 <= int(answer) <= len(sessions):
            return sessions[int(answer) - 1]
        out.status(f"type a number from 1 to {len(sessions)}, or just Enter to leave")


def _listed_sessions(args: argparse.Namespace, settings: Settings) -> list[SessionSummary]:
    with AcontextApi(settings) as api:
        return api.sessions(limit=max(1, min(args.limit, 200)))


def _session_line(session: SessionSummary) -> str:
    created = session.created_at[:16].replace("T", " ")
    size = plural(session.messages, "message")
    return f"{session.id}  {created}  {size:>13}  {_clip(session.first_message, 60)}"


def _history(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    with AcontextApi(settings) as api:
        messages = api.transcript(args.session_id)
    if args.json:
        out.json({"session_id": args.session_id, "messages": messages})
    else:
        out.lines(_transcript(messages))
    return EXIT_OK


def _skills(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    """The learning space's skills: listed, one shown, or pulled into a folder."""
    from openai_basic import skills

    if args.action and not args.target:
        raise ConfigError(
            f"agent skills {args.action} needs a {'NAME' if args.action == 'show' else 'DIR'}"
        )
    space_id = skills.command_space(settings, args.user)
    with AcontextApi(settings) as api:
        if args.action == "show":
            _show_skill(api, space_id, args.target, out, as_json=args.json)
        elif args.action == "pull":
            _pull_skills(api, space_id, Path(args.target), args.skill, out, as_json=args.json)
        else:
            _list_skills(api, space_id, out, as_json=args.json)
    return EXIT_OK


def _show_skill(api: AcontextApi, space_id: str, name: str, out: Output, *, as_json: bool) -> None:
    from openai_basic.skills import skill_text

    text = skill_text(api, space_id, name)
    if as_json:
        out.json({"space_id": space_id, "name": name, "skill_md": text})
    else:
        out.lines(text.splitlines())


def _pull_skills(
    api: AcontextApi, space_id: str, folder: Path, name: str | None, out: Output, *, as_json: bool
) -> None:
    from openai_basic.skills import pull_skills

    pulled = pull_skills(api, space_id, folder, name=name)
    if as_json:
        out.json({"space_id": space_id, "pulled": {s.name: str(s.folder) for s in pulled}})
    for skill in pulled:
        out.status(f"pulled {skill.name}: {plural(len(skill.files), 'file')} into {skill.folder}")


def _list_skills(api: AcontextApi, space_id: str, out: Output, *, as_json: bool) -> None:
    from openai_basic.skills import list_skills

    listed = list_skills(api, space_id)
    if as_json:
        out.json({"space_id": space_id, "skills": [dataclasses.asdict(s) for s in listed]})
    elif not listed:
        out.lines([f"Learning space {space_id} has no skills yet."])
    else:
        out.lines(f"{s.name}: {' '.join(s.description.split())}" for s in listed)


def _doctor(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    preload("openai")
    from openai_basic.doctor import run_checks, settings_lines

    out.lines(["settings", *(f"  {line}" for line in settings_lines(settings)), "checks"])
    checks = run_checks(settings)
    out.lines(
        f"  {'ok  ' if check.ok else 'FAIL'}  {check.name}"
        + (f": {check.detail}" if check.detail else "")
        for check in checks
    )
    return EXIT_OK if all(check.ok for check in checks) else EXIT_FAILED


Command = Callable[[argparse.Namespace, "Settings", "Output"], int]
COMMANDS: dict[str, Command] = {
    "sessions": _sessions,
    "history": _history,
    "tasks": _tasks,
    "sync": _sync,
    "skills": _skills,
    "doctor": _doctor,
}


def _transcript(messages: list[dict[str, object]]) -> Iterator[str]:
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if role == "tool":
            yield f"  ← {_clip(str(content), 200)}"
            continue
        if content:
            yield f"{'you' if role == 'user' else str(role)}: {content}"
        for call in message.get("tool_calls") or []:  # type: ignore[attr-defined]
            yield f"  → {call['function']['name']}({call['function']['arguments']})"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _is_terminal(stream: TextIO | None) -> bool:
    return stream is not None and stream.isatty()  # None: the process started with it closed


def _prompts(prompt: str | None, out: Output) -> Iterator[str]:
    """One prompt from the argument, or one per line of piped stdin (any bytes: what is not
    UTF-8 is replaced, and said once)."""
    if prompt is not None:
        if not prompt.strip():
            raise ConfigError("the prompt is empty")
        yield prompt
        return
    told = False
    for raw in _stdin_lines():
        line, replaced = decode(raw)
        if replaced and not told:
            out.status("note: bytes in the input that are not UTF-8 were replaced with \ufffd")
            told = True
        if line.strip():
            yield line.rstrip("\r\n")


def _stdin_lines() -> Iterator[bytes]:
    """Lines of stdin as bytes, so that whatever their encoding, they can be read."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        yield from buffer
        return
    # A text stream put in its place (a test, an embedding program), or None when the process
    # started with stdin closed: then there are no prompts.
    for line in sys.stdin or ():
        yield line.encode("utf-8", "surrogatepass")
