"""What streaming a reply to a terminal costs, as the reply grows: `Output` against the old way,
which made the whole reply so far Markdown again for every piece.

Not a test (pytest collects test_*.py only). Run it with ``uv run python -m tests.bench_rendering``;
a benchmark table can call ``render_seconds`` and ``baseline_seconds``.
"""

from __future__ import annotations

import io
import re
import time

from openai_basic import output
from openai_basic.output import Output, printable

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
    usual = output.REDRAW_SECONDS
    output.REDRAW_SECONDS = usual if redraw_seconds is None else redraw_seconds
    try:
        started = time.perf_counter()
        for piece in parts:
            out.text_piece(piece)
        out.reply("".join(parts))
        return time.perf_counter() - started
    finally:
        output.REDRAW_SECONDS = usual


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


MEASURES = {
    "old: whole reply per piece": baseline_seconds,
    "Output": render_seconds,
    "Output, a redraw per piece": lambda pieces: render_seconds(pieces, redraw_seconds=0),
}


def main() -> None:
    few, many = 500, 4000
    print(f"{'':28}{few:>6} pieces{many:>6} pieces{'ratio':>7}")
    for name, measure in MEASURES.items():
        short, long = measure(few), measure(many)
        print(f"{name:28}{short:>12.3f}s{long:>12.3f}s{long / short:>7.1f}")
    times = many // few
    print(f"(a cost that grows with the reply: a ratio near {times}, not {times**2})")


if __name__ == "__main__":
    main()
