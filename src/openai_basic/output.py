"""The terminal: replies and tasks on stdout; tool activity, status and errors on stderr.

On a terminal, replies stream in as Markdown, a spinner says what the agent waits for, and tasks
are a table. Piped, everything is plain text, one line at a time. Only this module draws.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO, cast

from openai_basic.markdown import StreamedReply, Trimmed, as_markdown
from openai_basic.text import plural, printable

if TYPE_CHECKING:  # kept light: the terminal comes up before the SDKs load
    from rich.console import Console
    from rich.status import Status

    from openai_basic.acontext_api import Task, TaskReport
    from openai_basic.agent import Usage
    from openai_basic.journal import Held
    from openai_basic.learning import LearningOutcome
    from openai_basic.tools import ToolResult

ARGUMENTS_SHOWN = 80
STATUS_COLOURS = {"success": "green", "failed": "red", "running": "yellow", "pending": "blue"}

# The user-info of a URL (http://user:password@host) is a credential as often as a name.
_URL_USER_INFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s]+@")


class Output:
    """Owns both streams. In JSON mode stdout carries nothing but the final JSON object."""

    def __init__(
        self,
        *,
        json_mode: bool = False,
        stream: bool = True,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.json_mode = json_mode
        # a TextIO in all but name: what rich and print use of one, it has
        self._out = cast(TextIO, _Guarded(stdout or sys.stdout))
        self._err = cast(TextIO, _Guarded(stderr or sys.stderr))
        self.rich_out = self._out.isatty() and not json_mode
        self.rich_err = self._err.isatty()
        self.stream = stream and self.rich_out
        self._secrets: tuple[str, ...] = ()
        self._out_console: Console | None = None
        self._err_console: Console | None = None
        self._spinner: Status | None = None
        self._streamed: StreamedReply | None = None
        self._syncing = False  # this wait for Acontext has had its line
        self._above_prompt: Callable[[str], bool] | None = None

    def hide(self, *secrets: str) -> None:
        """Never print these (API keys): they are masked wherever they would appear."""
        self._secrets = tuple(s for s in secrets if len(s) >= 8)

    def above_prompt(self, print_above: Callable[[str], bool] | None) -> None:
        """Offer status and error lines to ``print_above`` first: while a prompt is up, it prints
        them above the line being typed and returns True. None: print them as usual."""
        self._above_prompt = print_above

    # -- stderr: status, errors, tool activity -------------------------------------------------

    def status(self, text: str) -> None:
        self._syncing = False
        self._say(text, style="dim")

    def error(self, text: str) -> None:
        self._syncing = False
        self._say(f"error: {text}", style="bold red")

    def tool(self, result: ToolResult) -> None:
        self._stop_live()  # text before tool calls is complete; the spinner goes on
        arguments = " ".join(printable(result.arguments).split())
        if len(arguments) > ARGUMENTS_SHOWN:
            arguments = arguments[: ARGUMENTS_SHOWN - 1] + "…"
        self.status(f"  tool {result.name}({arguments}) {result.seconds:.2f}s {_outcome(result)}")

    def usage(self, usage: Usage, *, label: str) -> None:
        tokens = f"{usage.prompt_tokens} in / {usage.completion_tokens} out tokens"
        calls = plural(usage.model_calls, "model call")
        self.status(f"{label}: {tokens}, {calls}, {usage.seconds:.1f}s")

    def syncing(self, waiting: int) -> None:
        """How many messages still wait to be sent: the spinner follows the count; without one,
        the first count of a wait is said and the rest are not, since a line each is noise."""
        text = f"sending to Acontext: {plural(waiting, 'message')} waiting"
        if self._spinner is not None:
            self.update(text)
        elif not self._syncing:
            self._say(text, style="dim")
            self._syncing = True

    def unsent(self, waiting: int, journal: object) -> None:
        they = "it is" if waiting == 1 else "they are"
        self.status(
            f"{plural(waiting, 'message')} {_wait(waiting)} in {journal}; {they} sent at the next "
            "start or with `agent sync`"
        )

    def held(self, held: Held) -> None:
        """A message Acontext rejected: what, why, and the two ways on."""
        behind = ""
        if held.behind:
            behind = f"; {plural(held.behind, 'later message')} {_wait(held.behind)} behind it"
        self.error(
            f"Acontext rejected message {held.client_id} ({held.kind}) of session "
            f"{held.session_id}: {held.error}{behind}. Fix the cause and run `agent sync`, or "
            f"give it up with `agent sync --skip {held.client_id}`"
        )

    @contextmanager
    def spinner(self, text: str) -> Iterator[None]:
        """Show what the agent waits for (on a terminal); ``update`` changes the text."""
        if not self.rich_err or self._spinner is not None:
            yield
            return
        self._spinner = self._console_err().status(text, spinner="dots")
        self._spinner.start()
        try:
            yield
        finally:
            self._stop_spinner()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Draw nothing while the user answers a question at the terminal; the spinner, if one
        was going, comes back after an answer (not after Ctrl-C)."""
        spinner = self._spinner
        self.end_reply()
        yield
        if spinner is not None and self._spinner is None:
            spinner.start()
            self._spinner = spinner

    def update(self, text: str) -> None:
        if self._spinner is not None:
            self._spinner.update(text)

    def waiting(self, pending: int, in_process: int) -> None:
        text = f"Acontext is extracting tasks: {pending} pending, {in_process} in process"
        if self._spinner is not None:
            self.update(text)
        else:
            self.status(text)

    def learning(self, status: str) -> None:
        """A status of Acontext's learning from the session (pending, skill_writing, ...)."""
        text = f"Acontext is learning from the session: {printable(status)}"
        if self._spinner is not None:
            self.update(text)
        else:
            self.status(text)

    # -- stdout: replies, tasks, JSON ---------------------------------------------------------

    def text_piece(self, piece: str) -> None:
        """A piece of a streamed reply, drawn as Markdown as it comes."""
        self._stop_spinner()
        if self._streamed is None:
            self._streamed = StreamedReply(self._console_out())
        self._streamed.add(piece)

    def reply(self, text: str) -> None:
        """The complete reply; printed now unless it was streamed already."""
        streamed = self._streamed is not None
        self.end_reply()
        if self.json_mode or streamed:
            return
        text = printable(text)
        if self.rich_out:
            self._console_out().print(Trimmed(as_markdown(text)))
        else:
            print(text, file=self._out, flush=True)

    def tasks(self, report: TaskReport) -> None:
        if self.json_mode or report.unsent:  # tasks of a session Acontext has not fully seen
            return
        if not report.tasks:
            print("No tasks were extracted from this session.", file=self._out, flush=True)
        elif self.rich_out:
            self._console_out().print(_task_table(report.tasks))
        else:
            print("Tasks:", file=self._out)
            for task in report.tasks:
                print(_task_text(task), file=self._out)
            self._out.flush()

    def learned(self, outcome: LearningOutcome) -> None:
        """The skills learning created or updated, one line each with name and description."""
        if self.json_mode or outcome.status != "completed":
            return
        if outcome.changes:
            lines = ["Skills learned:"]
            lines += [
                f"  {c.skill.name} ({c.change}): {' '.join(c.skill.description.split())}"
                for c in outcome.changes
            ]
        elif outcome.skills:
            lines = ["No skills were created or updated from this session."]
        else:
            lines = [f"Learning space {outcome.space_id} has no skills."]
        self.lines(lines)

    def lines(self, lines: Iterable[str]) -> None:
        """Lines of stored text (history, sessions) or of a report; printed as plain text."""
        for line in lines:
            print(self._masked(printable(line)), file=self._out)
        self._out.flush()

    def json(self, payload: dict[str, Any]) -> None:
        print(json.dumps(payload, ensure_ascii=False, indent=2), file=self._out, flush=True)

    # -- plumbing ----------------------------------------------------------------------------

    def end_reply(self) -> None:
        """Stop drawing: the turn is over or was cancelled."""
        self._stop_spinner()
        self._stop_live()

    def _stop_live(self) -> None:
        streamed, self._streamed = self._streamed, None
        if streamed is not None:
            streamed.close()

    def _stop_spinner(self) -> None:
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None

    def _console_out(self) -> Console:
        if self._out_console is None:
            from rich.console import Console

            self._out_console = Console(file=self._out)
        return self._out_console

    def _console_err(self) -> Console:
        if self._err_console is None:
            from rich.console import Console

            self._err_console = Console(file=self._err)
        return self._err_console

    def _say(self, text: str, *, style: str) -> None:
        text = self._masked(printable(text))
        if self._above_prompt is not None and self._above_prompt(text):
            return
        if self.rich_err:
            self._console_err().print(text, style=style, markup=False, highlight=False)
        else:
            print(text, file=self._err, flush=True)

    def _masked(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, mask(secret))
        return mask_urls(text)


def _outcome(result: ToolResult) -> str:
    if result.ok:
        return "ok"
    if result.declined:
        return f"not run: {result.content.removeprefix(f'{result.name} was not run: ')}"
    return f"error: {result.content.removeprefix('Error: ')}"


def _wait(count: int) -> str:
    return "waits" if count == 1 else "wait"


def mask(secret: str) -> str:
    """Enough of a key to recognise it, not enough to use it."""
    return f"{secret[:3]}…{secret[-4:]}" if len(secret) >= 12 else "…"


def mask_urls(text: str) -> str:
    """Every URL in the text without its user-info (``http://…@host``), which may hold a key."""
    return _URL_USER_INFO.sub(r"\1…@", text)


def task_payload(task: Task) -> dict[str, Any]:
    return {
        "order": task.order,
        "description": task.description,
        "status": task.status,
        "progresses": list(task.progresses),
        "user_preferences": list(task.user_preferences),
    }


def _task_text(task: Task) -> str:
    lines = [f"{task.order}. [{task.status}] {task.description}"]
    lines += [f"   progress: {note}" for note in task.progresses]
    lines += [f"   preference: {note}" for note in task.user_preferences]
    return printable("\n".join(lines))


def _task_table(tasks: Iterable[Task]) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Tasks", show_lines=True, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("Task")
    table.add_column("Status")
    table.add_column("Progress")
    table.add_column("Preferences")
    for task in tasks:
        table.add_row(
            str(task.order),
            Text(printable(task.description)),
            Text(printable(task.status), style=STATUS_COLOURS.get(task.status, "")),
            _notes(task.progresses),
            _notes(task.user_preferences),
        )
    return table


def _notes(notes: Iterable[str]) -> Any:
    from rich.text import Text

    text = printable("\n".join(notes))
    return Text(text) if text else Text("—", style="dim")


class _Guarded(io.TextIOBase):
    """A stream whose reader may go away (``agent hi | head -1``, a closed terminal, a stream
    closed at start): from then on its output goes nowhere instead of raising, and the run
    goes on to keep the conversation."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self.gone = stream is None

    def write(self, text: str) -> int:
        if self._stream is not None and not self.gone:
            try:
                self._stream.write(text)
            except OSError:  # BrokenPipeError, EIO
                self._give_up()
        return len(text)

    def flush(self) -> None:
        if self._stream is not None and not self.gone:
            try:
                self._stream.flush()
            except OSError:
                self._give_up()

    def isatty(self) -> bool:
        return self._stream is not None and not self.gone and self._stream.isatty()

    def fileno(self) -> int:
        if self._stream is None:
            raise io.UnsupportedOperation("closed at start")
        return self._stream.fileno()

    def _give_up(self) -> None:
        """Point the descriptor at the null device too, so that the interpreter's own flush at
        exit does not fail on what is left in the stream's buffer."""
        self.gone = True
        with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self.fileno())
            os.close(null)
