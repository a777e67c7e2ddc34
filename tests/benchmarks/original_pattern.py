"""The baseline: the original template's pattern, which did everything in line, in the user's time.

It imported ``openai`` and ``acontext`` before printing anything, created the Acontext session
before the first model call, and stored each message (one ``store_message`` round trip) before
going on. As a script, spawned like the ``agent`` script with the same environment::

    python original_pattern.py interactive      # imports, then the "you> " prompt
    python original_pattern.py one-shot PROMPT  # imports, session, model, reply

As a module, :class:`BlockingStore` is that storage as a message sink for ``run_agent``, so a
conversation differs from ours only in how messages reach Acontext.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import acontext  # the original imported both SDKs before anything else
import openai

PROMPT = "you> "


class BlockingStore:
    """An Acontext session written in line: each message waits for the server to store it."""

    def __init__(self, *, api_key: str, base_url: str, configs: dict[str, Any]) -> None:
        self.client = acontext.AcontextClient(api_key=api_key, base_url=base_url, timeout=30.0)
        self.session_id = str(self.client.sessions.create(configs=configs).id)

    def append(self, message: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
        self.client.sessions.store_message(self.session_id, blob=message, format="openai")  # type: ignore[arg-type]

    def close(self) -> None:
        self.client.close()


def _interactive() -> int:
    """The SDKs are imported: now the prompt, on stderr as the agent's is when stdout is a pipe."""
    print(PROMPT, end="", file=sys.stderr, flush=True)
    sys.stdin.readline()
    return 0


def _one_shot(prompt: str) -> int:
    model = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
    store = BlockingStore(
        api_key=os.environ["ACONTEXT_API_KEY"],
        base_url=os.environ["ACONTEXT_BASE_URL"],
        configs={"model": model},
    )
    client = openai.OpenAI(base_url=os.environ.get("OPENAI_BASE_URL") or None, max_retries=0)
    user: Any = {"role": "user", "content": prompt}
    store.append(user)
    reply = client.chat.completions.create(model=model, messages=[user]).choices[0].message.content
    print(reply, flush=True)
    store.append({"role": "assistant", "content": reply})
    store.close()
    client.close()
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["interactive"]:
        sys.exit(_interactive())
    if sys.argv[1:2] == ["one-shot"] and len(sys.argv) == 3:
        sys.exit(_one_shot(sys.argv[2]))
    sys.exit("usage: original_pattern.py interactive | one-shot PROMPT")
