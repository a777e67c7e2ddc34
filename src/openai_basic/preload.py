"""The SDKs, imported in the background: seconds of work no one should wait for."""

from __future__ import annotations

import contextlib
import importlib
import threading
from typing import Literal

Part = Literal["openai", "acontext", "skills"]

# What each part imports, in order. acontext imports openai itself, so openai comes first.
_PARTS: dict[Part, tuple[str, ...]] = {
    "openai": ("httpx", "openai", "openai.resources.chat"),
    "acontext": ("acontext", "acontext.errors"),
    "skills": ("acontext.agent.skill",),  # the SDK's skill tools, for learning (after the rest)
}
_loaded = {part: threading.Event() for part in _PARTS}
_start_lock = threading.Lock()
_started = False


def preload(wait_for: Part | None = None) -> None:
    """Start importing the SDKs in a thread of their own, once; wait for ``wait_for`` if given.

    Importing openai and acontext takes seconds (10-16 s on a loaded machine), so it happens while
    the user types or the model works. Every import of them happens in that one thread, because
    two threads importing one package graph at once can meet a half-made module: openai looks
    httpx up in ``sys.modules`` on each request and imports its chat resources on first use. Code
    on any other thread calls this and waits for the part it needs before touching the SDK.
    """
    global _started
    with _start_lock:
        if not _started:
            threading.Thread(target=_import_in_order, name="preload", daemon=True).start()
            _started = True
    if wait_for is not None:
        _loaded[wait_for].wait()


def _import_in_order() -> None:
    for part, modules in _PARTS.items():
        with contextlib.suppress(Exception):  # whoever needs it imports it again and says why
            for module in modules:
                importlib.import_module(module)
        _loaded[part].set()
