"""The original example's scripted trip, then its tasks, then a resumed run that summarises it.

With learning on, a last act shows recall: a new session in the same learning space, where the
model gets the skills learned from the trip.
"""

from __future__ import annotations

from collections.abc import Iterator

from openai_basic.approval import can_ask
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
RECALL = "Plan me another short trip, the way I like to travel."


def _echoed(prompts: tuple[str, ...], out: Output) -> Iterator[str]:
    for prompt in prompts:
        out.status(f"you: {prompt}")
        yield prompt


def _warn_of_refusals(settings: Settings, out: Output, registry: ToolRegistry) -> None:
    """Say before it happens that the booking will be refused: a demo piped into a file cannot
    ask, and a refusal read only in the transcript looks like a fault."""
    asking = [tool.name for tool in registry if tool.needs_approval]
    if asking and settings.approve_tools == "ask" and not can_ask(out):
        out.status(
            f"demo: {', '.join(asking)} asks you before it runs, and this run cannot ask, so "
            "its calls will be refused (--yes lets them run)"
        )


def run_demo(
    *, settings: Settings, out: Output, registry: ToolRegistry | None = None
) -> ChatOutcome:
    registry = registry if registry is not None else make_registry(settings)  # one for both acts
    _warn_of_refusals(settings, out, registry)
    out.status("demo: planning a trip")
    trip = chat(settings=settings, prompts=_echoed(TRIP, out), out=out, registry=registry)
    out.tasks(trip.report)
    if trip.learning is not None:
        out.learned(trip.learning)
    out.status(f"demo: resuming session {trip.session_id} for a summary")
    summary = chat(
        settings=settings,
        prompts=_echoed((SUMMARY,), out),
        out=out,
        resume=trip.session_id,
        registry=registry,
    )
    if not settings.learn:
        return summary
    out.tasks(summary.report)
    if summary.learning is not None:
        out.learned(summary.learning)
    out.status("demo: a new session in the same learning space, with what was learned")
    return chat(settings=settings, prompts=_echoed((RECALL,), out), out=out, registry=registry)
