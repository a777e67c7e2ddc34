"""Rows 1-2 of docs/performance.md: how fast the ``agent`` script answers, starts and replies.

Each figure is the wall time of a fresh process, in an empty folder, without the developer's
settings."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from statistics import median
from typing import Any

from tests.benchmarks.harness import Row, at_most
from tests.fakes.acontext_server import start_fake_acontext
from tests.fakes.openai_server import Reply, start_fake_openai, text

PYTHON = sys.executable
AGENT = str(Path(PYTHON).parent / "agent")
ORIGINAL = [PYTHON, "-P", str(Path(__file__).with_name("original_pattern.py"))]
ORIGINAL_NAME = "original pattern"
IMPORT_BOTH = 'python -c "import openai, acontext"'
IMPORT_OPENAI = "python -c 'import openai'"
MODEL_SECONDS = 3.0  # longer than importing acontext, which a one-shot run does meanwhile
SETTINGS = ("OPENAI_", "ACONTEXT_", "AGENT_")  # the developer's own stay out of the runs
STUCK_AFTER = 300.0  # seconds
SDK_MODULES = """
import contextlib, io, sys
if sys.argv[1] == "import":
    import openai, acontext
else:
    from openai_basic.cli import main
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        with contextlib.suppress(SystemExit):
            main(sys.argv[1:])
print(sum(name.split(".")[0] in ("openai", "acontext") for name in sys.modules))
"""


def measure(runs: int) -> list[Row]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTINGS)}
    with tempfile.TemporaryDirectory() as cwd:
        return [*_cli(runs, env, cwd), *_starts(runs, env, cwd)]


def _cli(runs: int, env: dict[str, str], cwd: str) -> list[Row]:
    helps, usage, both = _medians(
        runs,
        partial(_seconds_to_exit, [AGENT, "--help"], env, cwd),
        partial(_seconds_to_exit, [AGENT, "--frobnicate"], env, cwd, code=2),
        partial(_seconds_to_exit, [PYTHON, "-c", "import openai, acontext"], env, cwd),
    )
    loaded = max(_sdk_modules(arg, env, cwd) for arg in ("--help", "--frobnicate"))
    everything = _sdk_modules("import", env, cwd)
    return [
        at_most(0.1, "agent --help", helps, both, IMPORT_BOTH),
        at_most(0.1, "agent --frobnicate", usage, both, IMPORT_BOTH),
        Row(
            "SDK modules loaded by those",
            loaded,
            everything,
            IMPORT_BOTH,
            "0",
            not loaded,
            "modules",
        ),
    ]


def _starts(runs: int, env: dict[str, str], cwd: str) -> list[Row]:
    with start_fake_openai(responder=_hello) as model, start_fake_acontext() as acontext:
        env = {
            **env,
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": model.base_url,
            "OPENAI_MAX_RETRIES": "0",
            "ACONTEXT_API_KEY": acontext.api_key,
            "ACONTEXT_BASE_URL": acontext.base_url,
            "AGENT_STATE_DIR": str(Path(cwd, "state")),
        }
        prompt, original_prompt, reply, original_reply, openai_alone = _medians(
            runs,
            partial(_seconds_to, b"you> ", [AGENT], env, cwd),
            partial(_seconds_to, b"you> ", [*ORIGINAL, "interactive"], env, cwd),
            partial(_seconds_to, b"hello\n", [AGENT, "hi"], env, cwd),
            partial(_seconds_to, b"hello\n", [*ORIGINAL, "one-shot", "hi"], env, cwd),
            partial(_seconds_to_exit, [PYTHON, "-c", "import openai"], env, cwd),
        )
    reply, original_reply = reply - MODEL_SECONDS, original_reply - MODEL_SECONDS
    return [
        at_most(0.25, "interactive: spawn -> 'you> '", prompt, original_prompt, ORIGINAL_NAME),
        at_most(0.5, "one-shot: reply overhead", reply, original_reply, ORIGINAL_NAME),
        at_most(1.5, "one-shot: the same overhead", reply, openai_alone, IMPORT_OPENAI),
    ]


def _hello(messages: list[dict[str, Any]]) -> Reply:
    return text("hello", delay=MODEL_SECONDS)


def _medians(runs: int, *measures: Callable[[], float]) -> list[float]:
    """The median of each measure over ``runs`` rounds after a warm-up round. The measures take
    turns in a round, so a busier moment of the machine hits all alike."""
    rounds = [[measure() for measure in measures] for _ in range(runs + 1)]
    return [median(samples) for samples in zip(*rounds[1:], strict=True)]


def _sdk_modules(arg: str, env: dict[str, str], cwd: str) -> int:
    """How many modules of the SDKs a fresh process holds after ``cli.main([arg])``."""
    probe = [PYTHON, "-c", SDK_MODULES, arg]
    done = subprocess.run(probe, env=env, cwd=cwd, capture_output=True, text=True, check=True)
    return int(done.stdout)


def _seconds_to_exit(command: list[str], env: dict[str, str], cwd: str, code: int = 0) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, timeout=STUCK_AFTER)
    seconds = time.perf_counter() - started
    if done.returncode != code:
        raise RuntimeError(f"{command} exited {done.returncode}: {done.stderr[-500:]!r}")
    return seconds


def _seconds_to(marker: bytes, command: list[str], env: dict[str, str], cwd: str) -> float:
    """Seconds from spawn to ``marker`` in the output (stdout and stderr in one pipe); then the
    run ends. Stdin is a terminal, so a chat is interactive (and, stdout being a pipe, prompts on
    stderr); Ctrl-D ends it."""
    leader, follower = pty.openpty()
    started, seen = time.perf_counter(), b""
    with subprocess.Popen(
        command, stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd
    ) as run:
        os.close(follower)
        output = run.stdout
        assert output is not None
        try:
            while marker not in seen:
                if not select.select([output], [], [], STUCK_AFTER)[0]:
                    raise RuntimeError(f"{command} printed nothing for {STUCK_AFTER:g} s")
                chunk = os.read(output.fileno(), 4096)
                if not chunk:
                    raise RuntimeError(f"{command} ended without {marker!r}: {seen[-500:]!r}")
                seen += chunk
            seconds = time.perf_counter() - started
            os.write(leader, b"\x04")
            run.communicate(timeout=STUCK_AFTER)
        finally:
            run.kill()  # unless it has ended
            os.close(leader)
    if run.returncode != 0:
        raise RuntimeError(f"{command} exited {run.returncode}: {seen[-500:]!r}")
    return seconds
