"""Row 7: what streaming a reply to a terminal costs as the reply grows, against the old way,
which made the whole reply so far Markdown again for every piece."""

from __future__ import annotations

import io
import re
import time
from statistics import median

from openai_basic import markdown
from openai_basic.output import Output, printable
from tests.benchmarks.harness import Row, at_most

# One section of a reply as a model writes one; a long reply is the section again and again.
SECTION = """## Packing for Oslo

The forecast says **sunny** in the morning and rain after noon, so plan for both. The wind
comes from the west at about 5 m/s, which feels colder than the 12 °C the thermometer shows.

- a light rain jacket
- shoes that can get wet
- a warm layer for the evening

To check the forecast again before you leave, run:

```python
from weather import forecast

print(forecast("Oslo", days=2))
```

Enjoy the trip, and see [the forecast](https://yr.no/oslo) for updates.

"""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def reply_pieces(pieces: int) -> list[str]:
    """A reply cut as a model streams it, a word (with the space before it) a piece."""
    section = re.findall(r"\s*\S+|\s+", SECTION)
    return (section * (pieces // len(section) + 1))[:pieces]


def render_seconds(pieces: int, *, redraw_seconds: float | None = None) -> float:
    """Stream a reply of ``pieces`` pieces through ``Output`` to a terminal; with
    ``redraw_seconds=0`` the unfinished block is drawn again for every piece (the worst case)."""
    parts = reply_pieces(pieces)
    out = Output(stream=True, stdout=_Terminal(), stderr=_Terminal())
    usual = markdown.REDRAW_SECONDS
    markdown.REDRAW_SECONDS = usual if redraw_seconds is None else redraw_seconds
    try:
        started = time.perf_counter()
        for piece in parts:
            out.text_piece(piece)
        out.reply("".join(parts))
        return time.perf_counter() - started
    finally:
        markdown.REDRAW_SECONDS = usual


def baseline_seconds(pieces: int) -> float:
    """The same reply the old way: the whole reply so far made Markdown for every piece."""
    from rich.console import Console
    from rich.live import Live
    from rich.markdown import Markdown

    parts = reply_pieces(pieces)
    live = Live(console=Console(file=_Terminal()), refresh_per_second=12, transient=False)
    started = time.perf_counter()
    live.start()
    text = ""
    for piece in parts:
        text += piece
        live.update(Markdown(printable(text)))
    live.stop()
    return time.perf_counter() - started


FEW, MANY = 500, 4_000
OLD_MANY = 2_000  # the old way takes a minute for 4,000 pieces on a loaded machine


def measure(runs: int) -> list[Row]:
    few = median(render_seconds(FEW) for _ in range(runs))
    many = median(render_seconds(MANY) for _ in range(runs))
    worst_few = median(render_seconds(FEW, redraw_seconds=0) for _ in range(runs))
    worst_many = median(render_seconds(MANY, redraw_seconds=0) for _ in range(runs))
    old_few, old_many = baseline_seconds(FEW), baseline_seconds(OLD_MANY)
    times = MANY // FEW
    return [
        at_most(times * 1.25, f"stream {MANY:,} vs {FEW:,} pieces", many, few, f"{FEW:,} pieces"),
        at_most(
            times * 1.25,
            f"the same, a redraw per piece: {MANY:,} vs {FEW:,}",
            worst_many,
            worst_few,
            f"{FEW:,} pieces",
        ),
        Row(
            f"old way: {OLD_MANY:,} vs {FEW:,} pieces (once)",
            old_many,
            old_few,
            f"{FEW:,} pieces",
            "reference",
            None,
        ),
    ]
