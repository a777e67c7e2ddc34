"""The command line. The only place that turns errors into messages and exit codes.

Heavy imports (the OpenAI and Acontext SDKs) wait until a command needs them, so ``--help`` and
usage errors answer at once.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from openai_basic.errors import AgentError, ConfigError, ServiceError

if TYPE_CHECKING:
    from openai_basic.conversation import ChatOutcome
    from openai_basic.output import Output
    from openai_basic.settings import Settings
    from openai_basic.tools import ToolFunction

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_COMMANDS = ("/exit", "/quit")
DESCRIPTION = "A console OpenAI agent whose conversation is mirrored into Acontext."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent",
        description=DESCRIPTION,
        epilog=(
            "Without PROMPT it reads one prompt per line from piped stdin, or chats "
            "interactively on a terminal (Ctrl-D or /exit to end). Other commands: "
            "'agent sync' sends messages waiting in the local journal; 'agent tasks SESSION_ID' "
            "shows a session's tasks. Settings come from the environment and ./.env "
            "(see .env.example)."
        ),
    )
    parser.add_argument("prompt", nargs="?", help="run one turn with this prompt")
    parser.add_argument("--resume", metavar="SESSION_ID", help="continue an Acontext session")
    parser.add_argument("--demo", action="store_true", help="run the scripted trip demo")
    parser.add_argument("--json", action="store_true", help="print one JSON object when done")
    return parser


def build_command_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"agent {command}", description=DESCRIPTION)
    if command == "tasks":
        parser.add_argument("session_id", metavar="SESSION_ID")
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser


def main(argv: Sequence[str] | None = None, *, tools: Iterable[ToolFunction] | None = None) -> int:
    """Run the command line; ``tools`` replaces the sample tools (for an entry point of yours)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    if command:
        args = build_command_parser(command).parse_args(argv[1:])
    else:
        args = build_parser().parse_args(argv)
        if args.demo and (args.prompt or args.resume):
            print("error: --demo takes no PROMPT and no --resume", file=sys.stderr)
            return EXIT_USAGE
    from openai_basic.output import Output

    out = Output(json_mode=args.json)
    try:
        from openai_basic.settings import load_settings

        settings = load_settings(require_openai=command is None)
        out.hide(settings.openai_api_key, settings.acontext_api_key)
        if command:
            return COMMANDS[command](args, settings, out)
        return _chat(args, settings, out, tools)
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


def _chat(
    args: argparse.Namespace, settings: Settings, out: Output, tools: Iterable[ToolFunction] | None
) -> int:
    if args.demo:
        from openai_basic.conversation import make_registry
        from openai_basic.demo import run_demo

        registry = make_registry(settings, tools) if tools is not None else None
        outcome = run_demo(settings=settings, out=out, registry=registry)
    else:
        prompts = _prompts(args.prompt)
        if args.prompt is None and sys.stdin.isatty():
            threading.Thread(target=_preload, name="preload", daemon=True).start()
        first = next(prompts, None)  # on a terminal the user types while the SDKs load
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
        )
        out.tasks(outcome.report)
    return _report(outcome, out, as_json=args.json)


def _report(outcome: ChatOutcome, out: Output, *, as_json: bool) -> int:
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
            }
        )
    return EXIT_FAILED if report.unsent else EXIT_OK


def _sync(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    """Send every message waiting in the journal, in order, without duplicates."""
    from openai_basic.mirror import AcontextMirror

    mirror = AcontextMirror(settings, on_problem=lambda text: out.status(f"acontext: {text}"))
    try:
        before = mirror.journal.count_waiting()
        left = mirror.sync(timeout=settings.sync_wait_seconds, on_progress=out.syncing)
        rejected = mirror.journal.count_rejected()
    finally:
        mirror.close()
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

    mirror = AcontextMirror(settings)
    try:
        tasks = mirror.tasks(args.session_id)
    finally:
        mirror.close()
    if args.json:
        out.json({"session_id": args.session_id, "tasks": [task_payload(t) for t in tasks]})
    else:
        out.tasks(TaskReport(tasks))
    return EXIT_OK


Command = Callable[[argparse.Namespace, "Settings", "Output"], int]
COMMANDS: dict[str, Command] = {"sync": _sync, "tasks": _tasks}


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
    """One prompt from the argument, one per line of piped stdin, or an interactive chat."""
    if prompt is not None:
        if not prompt.strip():
            raise ConfigError("the prompt is empty")
        yield prompt
        return
    if not sys.stdin.isatty():
        for line in sys.stdin:
            if line.strip():
                yield line.rstrip("\n")
        return
    print("Chat with the agent. End with Ctrl-D or /exit.", file=sys.stderr)
    while True:
        try:
            line = _ask("you> ")
        except EOFError:
            print(file=sys.stderr)
            return
        if line.strip() in EXIT_COMMANDS:
            return
        if line.strip():
            yield line


def _ask(prompt: str) -> str:
    """Read a line; the prompt goes to stdout only when it is the terminal, else to stderr."""
    if sys.stdout.isatty():
        return input(prompt)
    print(prompt, end="", file=sys.stderr, flush=True)
    return input()
