"""``agent doctor``: the settings in effect and whether each service accepts them."""

from __future__ import annotations

from dataclasses import dataclass

import openai
from openai.types.chat import ChatCompletionFunctionToolParam

from openai_basic.acontext_api import AcontextApi
from openai_basic.errors import AgentError
from openai_basic.journal import JOURNAL_FILE, Journal
from openai_basic.model_errors import Part, refusal
from openai_basic.output import mask, mask_urls
from openai_basic.settings import PLACEHOLDER_KEY_FIX, PLACEHOLDER_OPENAI_API_KEY, Settings
from openai_basic.text import plural

PROBE_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "ping",
        "description": "Answer the health check.",
        "parameters": {
            "type": "object",
            "properties": {},
            "required": [],
            "additionalProperties": False,
        },
    },
}

# How many checks pass before the one a refused probe fails: key 0, model 1, tool calling 2.
CHECKS_PASSED_BEFORE: dict[Part, int] = {
    "key": 0,
    "server": 0,
    "model": 1,
    "tools": 2,
    "history": 2,
    "request": 2,
}


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report: what was checked, and the fix when it failed."""

    name: str
    ok: bool
    detail: str = ""


def settings_lines(settings: Settings) -> list[str]:
    """The settings in effect, with keys masked, also where a URL carries one."""
    openai_key = mask(settings.openai_api_key) if settings.openai_api_key else "(not set)"
    if settings.openai_api_key == PLACEHOLDER_OPENAI_API_KEY:
        openai_key = f"{PLACEHOLDER_OPENAI_API_KEY} (the placeholder from .env.example)"
    space = settings.learning_space or "(made for each --user on first use, and remembered)"
    shown = {
        "OPENAI_API_KEY": openai_key,
        "OPENAI_BASE_URL": mask_urls(settings.openai_base_url or "(OpenAI)"),
        "OPENAI_MODEL": settings.openai_model,
        "ACONTEXT_API_KEY": mask(settings.acontext_api_key),
        "ACONTEXT_BASE_URL": mask_urls(settings.acontext_base_url),
        "AGENT_STATE_DIR": str(settings.state_dir),
        "AGENT_LEARN": "on" if settings.learn else "off (--learn turns it on)",
        "AGENT_LEARNING_SPACE": space,
    }
    width = max(map(len, shown))
    return [f"{name:<{width}}  {value}" for name, value in shown.items()]


def run_checks(settings: Settings) -> list[Check]:
    return [check_journal(settings), check_acontext(settings), *check_openai(settings)]


def check_journal(settings: Settings) -> Check:
    """The state folder works, and what its journal still has to send."""
    name = f"journal in {settings.state_dir}"
    if not (settings.state_dir / JOURNAL_FILE).exists() and not settings.state_dir.is_file():
        return Check(name, True, "not created yet")  # and a check makes none
    try:
        journal = Journal(settings.state_dir)
        try:
            waiting, held = journal.count_waiting(), journal.held()
        finally:
            journal.close()
    except AgentError as exc:
        return Check(name, False, str(exc))
    if held:
        return Check(
            name, False, f"{plural(len(held), 'message')} rejected by Acontext: agent sync"
        )
    return Check(name, True, f"{plural(waiting, 'message')} waiting: agent sync" if waiting else "")


def check_acontext(settings: Settings) -> Check:
    try:
        with AcontextApi(settings) as api:
            api.check()
    except AgentError as exc:
        return Check("Acontext reachable and key accepted", False, str(exc))
    return Check(f"Acontext reachable and key accepted at {settings.acontext_base_url}", True)


def check_openai(settings: Settings) -> list[Check]:
    """One small tool-calling request tells whether the key, the model and tools all work."""
    names = ["OpenAI key accepted", f"model {settings.openai_model!r} accepted", "tool calling"]
    if not settings.openai_api_key:
        return _failed(names, 0, "OPENAI_API_KEY is not set: put it in .env or the environment")
    if settings.openai_api_key == PLACEHOLDER_OPENAI_API_KEY:
        return _failed(names, 0, PLACEHOLDER_KEY_FIX)
    client = openai.OpenAI(
        api_key=settings.openai_api_key, base_url=settings.openai_base_url, max_retries=1
    )
    try:
        completion = client.chat.completions.create(
            model=settings.openai_model,
            messages=[{"role": "user", "content": "Health check: call the ping tool."}],
            tools=[PROBE_TOOL],
            tool_choice="required",
        )
    except openai.APIError as exc:
        refused = refusal(exc, settings.openai_model)
        return _failed(names, CHECKS_PASSED_BEFORE[refused.part], refused.detail)
    if not (completion.choices and completion.choices[0].message.tool_calls):
        fix = "the model answered without calling the tool: pick a model with tool calling"
        return _failed(names, 2, fix)
    return [Check(name, True) for name in names]


def _failed(names: list[str], passed: int, detail: str) -> list[Check]:
    """The checks before ``passed`` passed and that one failed; the ones after it were not made."""
    return [*(Check(name, True) for name in names[:passed]), Check(names[passed], False, detail)]
