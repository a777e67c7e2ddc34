"""Approval of tool calls: the user answers at the terminal, or ``AGENT_APPROVE_TOOLS`` decides.

A tool marked ``@needs_approval`` runs only once its call is approved. With ``ask`` (the default)
the user is asked at the terminal, and a run that cannot ask (piped input, ``--json``) refuses;
``always`` (``--yes``) runs such calls without asking; ``never`` refuses them. A refusal is the
call's result, so the model hears why and can tell the user.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
from collections.abc import Callable

from openai_basic.output import Output
from openai_basic.settings import ApprovalPolicy
from openai_basic.text import valid
from openai_basic.tools import Approval, Approver, ToolCall

APPROVED = Approval(True)
QUESTION = "run it? y = yes, n = no, a = always in this session [y/N/a] "
ANSWERS = {
    **dict.fromkeys(("y", "yes"), "yes"),
    **dict.fromkeys(("n", "no", ""), "no"),
    **dict.fromkeys(("a", "always"), "always"),
}
CANNOT_ASK = (
    "this run cannot ask (its input is not a terminal, or it prints JSON). To allow such calls, "
    "run the agent with --yes or set AGENT_APPROVE_TOOLS=always"
)


def approver(policy: ApprovalPolicy, out: Output) -> Approver:
    """A conversation's approver: the user at this terminal, or the policy's fixed answer."""
    if policy == "always":
        return lambda call: APPROVED
    if policy == "never":
        return _refuser("AGENT_APPROVE_TOOLS=never refuses every such call")
    if not can_ask(out):
        return _refuser(CANNOT_ASK)
    return TerminalApprover(out)


def can_ask(out: Output) -> bool:
    """Whether someone can see a question and type its answer: input and errors on a terminal,
    and no JSON expected."""
    stdin = sys.stdin
    return not out.json_mode and out.rich_err and stdin is not None and stdin.isatty()


class TerminalApprover:
    """Asks before each call; "always" approves the tool for the rest of the session.

    Ctrl-C at the question cancels the turn, as it does during a tool; Ctrl-D answers no.
    """

    def __init__(self, out: Output, read: Callable[[str], str] | None = None) -> None:
        self._out = out
        self._read = read or read_answer
        self._always: set[str] = set()

    def __call__(self, call: ToolCall) -> Approval:
        if call.name in self._always:
            return APPROVED
        with self._out.paused():  # a spinner would draw over the question and the answer
            answer = self._ask(call)
        if answer == "always":
            self._always.add(call.name)
            self._out.status(f"{call.name} runs without asking for the rest of this session")
        return APPROVED if answer in ("yes", "always") else Approval(False)

    def _ask(self, call: ToolCall) -> str:
        # status() makes the model's text printable and shows it as it is, without markup
        self._out.status(f"{call.name}({call.arguments}) needs your approval")
        while True:
            try:
                typed = self._read(QUESTION)
            except EOFError:
                self._out.status("")  # the line the answer would have ended
                return "no"
            answer = ANSWERS.get(typed.strip().lower())
            if answer is not None:
                return answer
            self._out.status("answer y, n or a")


def _refuser(why: str) -> Approver:
    def refuse(call: ToolCall) -> Approval:
        return Approval(False, f"{call.name} was not run: it needs the user's approval, and {why}.")

    return refuse


def read_answer(prompt: str) -> str:
    """A line typed at the terminal after ``prompt``; EOFError at Ctrl-D.

    ``input()`` would miss a Ctrl-C that comes between showing the prompt and starting to read,
    and wait for Enter with it. Here the signal wakes the wait instead (the wakeup fd), and the
    answer stays out of the chat's line history.
    """
    print(prompt, end="", file=sys.stderr, flush=True)
    if os.name != "posix" or threading.current_thread() is not threading.main_thread():
        return valid(input())  # only the main thread has signals, only POSIX selects a tty
    woken, wake = os.pipe()
    os.set_blocking(wake, False)
    previous = signal.set_wakeup_fd(wake, warn_on_full_buffer=False)
    try:
        while sys.stdin not in select.select([sys.stdin, woken], [], [])[0]:
            os.read(woken, 512)  # a signal whose handler raised nothing: wait on
    finally:
        signal.set_wakeup_fd(previous)
        os.close(woken)
        os.close(wake)
    line = sys.stdin.readline()  # the terminal has a whole line (or Ctrl-D) ready
    if not line:
        raise EOFError
    return valid(line.rstrip("\n"))
