"""Targets 1 and 2: how fast the ``agent`` script answers, starts, and replies.

Every figure here is the wall time of a real subprocess of ``.venv/bin/agent`` (or of the original
pattern's script), spawned fresh each time, against local fakes of both services.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    AGENT,
    PYTHON,
    ROOT,
    Plan,
    Row,
    agent_env,
    clean_environ,
    finish,
    median,
    repeat,
    run_to_end,
    scratch_dir,
    wait_for_output,
)
from tests.fakes.acontext_server import start_fake_acontext
from tests.fakes.openai_server import start_fake_openai, text

ORIGINAL = ROOT / "benchmarks" / "original_pattern.py"
PROMPT_MARKER = b"you> "
END_OF_INPUT = b"\x04"  # Ctrl-D at the start of a line
CLI_RATIO_TARGET = 0.1
START_RATIO_TARGET = 0.25
ONE_SHOT_VS_ORIGINAL_TARGET = 0.5
ONE_SHOT_VS_OPENAI_TARGET = 1.5

# Runs the CLI's --help / usage-error path in-process, then names the SDK modules it loaded.
_MODULES_PROBE = """
import contextlib, io, json, sys
from openai_basic.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
sdk = sorted(m for m in sys.modules if m.split(".")[0] in ("openai", "acontext"))
print(json.dumps({"sdk": sdk, "total": len(sys.modules)}))
"""
_SDKS_PROBE = """
import json, sys
import openai, acontext
sdk = sorted(m for m in sys.modules if m.split(".")[0] in ("openai", "acontext"))
print(json.dumps({"sdk": sdk, "total": len(sys.modules)}))
"""


def measure(plan: Plan) -> list[Row]:
    return [*measure_cli(plan), *measure_starts(plan)]


# -- target 1: --help and a usage error --------------------------------------------------------


def measure_cli(plan: Plan) -> list[Row]:
    with scratch_dir() as cwd:
        env = clean_environ()

        def agent(argv: list[str], code: int) -> float:
            return run_to_end([str(AGENT), *argv], env=env, cwd=cwd, expect_code=code)

        def import_sdks() -> float:
            return run_to_end([PYTHON, "-c", "import openai, acontext"], env=env, cwd=cwd)

        agent(["--help"], 0)  # warm-up (page cache), not counted
        import_sdks()
        help_runs = repeat(plan.cli_runs, lambda: agent(["--help"], 0))
        usage_runs = repeat(plan.cli_runs, lambda: agent(["--frobnicate"], 2))
        import_runs = repeat(plan.import_runs, import_sdks)
        loaded = {argv: _sdk_modules_loaded(argv, env, cwd) for argv in ("--help", "--frobnicate")}
        everything = _sdk_modules_loaded(None, env, cwd)

    baseline = median(import_runs)
    rows = [
        _cli_row("agent --help", help_runs, import_runs),
        _cli_row("agent --frobnicate (usage error, exit 2)", usage_runs, import_runs),
    ]
    found = sorted({m for mods in loaded.values() for m in mods["sdk"]})
    rows.append(
        Row(
            name="SDK modules in sys.modules after --help / --frobnicate",
            ours=", ".join(found) if found else "none",
            baseline=f"{len(everything['sdk'])} modules",
            baseline_name="import openai, acontext",
            target="none",
            passed=not found,
            unit="",
            note=(
                f"cli.main(['--help']) loads {loaded['--help']['total']} modules in all, "
                f"['--frobnicate'] {loaded['--frobnicate']['total']}; "
                f"baseline import time {baseline * 1000:.0f} ms"
            ),
            samples={"loaded": loaded},
        )
    )
    return rows


def _cli_row(name: str, runs: list[float], import_runs: list[float]) -> Row:
    ours, baseline = median(runs), median(import_runs)
    return Row(
        name=name,
        ours=ours,
        baseline=baseline,
        baseline_name='python -c "import openai, acontext"',
        target=f"<= {CLI_RATIO_TARGET:g} x",
        passed=ours <= CLI_RATIO_TARGET * baseline,
        samples={"ours": runs, "baseline": import_runs},
    )


def _sdk_modules_loaded(argv: str | None, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """The SDK modules a fresh process holds after ``cli.main([argv])`` (None: after importing
    both SDKs, for comparison)."""
    command = [PYTHON, "-c", _MODULES_PROBE, argv] if argv else [PYTHON, "-c", _SDKS_PROBE]
    done = subprocess.run(
        command,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- target 2: interactive start and one-shot time to first reply ------------------------------


def measure_starts(plan: Plan) -> list[Row]:
    with (
        start_fake_openai() as model,
        start_fake_acontext() as acontext,
        scratch_dir() as cwd,
    ):
        env = agent_env(
            openai_url=model.base_url,
            acontext_url=acontext.base_url,
            acontext_key=acontext.api_key,
            state_dir=cwd / "state",
        )
        agent_prompt = [str(AGENT)]
        original_prompt = [PYTHON, "-P", str(ORIGINAL), "interactive"]
        time_to_prompt(agent_prompt, env, cwd)  # warm-up, not counted
        time_to_prompt(original_prompt, env, cwd)
        ours_start, original_start = [], []
        for _ in range(max(1, plan.start_runs)):  # interleaved, so drift hits both alike
            ours_start.append(time_to_prompt(agent_prompt, env, cwd))
            original_start.append(time_to_prompt(original_prompt, env, cwd))

        def reply(command: list[str]) -> float:
            model.script(text("hello", delay=plan.model_delay))
            return time_to_first_reply(command, env, cwd)

        ours_reply, original_reply = [], []
        for _ in range(max(1, plan.one_shot_runs)):
            ours_reply.append(reply([str(AGENT), "hi"]))
            original_reply.append(reply([PYTHON, "-P", str(ORIGINAL), "one-shot", "hi"]))
        bare = repeat(plan.import_runs, lambda: run_to_end([PYTHON, "-c", "pass"], env=env))
        openai_only = repeat(
            plan.import_runs, lambda: run_to_end([PYTHON, "-c", "import openai"], env=env)
        )

    delay = plan.model_delay
    ours_over = median(ours_reply) - delay
    original_over = median(original_reply) - delay
    floor = delay + median(bare)
    return [
        Row(
            name="interactive: spawn -> 'you> ' prompt",
            ours=median(ours_start),
            baseline=median(original_start),
            baseline_name="original: import both SDKs, then prompt",
            target=f"<= {START_RATIO_TARGET:g} x",
            passed=median(ours_start) <= START_RATIO_TARGET * median(original_start),
            samples={"ours": ours_start, "baseline": original_start},
        ),
        Row(
            name=f"one-shot: reply overhead (TTFR - {delay:g} s model)",
            ours=ours_over,
            baseline=original_over,
            baseline_name="original pattern one-shot",
            target=f"<= {ONE_SHOT_VS_ORIGINAL_TARGET:g} x",
            passed=ours_over <= ONE_SHOT_VS_ORIGINAL_TARGET * original_over,
            note=(
                f"TTFR medians: ours {median(ours_reply):.2f} s, original "
                f"{median(original_reply):.2f} s, floor (model + python -c pass) {floor:.2f} s"
            ),
            samples={"ours_ttfr": ours_reply, "original_ttfr": original_reply, "bare": bare},
        ),
        Row(
            name="one-shot: reply overhead vs importing openai alone",
            ours=ours_over,
            baseline=median(openai_only),
            baseline_name='python -c "import openai"',
            target=f"<= {ONE_SHOT_VS_OPENAI_TARGET:g} x",
            passed=ours_over <= ONE_SHOT_VS_OPENAI_TARGET * median(openai_only),
            samples={"ours_ttfr": ours_reply, "import_openai": openai_only},
        ),
    ]


def time_to_prompt(command: list[str], env: dict[str, str], cwd: Path) -> float:
    """Spawn with stdin a pseudo-terminal (so the chat is interactive), stdout and stderr pipes.

    The prompt then goes to stderr. Once it shows, Ctrl-D (end of input) ends the chat before
    any session is opened.
    """
    primary, secondary = os.openpty()
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd
    )
    os.close(secondary)
    try:
        elapsed, _ = wait_for_output(
            process, stream="stderr", marker=PROMPT_MARKER, started=started, timeout=30
        )
        os.write(primary, END_OF_INPUT)
        finish(process, timeout=15)
        return elapsed
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        os.close(primary)


def time_to_first_reply(
    command: list[str], env: dict[str, str], cwd: Path, *, reply: str = "hello"
) -> float:
    """Seconds from spawn to the first line on stdout (which must be ``reply``); then the run
    ends by itself (bounded)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    try:
        elapsed, shown = wait_for_output(
            process, stream="stdout", marker=b"\n", started=started, timeout=60
        )
        if shown.decode().splitlines()[0] != reply:
            raise RuntimeError(f"{command[-2:]} printed {shown[:200]!r}, not the reply {reply!r}")
        finish(process, timeout=60)
        if process.returncode != 0:
            raise RuntimeError(f"{command[-2:]} exited {process.returncode}")
        return elapsed
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
