"""The command line. The only place that turns errors into messages and exit codes.

Heavy imports (the OpenAI and Acontext SDKs) wait until a command needs them, so ``--help`` and
usage errors answer at once, and an interactive chat shows its prompt while they load.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from openai_basic.errors import AgentError, ConfigError, ServiceError

if TYPE_CHECKING:
    from openai_basic.conversation import ChatOutcome
    from openai_basic.output import Output
    from openai_basic.settings import Settings
    from openai_basic.tools import ToolFunction

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DESCRIPTION = "A console OpenAI agent whose conversation is mirrored into Acontext."
COMMAND_HELP = {
    "sessions": "list this agent's recent sessions",
    "history": "show a session as a transcript",
    "tasks": "show a session's tasks",
    "sync": "send messages still waiting in the local journal",
    "doctor": "check the settings, Acontext and the model",
}


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
    parser.add_argument("--resume", metavar="SESSION_ID", help="continue an Acontext session")
    parser.add_argument("--demo", action="store_true", help="run the scripted trip demo")
    parser.add_argument("--json", action="store_true", help="print one JSON object when done")
    parser.add_argument("--user", metavar="NAME", help="the user the new session belongs to")
    parser.add_argument("--model", help="the chat model (instead of OPENAI_MODEL)")
    system = parser.add_mutually_exclusive_group()
    system.add_argument("--system", metavar="TEXT", help="the system prompt for a new session")
    system.add_argument("--system-file", metavar="PATH", type=Path, help="read it from a file")
    parser.add_argument("--no-stream", action="store_true", help="print replies when complete")
    return parser


def build_command_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"agent {command}", description=COMMAND_HELP[command])
    if command in ("tasks", "history"):
        parser.add_argument("session_id", metavar="SESSION_ID")
    if command == "sessions":
        parser.add_argument("--limit", type=int, default=10, help="how many (default 10)")
    if command != "doctor":
        parser.add_argument("--json", action="store_true", help="print JSON")
    return parser


def main(argv: Sequence[str] | None = None, *, tools: Iterable[ToolFunction] | None = None) -> int:
    """Run the command line; ``tools`` replaces the sample tools (for an entry point of yours)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMAND_HELP else None
    if command:
        args = build_command_parser(command).parse_args(argv[1:])
    else:
        args = build_parser().parse_args(argv)
        if args.demo and (args.prompt or args.resume):
            print("error: --demo takes no PROMPT and no --resume", file=sys.stderr)
            return EXIT_USAGE
    from openai_basic.output import Output

    out = Output(
        json_mode=getattr(args, "json", False), stream=not getattr(args, "no_stream", True)
    )
    try:
        from openai_basic.settings import load_settings

        settings = load_settings(require_openai=command is None)
        out.hide(settings.openai_api_key, settings.acontext_api_key)
        if command:
            return COMMANDS[command](args, settings, out)
        return _chat(args, _with_flags(settings, args), out, tools)
    except KeyboardInterrupt:
        out.error("interrupted")
        return EXIT_INTERRUPTED
    except ConfigError as exc:
        out.error(str(exc))
        return EXIT_USAGE
    except ServiceError as exc:
        out.error(str(exc))
        return EXIT_FAILED
    except AgentError as exc:
        from openai_basic.conversation import Interrupted

        out.error(str(exc))
        return EXIT_INTERRUPTED if isinstance(exc, Interrupted) else EXIT_FAILED


def _with_flags(settings: Settings, args: argparse.Namespace) -> Settings:
    system_prompt = args.system or settings.system_prompt
    if args.system_file:
        try:
            system_prompt = args.system_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read --system-file {args.system_file}: {exc.strerror}"
            ) from exc
    return dataclasses.replace(
        settings, openai_model=args.model or settings.openai_model, system_prompt=system_prompt
    )


def _chat(
    args: argparse.Namespace, settings: Settings, out: Output, tools: Iterable[ToolFunction] | None
) -> int:
    if args.demo:
        from openai_basic.conversation import make_registry
        from openai_basic.demo import run_demo

        registry = make_registry(settings, tools) if tools is not None else None
        return _report(run_demo(settings=settings, out=out, registry=registry), out, args.json)
    if args.prompt is None and sys.stdin.isatty():
        return _interactive(args, settings, out, tools)
    prompts = _prompts(args.prompt)
    first = next(prompts, None)  # a usage error (an empty prompt) before any session exists
    if first is None:
        out.status("no prompt given")
        return EXIT_OK
    from openai_basic.conversation import chat, make_registry

    outcome = chat(
        settings=settings,
        prompts=itertools.chain([first], prompts),
        out=out,
        resume=args.resume,
        registry=make_registry(settings, tools) if tools is not None else None,
        user=args.user,
    )
    out.tasks(outcome.report)
    return _report(outcome, out, args.json)


def _interactive(
    args: argparse.Namespace, settings: Settings, out: Output, tools: Iterable[ToolFunction] | None
) -> int:
    from openai_basic.console import EXIT_COMMANDS, enable_line_editing, read_line

    threading.Thread(target=_preload, name="preload", daemon=True).start()
    save_history = enable_line_editing(settings.state_dir / "history")
    print("Chat with the agent. /help lists the commands; Ctrl-D or /exit ends.", file=sys.stderr)
    try:
        first = read_line()  # the user types while the SDKs load
    except (EOFError, KeyboardInterrupt):
        first = EXIT_COMMANDS[0]
    if first.strip() in EXIT_COMMANDS:  # left before saying anything: no session to make
        save_history()
        return EXIT_OK
    from openai_basic.console import interact
    from openai_basic.conversation import Conversation, Interrupted, make_registry

    with Conversation(
        settings=settings,
        out=out,
        registry=make_registry(settings, tools) if tools is not None else None,
        resume=args.resume,
        user=args.user,
    ) as conversation:
        try:
            interact(conversation, first)
        finally:
            save_history()
        try:
            outcome = conversation.finish()
        except KeyboardInterrupt:
            raise Interrupted(conversation.session_id) from None
    out.tasks(outcome.report)
    return _report(outcome, out, args.json)


def _report(outcome: ChatOutcome, out: Output, as_json: bool) -> int:
    from openai_basic.output import task_payload

    report = outcome.report
    if report.unsent:
        out.unsent(report.unsent, outcome.journal)
    elif report.unprocessed:
        out.status(
            f"Acontext has not processed {report.unprocessed} messages yet; "
            f"see the tasks later with: agent tasks {outcome.session_id}"
        )
    if as_json:
        out.json(
            {
                "session_id": outcome.session_id,
                "reply": outcome.replies[-1] if outcome.replies else "",
                "replies": list(outcome.replies),
                "tasks": [task_payload(task) for task in report.tasks],
                "unprocessed": report.unprocessed,
                "unsent": report.unsent,
                "usage": dataclasses.asdict(outcome.usage),
            }
        )
    return EXIT_FAILED if report.unsent else EXIT_OK


def _sync(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    """Send every message waiting in the journal, in order, without duplicates."""
    from openai_basic.mirror import AcontextMirror

    with AcontextMirror(
        settings, on_problem=lambda text: out.status(f"acontext: {text}")
    ) as mirror:
        before = mirror.journal.count_waiting()
        left = mirror.sync(timeout=settings.sync_wait_seconds, on_progress=out.syncing)
        rejected = mirror.journal.count_rejected()
    if args.json:
        out.json({"sent": before - left, "waiting": left, "rejected": rejected})
    else:
        out.status(f"sent {before - left} messages; {left} still waiting")
    if rejected:
        out.status(f"{rejected} messages were rejected by Acontext and stay in the journal")
    return EXIT_FAILED if left else EXIT_OK


def _tasks(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from openai_basic.mirror import AcontextMirror, TaskReport
    from openai_basic.output import task_payload

    with AcontextMirror(settings) as mirror:
        tasks = mirror.tasks(args.session_id)
    if args.json:
        out.json({"session_id": args.session_id, "tasks": [task_payload(t) for t in tasks]})
    else:
        out.tasks(TaskReport(tasks))
    return EXIT_OK


def _sessions(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from openai_basic.mirror import AcontextMirror

    with AcontextMirror(settings) as mirror:
        sessions = mirror.sessions(limit=max(1, min(args.limit, 200)))
    if args.json:
        out.json({"sessions": [dataclasses.asdict(s) for s in sessions]})
    elif not sessions:
        out.lines(["No sessions yet. Start one with: agent"])
    else:
        out.lines(
            f"{s.id}  {s.created_at[:16].replace('T', ' ')}  {s.messages:>4} messages  "
            f"{_clip(s.first_message, 60)}"
            for s in sessions
        )
    return EXIT_OK


def _history(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from openai_basic.mirror import AcontextMirror

    with AcontextMirror(settings) as mirror:
        messages = mirror.transcript(args.session_id)
    if args.json:
        out.json({"session_id": args.session_id, "messages": messages})
    else:
        out.lines(_transcript(messages))
    return EXIT_OK


def _doctor(args: argparse.Namespace, settings: Settings, out: Output) -> int:
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


def _preload() -> None:
    """Import what a conversation needs (seconds of work) while the user types."""
    try:
        import httpx  # noqa: F401  first, as AcontextMirror.start explains
        import openai  # noqa: F401

        import openai_basic.conversation  # noqa: F401
        from openai_basic.mirror import load_sdk

        load_sdk()
    except Exception:  # the conversation imports again and reports any problem itself
        pass


def _prompts(prompt: str | None) -> Iterator[str]:
    """One prompt from the argument, or one per line of piped stdin."""
    if prompt is not None:
        if not prompt.strip():
            raise ConfigError("the prompt is empty")
        yield prompt
        return
    for line in sys.stdin:
        if line.strip():
            yield line.rstrip("\n")
