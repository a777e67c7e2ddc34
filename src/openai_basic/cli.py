"""The command line. The only place that turns errors into messages and exit codes.

Heavy imports (the OpenAI and Acontext SDKs) wait until a command needs them, so ``--help`` and
usage errors answer at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from openai_basic.errors import AgentError, ConfigError, ServiceError, ToolDefinitionError

if TYPE_CHECKING:
    from openai_basic.output import Output
    from openai_basic.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_COMMANDS = ("/exit", "/quit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent",
        description="A console OpenAI agent whose conversation is mirrored into Acontext.",
        epilog=(
            "Without PROMPT it reads one prompt per line from piped stdin, or chats "
            "interactively on a terminal (Ctrl-D or /exit to end). Settings come from the "
            "environment and ./.env (see .env.example)."
        ),
    )
    parser.add_argument("prompt", nargs="?", help="run one turn with this prompt")
    parser.add_argument("--resume", metavar="SESSION_ID", help="continue an Acontext session")
    parser.add_argument("--demo", action="store_true", help="run the scripted trip demo")
    parser.add_argument("--json", action="store_true", help="print one JSON object when done")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.demo and (args.prompt or args.resume):
        print("error: --demo takes no PROMPT and no --resume", file=sys.stderr)
        return EXIT_USAGE
    from openai_basic.output import Output

    out = Output(json_mode=args.json)
    try:
        from openai_basic.settings import load_settings

        return _run(args, load_settings(), out)
    except KeyboardInterrupt:
        out.error("interrupted")
        return EXIT_INTERRUPTED
    except ConfigError as exc:
        out.error(str(exc))
        return EXIT_USAGE
    except ToolDefinitionError as exc:
        out.error(str(exc))
        return EXIT_FAILED
    except ServiceError as exc:
        out.error(str(exc))
        return EXIT_FAILED
    except AgentError as exc:
        from openai_basic.conversation import Interrupted

        out.error(str(exc))
        return EXIT_INTERRUPTED if isinstance(exc, Interrupted) else EXIT_FAILED


def _run(args: argparse.Namespace, settings: Settings, out: Output) -> int:
    from openai_basic.conversation import chat
    from openai_basic.output import task_payload

    if args.demo:
        from openai_basic.demo import run_demo

        outcome = run_demo(settings=settings, out=out)
    else:
        outcome = chat(
            settings=settings, prompts=_prompts(args.prompt), out=out, resume=args.resume
        )
        out.tasks(outcome.report)
    if outcome.report.unprocessed:
        out.status(
            f"{outcome.report.unprocessed} messages were not processed yet; "
            f"see the tasks later with: agent --resume {outcome.session_id}"
        )
    if args.json:
        out.json(
            {
                "session_id": outcome.session_id,
                "reply": outcome.replies[-1] if outcome.replies else "",
                "replies": list(outcome.replies),
                "tasks": [task_payload(task) for task in outcome.report.tasks],
                "unprocessed": outcome.report.unprocessed,
            }
        )
    return EXIT_OK


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
