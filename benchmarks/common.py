"""What every benchmark group shares: the plan, result rows, timing and process helpers.

Nothing here imports the OpenAI or Acontext SDKs: the child processes that import this module
load only what they measure.
"""

from __future__ import annotations

import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openai_basic.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
AGENT = ROOT / ".venv" / "bin" / "agent"
if not AGENT.exists():  # a venv somewhere else: the script sits beside its python
    AGENT = Path(PYTHON).parent / "agent"
LOOPBACK = "127.0.0.1"
FAKE_OPENAI_KEY = "sk-test"  # what tests.fakes.openai_server accepts by default
MODEL = "gpt-4o-mini"
SYSTEM_PROMPT = "You are a benchmark assistant."


@dataclass(frozen=True)
class Plan:
    """How many repetitions each measurement gets; ``quick`` is a smoke run."""

    quick: bool
    cli_runs: int  # agent --help / --frobnicate
    import_runs: int  # python -c "import openai, acontext" and similar baselines
    start_runs: int  # interactive start, ours and the original pattern
    one_shot_runs: int  # agent "hi" with a 3 s model, ours and the original pattern
    model_delay: float  # seconds the fake model takes in the one-shot run
    conversation_runs: int  # 5-turn conversations per variant
    conversation_turns: int
    tool_runs: int
    resume_runs: int
    resume_messages: int
    loop_runs: int  # per-message bookkeeping
    loop_turns: int

    @classmethod
    def default(cls) -> Plan:
        return cls(
            quick=False,
            cli_runs=15,
            import_runs=5,
            start_runs=7,
            one_shot_runs=5,
            model_delay=3.0,
            conversation_runs=7,
            conversation_turns=5,
            tool_runs=5,
            resume_runs=3,
            resume_messages=5000,
            loop_runs=9,
            loop_turns=50,
        )

    @classmethod
    def quick_plan(cls) -> Plan:
        return cls(
            quick=True,
            cli_runs=3,
            import_runs=2,
            start_runs=2,
            one_shot_runs=1,
            model_delay=3.0,
            conversation_runs=2,
            conversation_turns=5,
            tool_runs=2,
            resume_runs=1,
            resume_messages=5000,
            loop_runs=2,
            loop_turns=10,
        )


@dataclass
class Row:
    """One line of the table: a figure, its baseline from the same run, and the verdict.

    ``ours`` and ``baseline`` are numbers in ``unit`` (``s``, ``MB``, ``ms/msg``) or text;
    ``passed`` is None for rows that only inform.
    """

    name: str
    ours: float | str
    baseline: float | str
    baseline_name: str
    target: str
    passed: bool | None
    unit: str = "s"
    ratio: float | None = None
    note: str = ""
    samples: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (
            self.ratio is None
            and isinstance(self.ours, float)
            and isinstance(self.baseline, float)
            and self.baseline > 0
        ):
            self.ratio = self.ours / self.baseline

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("no measurements")
    return float(statistics.median(values))


def repeat(runs: int, measure: Callable[[], float]) -> list[float]:
    """Call ``measure`` ``runs`` times (a bounded count) and keep what it returns."""
    return [measure() for _ in range(max(1, runs))]


def format_value(value: float | str, unit: str) -> str:
    if isinstance(value, str):
        return value
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "ms/msg":
        return f"{value:.3f} ms/msg"
    return f"{value:.1f} {unit}"


# -- settings and environments -----------------------------------------------------------------


def make_settings(
    *,
    openai_url: str | None,
    acontext_url: str,
    acontext_key: str,
    state_dir: Path,
    **overrides: Any,
) -> Settings:
    from openai_basic.settings import Settings

    values: dict[str, Any] = {
        "openai_api_key": FAKE_OPENAI_KEY,
        "openai_base_url": openai_url,
        "openai_model": MODEL,
        "acontext_api_key": acontext_key,
        "acontext_base_url": acontext_url,
        "system_prompt": SYSTEM_PROMPT,
        "max_iterations": 4,
        "task_wait_seconds": 10.0,
        "state_dir": state_dir,
        "sync_wait_seconds": 30.0,
        "openai_max_retries": 0,
    }
    values.update(overrides)
    return Settings(**values)


def clean_environ() -> dict[str, str]:
    """The environment without any OpenAI, Acontext or agent setting of the developer's."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENAI_", "ACONTEXT_", "AGENT_"))
    }


def agent_env(
    *, openai_url: str, acontext_url: str, acontext_key: str, state_dir: Path
) -> dict[str, str]:
    """What a subprocess of the ``agent`` script gets: both services are local fakes."""
    env = clean_environ()
    env.update(
        OPENAI_API_KEY=FAKE_OPENAI_KEY,
        OPENAI_BASE_URL=openai_url,
        OPENAI_MAX_RETRIES="0",
        ACONTEXT_API_KEY=acontext_key,
        ACONTEXT_BASE_URL=acontext_url,
        AGENT_STATE_DIR=str(state_dir),
        AGENT_SYNC_WAIT_SECONDS="10",
        AGENT_TASK_WAIT_SECONDS="10",
    )
    return env


@contextmanager
def scratch_dir(prefix: str = "bench-") -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        yield Path(name)


# -- subprocesses ------------------------------------------------------------------------------


def run_to_end(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    expect_code: int = 0,
    timeout: float = 60.0,
) -> float:
    """Wall seconds from spawn to exit; fails unless the exit code is ``expect_code``."""
    started = time.perf_counter()
    done = subprocess.run(
        list(command),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != expect_code:
        raise RuntimeError(
            f"{' '.join(command)} exited {done.returncode}, expected {expect_code}: "
            f"{done.stderr.decode(errors='replace')[-500:]}"
        )
    return elapsed


def wait_for_output(
    process: subprocess.Popen[bytes], *, stream: str, marker: bytes, started: float, timeout: float
) -> tuple[float, bytes]:
    """Seconds from ``started`` until ``marker`` shows on the process's ``stream``, and what the
    stream showed by then.

    Both pipes are read so that neither can fill up and stall the process.
    """
    assert process.stdout is not None and process.stderr is not None
    pipes = {process.stdout.fileno(): "stdout", process.stderr.fileno(): "stderr"}
    seen = {"stdout": b"", "stderr": b""}
    deadline = started + timeout
    while time.perf_counter() < deadline:
        ready, _, _ = select.select(list(pipes), [], [], max(0.0, deadline - time.perf_counter()))
        now = time.perf_counter()
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                del pipes[fd]
                continue
            seen[pipes[fd]] += chunk
        if marker in seen[stream]:
            return now - started, seen[stream]
        if not pipes:
            break
    raise RuntimeError(
        f"{marker!r} did not appear on {stream} within {timeout:g} s; "
        f"stdout={seen['stdout'][-300:]!r} stderr={seen['stderr'][-300:]!r}"
    )


def finish(process: subprocess.Popen[bytes], *, timeout: float = 30.0) -> None:
    """Let a process we started end by itself (bounded), else kill it."""
    try:
        process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate(timeout=5)


def run_child(module: str, config: Mapping[str, Any], *, timeout: float) -> dict[str, Any]:
    """Run ``python -m benchmarks.<module> --child CONFIG``; its last stdout line is JSON."""
    env = clean_environ()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [PYTHON, "-m", f"benchmarks.{module}", "--child", json.dumps(dict(config))],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"benchmarks.{module} child failed ({done.returncode}): "
            f"{done.stderr.decode(errors='replace')[-1500:]}"
        )
    lines = done.stdout.decode().strip().splitlines()
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def child_main(handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """The entry of a child process: ``--child CONFIG_JSON`` in, one JSON line out."""
    if len(sys.argv) != 3 or sys.argv[1] != "--child":
        raise SystemExit(f"usage: python -m {sys.argv[0]} --child CONFIG_JSON (harness only)")
    result = handler(json.loads(sys.argv[2]))
    print(json.dumps(result), flush=True)
