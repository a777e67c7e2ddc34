"""The ORIGINAL pattern, kept only as the baseline the benchmarks compare against.

Before the current design the agent did everything in line, in the user's time:

* it imported ``openai`` and ``acontext`` up front, before printing anything;
* it created the Acontext session synchronously before the first model call;
* it stored every message synchronously (``store_message``, one HTTP round trip each) before
  taking the next prompt.

As a script (the interactive and one-shot baselines, spawned like the ``agent`` script, with the
same environment variables)::

    python benchmarks/original_pattern.py interactive      # imports, then the "you> " prompt
    python benchmarks/original_pattern.py one-shot PROMPT  # imports, session, model, reply

As a module, :class:`SyncStore` and :func:`run_turn` replay the synchronous storage around the
current ``run_agent`` loop, so a conversation benchmark differs only in where storage happens.
The script path imports nothing of ``openai_basic``: it is the old program, not the new one.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import acontext  # the original imported both SDKs before anything else
import openai

if TYPE_CHECKING:
    from openai_basic.agent import TurnResult
    from openai_basic.tools import ToolRegistry

Message = dict[str, Any]
PROMPT = "you> "


class SyncStore:
    """An Acontext session written in line: each call waits for the server's answer."""

    def __init__(self, *, api_key: str, base_url: str) -> None:
        self.client = acontext.AcontextClient(api_key=api_key, base_url=base_url, timeout=30.0)
        self.session_id = ""

    def create_session(self, configs: dict[str, Any]) -> str:
        self.session_id = str(self.client.sessions.create(configs=configs).id)
        return self.session_id

    def store(self, message: Message) -> None:
        self.client.sessions.store_message(self.session_id, blob=message, format="openai")  # type: ignore[arg-type]

    def close(self) -> None:
        self.client.close()


class _Collected:
    """A message sink that only keeps the messages of the turn (nothing is mirrored)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def append(self, message: Message, meta: dict[str, Any] | None = None) -> None:
        self.messages.append(message)


def run_turn(
    *,
    client: openai.OpenAI,
    model: str,
    registry: ToolRegistry,
    history: list[Message],
    prompt: str,
    store: SyncStore,
    system_prompt: str,
) -> TurnResult:
    """One turn of the original: the loop, then one blocking ``store_message`` per new message."""
    from openai_basic.agent import AgentSpec, run_agent

    collected = _Collected()
    result = run_agent(
        AgentSpec(model=model, registry=registry, system_prompt=system_prompt),
        client=client,
        history=history,
        user_message=prompt,
        sink=collected,
    )
    for message in collected.messages:
        store.store(message)
    return result


def _interactive() -> int:
    """Imports done, now the prompt (to stderr when stdout is not the terminal, like the agent)."""
    print("Chat with the agent. End with Ctrl-D or /exit.", file=sys.stderr)
    try:
        if sys.stdout.isatty():
            input(PROMPT)
        else:
            print(PROMPT, end="", file=sys.stderr, flush=True)
            input()
    except EOFError:
        pass
    return 0


def _one_shot(prompt: str) -> int:
    """Session first, then each message stored before the next step, the reply in between."""
    client = openai.OpenAI(
        api_key=os.environ["OPENAI_API_KEY"],
        base_url=os.environ.get("OPENAI_BASE_URL") or None,
        max_retries=0,
    )
    store = SyncStore(
        api_key=os.environ["ACONTEXT_API_KEY"], base_url=os.environ["ACONTEXT_BASE_URL"]
    )
    model = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
    try:
        store.create_session({"model": model})
        user: Message = {"role": "user", "content": prompt}
        store.store(user)
        completion = client.chat.completions.create(model=model, messages=[user])  # type: ignore[list-item]
        reply = completion.choices[0].message.content or ""
        print(reply, flush=True)
        store.store({"role": "assistant", "content": reply})
    finally:
        store.close()
        client.close()
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["interactive"]:
        return _interactive()
    if argv[:1] == ["one-shot"] and len(argv) == 2:
        return _one_shot(argv[1])
    print("usage: original_pattern.py interactive | one-shot PROMPT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
