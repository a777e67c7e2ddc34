"""What the benchmark groups share: rows of the table, a fresh interpreter to measure in, a
mirror pointed at the fake Acontext, and a model that answers in-process."""

from __future__ import annotations

import multiprocessing
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from openai_basic.mirror import AcontextMirror
from openai_basic.settings import Settings
from tests.fakes.acontext_server import DEFAULT_API_KEY
from tests.fakes.openai_server import Reply, start_fake_openai

if TYPE_CHECKING:  # the resume benchmark measures a process without the OpenAI SDK
    from openai.types.chat import ChatCompletion

MODEL = "gpt-4o-mini"
SCALING_LIMIT = 2.5  # twice the input may cost this many times as much: about linear
CHILD_SECONDS = 600.0
T = TypeVar("T")


@dataclass(frozen=True)
class Row:
    """One line of the table: our figure next to a baseline from the same run, and the verdict
    (``passed`` is None for a row that only informs)."""

    name: str
    ours: float
    baseline: float
    baseline_name: str
    target: str
    passed: bool | None
    unit: str = "s"

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("nan")


def at_most(
    factor: float, name: str, ours: float, baseline: float, baseline_name: str, unit: str = "s"
) -> Row:
    """A row whose target is a ratio: ours at most ``factor`` times the baseline."""
    passed = ours <= factor * baseline
    return Row(name, ours, baseline, baseline_name, f"<= {factor:g} x", passed, unit)


def under(
    limit: float, name: str, ours: float, baseline: float, baseline_name: str, unit: str = "s"
) -> Row:
    """A row whose target is a figure: ours under ``limit``."""
    return Row(name, ours, baseline, baseline_name, f"< {limit:g} {unit}", ours < limit, unit)


def scaling(name: str, single: float, double: float, unit: str = "s") -> Row:
    """How a cost grows: the figure at twice the size against the figure at the size."""
    return at_most(SCALING_LIMIT, name, double, single, "the same at half the size", unit)


def in_child(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a fresh interpreter: the fakes serving it from this process do not
    take its GIL, and its peak memory is its own."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply_async(function, args).get(timeout=CHILD_SECONDS)


@contextmanager
def mirror_to(acontext_url: str, **settings: Any) -> Iterator[AcontextMirror]:
    """An ``AcontextMirror`` writing to the fake Acontext, with a journal of its own."""
    with tempfile.TemporaryDirectory() as state:
        configured = Settings(
            openai_api_key="sk-test",
            openai_base_url=None,
            state_dir=Path(state),
            acontext_api_key=DEFAULT_API_KEY,
            acontext_base_url=acontext_url,
            **settings,
        )
        with AcontextMirror(configured) as mirror:
            yield mirror


class ListSink(list[dict[str, Any]]):
    """Mirroring off: the messages go to a list and nowhere else."""

    def append(self, message: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
        super().append(message)


class ReplayModel:
    """``client.chat.completions.create`` answered in-process: ``tool_turn`` after the user's
    message, ``answer`` after a tool's. Both are what the fake model sent for them, parsed by the
    SDK, so the model costs next to nothing; what it does cost is kept in ``calls``."""

    def __init__(self, tool_turn: Reply, answer: Reply) -> None:
        self._tool_turn, self._answer = _sent_by_the_fake(tool_turn, answer)
        self.chat = self.completions = self  # so client.chat.completions.create is self.create
        self.calls: list[tuple[float, float]] = []  # when each call began and returned

    def create(self, *, messages: list[dict[str, Any]], **_: Any) -> ChatCompletion:
        began = time.perf_counter()
        reply = self._tool_turn if messages[-1]["role"] == "user" else self._answer
        self.calls.append((began, time.perf_counter()))
        return reply

    @property
    def seconds(self) -> float:
        return sum(returned - began for began, returned in self.calls)


def _sent_by_the_fake(*replies: Reply) -> list[ChatCompletion]:
    import openai

    with (
        start_fake_openai() as fake,
        openai.OpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0) as client,
    ):
        fake.script(*replies)
        question: Any = [{"role": "user", "content": "?"}]
        return [client.chat.completions.create(model=MODEL, messages=question) for _ in replies]
