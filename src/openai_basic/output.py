"""The terminal: replies and tasks on stdout, tool activity, status and errors on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from openai_basic.mirror import Task, TaskReport
from openai_basic.tools import ToolResult

ARGUMENTS_SHOWN = 80


class Output:
    """Owns both streams. In JSON mode stdout carries nothing but the final JSON object."""

    def __init__(
        self, *, json_mode: bool = False, stdout: TextIO | None = None, stderr: TextIO | None = None
    ) -> None:
        self.json_mode = json_mode
        self._out = stdout or sys.stdout
        self._err = stderr or sys.stderr
        self._secrets: tuple[str, ...] = ()

    def hide(self, *secrets: str) -> None:
        """Never print these (API keys): they are masked wherever they would appear."""
        self._secrets = tuple(s for s in secrets if len(s) >= 8)

    def status(self, text: str) -> None:
        print(self._masked(text), file=self._err, flush=True)

    def error(self, text: str) -> None:
        self.status(f"error: {text}")

    def syncing(self, waiting: int) -> None:
        self.status(f"sending to Acontext: {waiting} messages waiting")

    def unsent(self, waiting: int, journal: object) -> None:
        self.status(
            f"{waiting} messages wait in {journal}; they are sent at the next start or with "
            "`agent sync`"
        )

    def _masked(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, mask(secret))
        return text

    def tool(self, result: ToolResult) -> None:
        arguments = " ".join(result.arguments.split())
        if len(arguments) > ARGUMENTS_SHOWN:
            arguments = arguments[: ARGUMENTS_SHOWN - 1] + "…"
        outcome = "ok" if result.ok else f"error: {result.content.removeprefix('Error: ')}"
        self.status(f"  tool {result.name}({arguments}) {result.seconds:.2f}s {outcome}")

    def reply(self, text: str) -> None:
        if not self.json_mode:
            print(text, file=self._out, flush=True)

    def waiting(self, pending: int, in_process: int) -> None:
        self.status(f"waiting for task extraction: {pending} pending, {in_process} in process")

    def tasks(self, report: TaskReport) -> None:
        if self.json_mode or report.unsent:  # tasks of a session Acontext has not fully seen
            return
        if not report.tasks:
            print("No tasks were extracted from this session.", file=self._out)
        else:
            print("Tasks:", file=self._out)
        for task in report.tasks:
            print(_task_text(task), file=self._out)
        self._out.flush()

    def json(self, payload: dict[str, Any]) -> None:
        print(json.dumps(payload, ensure_ascii=False, indent=2), file=self._out, flush=True)


def mask(secret: str) -> str:
    """Enough of a key to recognise it, not enough to use it."""
    return f"{secret[:3]}…{secret[-4:]}" if len(secret) >= 12 else "…"


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
    return "\n".join(lines)
