"""How replies look on a terminal: streamed as printed whole, no padding, links with their URL,
a cost that grows with the reply and not with its square, and quiet waits."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
import rich.markdown

from openai_basic import markdown
from openai_basic.output import Output
from openai_basic.text import plural
from openai_basic.tools import ToolResult

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PARAGRAPHS = (
    "It is sunny in Oslo today, with a light wind from the west.",
    "Tomorrow brings rain in the morning and clearing skies after noon.",
    "Take an umbrella if you leave early.",
)
REPLY = f"""# Weather in Oslo

{PARAGRAPHS[0]}
See [the forecast](https://yr.no/oslo).

- morning: 12 °C
- noon: 17 °C

1. pack
2. leave

A loose list:

- one

- two

```python
def forecast(city):

    return "sunny"
```

---

{PARAGRAPHS[1]}

{PARAGRAPHS[2]}
"""


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def xterm(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal rich draws live on, of a known width."""
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "100")


def visible(written: str) -> list[str]:
    """The lines a terminal shows after this was written: rich's live display goes back up
    (cursor up, erase line) to draw its part again."""
    lines, row, column = [""], 0, 0
    for part in re.split(r"(\r|\n|\x1b\[[0-9;?]*[A-Za-z])", written):
        if part == "\n":
            row, column = row + 1, 0
            lines += [""] * (row + 1 - len(lines))
        elif part == "\r":
            column = 0
        elif part == "\x1b[2K":
            lines[row] = ""
        elif part == "\x1b[1A":
            row -= 1
        elif part and not part.startswith("\x1b["):  # other sequences only style the text
            line = lines[row].ljust(column)
            lines[row] = line[:column] + part + line[column + len(part) :]
            column += len(part)
    return lines


def words(text: str) -> list[str]:
    """The text in pieces as a model streams it: a word, with the space before it."""
    return re.findall(r"\s*\S+|\s+", text)


def streamed(pieces: list[str]) -> str:
    stdout = Terminal()
    out = Output(stdout=stdout, stderr=Terminal())
    for piece in pieces:
        out.text_piece(piece)
    out.reply("".join(pieces))
    return stdout.getvalue()


def printed(reply: str) -> str:
    stdout = Terminal()
    Output(stdout=stdout, stderr=Terminal(), stream=False).reply(reply)
    return stdout.getvalue()


@pytest.mark.parametrize("redraw_seconds", [0, 3600], ids=["every-piece", "blocks-only"])
@pytest.mark.parametrize("cut", [words, list], ids=["words", "characters"])
def test_a_streamed_reply_ends_as_the_whole_reply_printed_at_once(
    monkeypatch: pytest.MonkeyPatch, redraw_seconds: float, cut: Any
) -> None:
    monkeypatch.setattr(markdown, "REDRAW_SECONDS", redraw_seconds)

    screen = visible(streamed(cut(REPLY)))

    assert screen == visible(printed(REPLY))
    text = "\n".join(screen)
    for paragraph in PARAGRAPHS:
        assert text.count(paragraph) == 1
    assert text.count("return") == 1


def test_reply_lines_end_without_spaces() -> None:
    for written in (printed(REPLY), streamed(words(REPLY))):
        lines = ANSI.sub("", written).replace("\r", "\n").split("\n")
        assert [line for line in lines if line != line.rstrip()] == []
    assert printed("plain words\n\nmore") == "plain words\n\nmore\n"


def test_a_link_shows_its_url() -> None:
    for written in (printed(REPLY), streamed(words(REPLY))):
        assert "See the forecast (https://yr.no/oslo)." in "\n".join(visible(written))
        assert "\x1b]8;" not in written  # not an OSC 8 link, which a terminal may not show


def test_rendering_costs_grow_with_the_reply_not_its_square(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Counted, not timed: the characters handed to Markdown, with a redraw for every piece."""
    handed: list[int] = []

    class Counted(rich.markdown.Markdown):
        def __init__(self, markup: str, **options: Any) -> None:
            handed.append(len(markup))
            super().__init__(markup, **options)

    monkeypatch.setattr(rich.markdown, "Markdown", Counted)
    monkeypatch.setattr(markdown, "REDRAW_SECONDS", 0)

    def cost(copies: int) -> int:
        handed.clear()
        streamed(words(REPLY * copies))
        return sum(handed)

    once, twice = cost(10), cost(20)
    assert 1.8 < twice / once < 2.2  # the whole reply drawn again for each piece: 4 times


def test_text_before_a_tool_call_is_left_on_the_screen() -> None:
    stdout = Terminal()
    out = Output(stdout=stdout, stderr=Terminal())
    for piece in words("Let me look.\n\nOne moment"):
        out.text_piece(piece)
    out.tool(ToolResult("call_1", "forecast", '{"city": "Oslo"}', "sunny", True, 0.01))
    assert visible(stdout.getvalue())[:3] == ["Let me look.", "", "One moment"]
    for piece in words("It is sunny."):
        out.text_piece(piece)
    out.reply("It is sunny.")
    assert visible(stdout.getvalue())[:5] == ["Let me look.", "", "One moment", "It is sunny.", ""]


def test_a_cancelled_reply_stays_as_far_as_it_came() -> None:
    stdout = Terminal()
    out = Output(stdout=stdout, stderr=Terminal())
    for piece in words(f"{PARAGRAPHS[0]}\n\n{PARAGRAPHS[1]}"):
        out.text_piece(piece)
    out.end_reply()  # Ctrl-C
    assert visible(stdout.getvalue()) == [PARAGRAPHS[0], "", PARAGRAPHS[1], ""]
    assert stdout.getvalue().endswith("\x1b[?25h")  # the cursor is back


def test_counts_say_one_message_and_two_messages() -> None:
    assert [plural(n, "message") for n in (0, 1, 2)] == ["0 messages", "1 message", "2 messages"]
    stderr = io.StringIO()
    out = Output(stdout=io.StringIO(), stderr=stderr)
    out.unsent(1, "journal.sqlite")
    out.unsent(2, "journal.sqlite")
    assert stderr.getvalue().splitlines() == [
        "1 message waits in journal.sqlite; it is sent at the next start or with `agent sync`",
        "2 messages wait in journal.sqlite; they are sent at the next start or with `agent sync`",
    ]


def test_piped_a_wait_for_acontext_is_one_line() -> None:
    stderr = io.StringIO()
    out = Output(stdout=io.StringIO(), stderr=stderr)
    for waiting in (5, 4, 3, 2, 1):
        out.syncing(waiting)
    out.status("sent")
    out.syncing(1)
    assert stderr.getvalue().splitlines() == [
        "sending to Acontext: 5 messages waiting",
        "sent",
        "sending to Acontext: 1 message waiting",
    ]


def test_on_a_terminal_a_wait_for_acontext_is_shown_in_the_spinner() -> None:
    stderr = Terminal()
    out = Output(stdout=Terminal(), stderr=stderr)
    with out.spinner("sending the conversation to Acontext"):
        for waiting in (3, 2, 1):
            out.syncing(waiting)
    assert "1 message waiting" in stderr.getvalue()  # drawn as the spinner stops
    assert not any("sending" in line for line in visible(stderr.getvalue()))  # then erased
