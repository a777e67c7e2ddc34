"""The original example's scripted trip, then its tasks, then a resumed run that summarises it."""

from __future__ import annotations

from collections.abc import Iterator

from openai_basic.conversation import ChatOutcome, chat, make_registry
from openai_basic.output import Output
from openai_basic.settings import Settings
from openai_basic.tools import ToolRegistry

TRIP = (
    "I'd like a 3-day trip to Finland, and I love nature. Please plan it for me.",
    "The plan looks good. Check the weather there, please.",
    "Great. Book the cheapest flight from Shanghai to Helsinki for tomorrow.",
    "Thanks, that's all for now!",
)
SUMMARY = "Summarise our conversation so far in a few sentences."


def _echoed(prompts: tuple[str, ...], out: Output) -> Iterator[str]:
    for prompt in prompts:
        out.status(f"you: {prompt}")
        yield prompt


def run_demo(
    *, settings: Settings, out: Output, registry: ToolRegistry | None = None
) -> ChatOutcome:
    registry = registry if registry is not None else make_registry(settings)  # one for both acts
    out.status("demo: planning a trip")
    trip = chat(settings=settings, prompts=_echoed(TRIP, out), out=out, registry=registry)
    out.tasks(trip.report)
    out.status(f"demo: resuming session {trip.session_id} for a summary")
    summary = chat(
        settings=settings,
        prompts=_echoed((SUMMARY,), out),
        out=out,
        resume=trip.session_id,
        registry=registry,
    )
    return summary
