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
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO, cast

from openai_basic.text import plural

if TYPE_CHECKING:  # kept light: the terminal comes up before the SDKs load
    from rich.console import Console, ConsoleOptions
    from rich.markdown import Markdown
    from rich.segment import Segment
    from rich.status import Status

    from openai_basic.acontext_api import Task, TaskReport
    from openai_basic.agent import Usage
    from openai_basic.journal import Held
    from openai_basic.learning import LearningOutcome
    from openai_basic.tools import ToolResult

ARGUMENTS_SHOWN = 80
# How often at most the unfinished block of a streamed reply is drawn again: a model sends pieces
# faster than anyone reads, and each drawing renders the block anew.
REDRAW_SECONDS = 1 / 12
STATUS_COLOURS = {"success": "green", "failed": "red", "running": "yellow", "pending": "blue"}

# What a terminal would obey rather than show: escape sequences (a string such as OSC's runs to
# its terminator, or unfinished to the end of the line), their 8-bit C1 forms, the C0 controls but
# tab and newline, DEL, and the bidi overrides that make text read otherwise than it is stored.
_CONTROLS = re.compile(
    r"""
      (?: \x1b[P\]X^_] | [\x90\x98\x9d\x9e\x9f] ) [^\x07\x1b\x9c\n]* (?: \x07 | \x1b\\ | \x9c )?
    | (?: \x1b\[ | \x9b ) [0-?]* [ -/]* [@-~]?
    | \x1b [ -/]* [0-~]?
    | [\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]
    """,
    re.VERBOSE,
)
# A line that opens or closes a fenced code block, and one that starts a list item.
_FENCE = re.compile(r"\s*(`{3,}|~{3,})")
_LIST_ITEM = re.compile(r"(?:[-+*]|\d{1,9}[.)])(?:\s|$)")
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
        self._streamed: _StreamedReply | None = None
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
        outcome = "ok" if result.ok else f"error: {result.content.removeprefix('Error: ')}"
        self.status(f"  tool {result.name}({arguments}) {result.seconds:.2f}s {outcome}")

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
            self._streamed = _StreamedReply(self._console_out())
        self._streamed.add(piece)

    def reply(self, text: str) -> None:
        """The complete reply; printed now unless it was streamed already."""
        streamed = self._streamed is not None
        self.end_reply()
        if self.json_mode or streamed:
            return
        text = printable(text)
        if self.rich_out:
            self._console_out().print(_Trimmed(_markdown(text)))
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


def _wait(count: int) -> str:
    return "waits" if count == 1 else "wait"


def printable(text: str) -> str:
    """The text without anything a terminal would obey: a model, a tool or a session wrote it."""
    return _CONTROLS.sub("", text)


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


class _StreamedReply:
    """A reply drawn on the terminal as it streams in.

    Drawing the whole reply again for each piece costs more with every piece. Instead each
    Markdown block is printed once, for good, when the next one starts, and only the unfinished
    block is drawn again (live, at most every ``REDRAW_SECONDS``).
    """

    def __init__(self, console: Console) -> None:
        from rich.live import Live

        self._blocks = _Blocks()
        self._gap = False  # whether the next block is set off by a blank line, as Markdown does
        self._drawn_at = -float("inf")
        self._live = Live(console=console, auto_refresh=False, transient=False)
        self._live.start()

    def add(self, piece: str) -> None:
        finished = self._blocks.add(piece)
        now = time.monotonic()
        if not finished and now - self._drawn_at < REDRAW_SECONDS:
            return
        printed = [self._block(text) for text in finished]
        # the live part shows the new block before the finished ones are printed above it
        self._live.update(self._unfinished(), refresh=True)
        if printed:
            self._live.console.print(*printed)
        self._drawn_at = now

    def close(self) -> None:
        """Draw the unfinished block a last time, and leave it on the terminal."""
        self._live.update(self._unfinished())
        self._live.stop()

    def _block(self, text: str) -> _Trimmed:
        markdown = _markdown(text)
        block = _Trimmed(markdown, gap=self._gap)
        if markdown.parsed:  # a horizontal rule ends with a blank line of its own
            self._gap = markdown.parsed[-1].type != "hr"
        return block

    def _unfinished(self) -> _Trimmed:
        return _Trimmed(_markdown(self._blocks.unfinished), gap=self._gap)


class _Blocks:
    """A streamed reply cut into Markdown blocks as it comes.

    A block ends at a blank line outside a fenced code block, once the next line starts a new
    block: one that is not indented (a list item's or code's continuation) nor a list item (a
    list with blank lines between its items is one list). The text is made printable a whole
    line at a time: no control sequence spans a newline, so one split across pieces is still
    removed whole.
    """

    def __init__(self) -> None:
        self._partial: list[str] = []  # the pieces of the line not ended yet
        self._lines: list[str] = []  # the ended lines of the unfinished block, printable
        self._fence = ""  # the fence of the open code block
        self._has_text = False  # blank lines before the first text end no block

    def add(self, piece: str) -> list[str]:
        """Take the next piece; return the blocks it finished."""
        self._partial.append(piece)
        if "\n" not in piece:
            return []
        *ended, rest = "".join(self._partial).split("\n")
        self._partial = [rest]
        finished = []
        for line in map(printable, ended):
            if self._starts_block(line):
                finished.append("\n".join(self._lines))
                self._lines = []
            self._lines.append(line)
            self._has_text = self._has_text or bool(line.strip())
            self._fence = _fence_after(self._fence, line)
        return finished

    @property
    def unfinished(self) -> str:
        """The unfinished block as far as it came."""
        return "\n".join([*self._lines, printable("".join(self._partial))])

    def _starts_block(self, line: str) -> bool:
        after_blank = self._has_text and not self._lines[-1].strip() and not self._fence
        return after_blank and line[:1] not in ("", " ", "\t") and not _LIST_ITEM.match(line)


def _fence_after(fence: str, line: str) -> str:
    """The fence of the open code block after this line; empty outside a code block."""
    found = _FENCE.match(line)
    if found is None:
        return fence
    marker = found.group(1)
    if not fence:
        return marker
    closes = marker[0] == fence[0] and len(marker) >= len(fence)
    return "" if closes and not line[found.end() :].strip() else fence


def _markdown(text: str) -> Markdown:
    from rich.markdown import Markdown

    # A link's URL is shown after its text: many terminals cannot show an OSC 8 link's target
    # and none can be asked, and a target the reader cannot see is one the model chose.
    return Markdown(text, hyperlinks=False)


class _Trimmed:
    """Rendered Markdown without the spaces that pad each line to the console's width."""

    def __init__(self, markdown: Markdown, *, gap: bool = False) -> None:
        self.markdown = markdown
        self.gap = gap

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        from rich.segment import Segment

        if self.gap:
            yield Segment.line()
        for line in console.render_lines(self.markdown, options, pad=False):
            yield from _rstripped(line)
            yield Segment.line()


def _rstripped(line: list[Segment]) -> list[Segment]:
    from rich.segment import Segment

    while line:
        text, style, control = line[-1]
        if text.rstrip():
            line[-1] = Segment(text.rstrip(), style, control)
            break
        line.pop()
    return line


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
