"""A reply drawn as Markdown on a terminal: whole, or block by block as it streams in.

Drawing the whole reply again for each streamed piece costs more with every piece, so a long
reply would stall the terminal. ``StreamedReply`` prints each finished block once and draws only
the unfinished one again, so each piece costs about the same however long the reply is.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from openai_basic.text import printable

if TYPE_CHECKING:  # kept light: the terminal comes up before rich is needed
    from rich.console import Console, ConsoleOptions
    from rich.markdown import Markdown
    from rich.segment import Segment

# How often at most the unfinished block of a streamed reply is drawn again: a model sends pieces
# faster than anyone reads, and each drawing renders the block anew.
REDRAW_SECONDS = 1 / 12
# A line that opens or closes a fenced code block, and one that starts a list item.
_FENCE = re.compile(r"\s*(`{3,}|~{3,})")
_LIST_ITEM = re.compile(r"(?:[-+*]|\d{1,9}[.)])(?:\s|$)")


class StreamedReply:
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

    def _block(self, text: str) -> Trimmed:
        markdown = as_markdown(text)
        block = Trimmed(markdown, gap=self._gap)
        if markdown.parsed:  # a horizontal rule ends with a blank line of its own
            self._gap = markdown.parsed[-1].type != "hr"
        return block

    def _unfinished(self) -> Trimmed:
        return Trimmed(as_markdown(self._blocks.unfinished), gap=self._gap)


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


def as_markdown(text: str) -> Markdown:
    from rich.markdown import Markdown

    # A link's URL is shown after its text: many terminals cannot show an OSC 8 link's target
    # and none can be asked, and a target the reader cannot see is one the model chose.
    return Markdown(text, hyperlinks=False)


class Trimmed:
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
