"""The prompt the chat reads its lines at, and the lines other threads print above it.

On a terminal, GNU readline edits the line: a history kept across runs, Ctrl-R to search it, and a
paste of several lines read as one line (bracketed paste, which Python turns off for its own REPL).

Readline draws the line being typed, so a status line another thread prints meanwhile (the mirror's
writer saying Acontext is unreachable) would land in the middle of it. Such a line waits in a queue
instead, and the main thread is woken by a signal to print it: readline waits for keys with the GIL
released and is not thread-safe, so only the main thread, between two keys, may clear the line,
print, and have readline draw the prompt again with what was typed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType

from openai_basic.text import valid

HISTORY_LENGTH = 1000
WAKE = getattr(signal, "SIGUSR1", None)  # what wakes the main thread (POSIX, as readline is)


class Prompt:
    """Reads typed lines; ``print_above`` puts a line above the one being typed, from any thread."""

    def __init__(self, history_file: Path) -> None:
        self._history_file = history_file
        self._readline = _line_editing(history_file)
        self._hooked = False  # the wake-up's handler and readline's pre-input hook are set
        self._waiting: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._up = False  # readline has drawn the prompt and waits for keys
        self._main = threading.main_thread()
        self._previous_handler: Callable[[int, FrameType | None], object] | int | None = None

    def read(self, prompt: str) -> str:
        """One line typed after ``prompt``; it goes to stdout on a terminal, else to stderr."""
        if not _is_terminal(sys.stdout):
            print(prompt, end="", file=sys.stderr, flush=True)
            return valid(input())
        if not self._hook():
            return valid(input(prompt))
        try:
            return valid(input(prompt))  # readline's pre-input hook marks the prompt up
        finally:
            with self._lock:
                self._up = False
            self._print_plainly()

    def print_above(self, line: str) -> bool:
        """Print ``line`` above the prompt if it is up; False when it is not (print it yourself)."""
        with self._lock:  # the wake-up is sent while the prompt is still up, never after close
            if WAKE is None or not self._up or threading.current_thread() is self._main:
                return False
            self._waiting.put(line)
            signal.pthread_kill(self._main.ident or 0, WAKE)
        return True

    def close(self) -> None:
        """Save the history; stop printing above the prompt."""
        if self._hooked and self._readline is not None and WAKE is not None:
            with self._lock:
                self._up = False
                signal.signal(WAKE, self._previous_handler or signal.SIG_DFL)
            self._readline.set_pre_input_hook()
            self._hooked = False
            self._print_plainly()
        if self._readline is not None:
            with contextlib.suppress(OSError):  # no history is better than no chat
                self._readline.write_history_file(self._history_file)

    def _hook(self) -> bool:
        """Whether lines may go above this prompt: readline reads it, on the main thread."""
        if self._hooked or self._readline is None or WAKE is None or not _readline_reads():
            return self._hooked
        hookable = hasattr(self._readline, "set_pre_input_hook")  # not with every libedit
        if hookable and threading.current_thread() is self._main:
            self._previous_handler = signal.signal(WAKE, self._woken)
            self._readline.set_pre_input_hook(self._prompt_drawn)
            self._hooked = True
        return self._hooked

    @functools.cached_property
    def _redraw(self) -> _Redraw | None:
        return None if self._readline is None else _readline_redraw(self._readline)

    def _prompt_drawn(self) -> None:
        """Readline's pre-input hook: the prompt is up. (Finding readline's functions takes
        milliseconds, so it is done here, once the prompt shows, rather than before.)"""
        redraw = self._redraw
        with self._lock:
            self._up = redraw is not None

    def _woken(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler: readline waits for a key, its line is drawn, so print above it."""
        redraw = self._redraw
        if not self._up or redraw is None:
            return  # the prompt went meanwhile: ``read`` prints what waits
        lines = _drained(self._waiting)
        if lines:
            redraw.clear()
            _print(lines)
            redraw.draw()

    def _print_plainly(self) -> None:
        _print(_drained(self._waiting))


@dataclass(frozen=True)
class _Redraw:
    """Readline's own functions to clear the line being typed and to draw it again with the
    cursor where it was, which the readline module does not offer."""

    clear_lines: Callable[[], object] | None  # every screen line the typed line takes
    draw: Callable[[], object]
    flush: Callable[[None], object]  # C's stdout, which readline writes to

    def clear(self) -> None:
        if self.clear_lines is None:  # libedit: only the screen line the cursor is on
            sys.stderr.write("\r\x1b[K")
            return
        self.clear_lines()
        self.flush(None)


def _line_editing(history_file: Path) -> ModuleType | None:
    """Readline with the history of earlier runs; None where there is no readline."""
    try:
        import readline
    except ImportError:  # plain input still works
        return None
    with contextlib.suppress(OSError):
        history_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        readline.read_history_file(history_file)
    readline.set_history_length(HISTORY_LENGTH)
    if "libedit" not in (readline.__doc__ or ""):
        readline.parse_and_bind("set enable-bracketed-paste on")
    return readline


def _readline_redraw(readline: ModuleType) -> _Redraw | None:
    """The C functions of the readline library the module uses; None if they cannot be found."""
    import ctypes

    try:  # the module's own file, or the interpreter itself when readline is built in
        library = ctypes.PyDLL(getattr(readline, "__file__", None))
        draw = library.rl_forced_update_display
        flush = ctypes.CDLL(None).fflush
    except (OSError, AttributeError):
        return None
    return _Redraw(getattr(library, "rl_clear_visible_line", None), draw, flush)


def _readline_reads() -> bool:
    """Whether ``input`` goes through readline: stdin and stdout are this process's terminal."""
    try:
        standard = sys.stdin.fileno() == 0 and sys.stdout.fileno() == 1
    except (AttributeError, ValueError, OSError):  # replaced, or closed at start
        return False
    return standard and os.isatty(0) and os.isatty(1)


def _is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return isatty is not None and bool(isatty())


def _drained(waiting: queue.SimpleQueue[str]) -> list[str]:
    lines = []
    with contextlib.suppress(queue.Empty):
        while True:
            lines.append(waiting.get_nowait())
    return lines


def _print(lines: list[str]) -> None:
    for line in lines:
        print(line, file=sys.stderr, flush=True)
