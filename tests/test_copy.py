"""Copies of the template, made as `acontext create` makes them: they lock, run and pass their
checks.

Each test makes a copy with a virtual environment of its own and runs uv there, so they are left
out of the default run: `uv run pytest -m copy` runs them, as `.ci/run` does. uv runs offline: the
template's own install put every locked package in uv's cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.acontext_create import acontext_create

pytestmark = pytest.mark.copy

ROOT = Path(__file__).resolve().parents[1]


def uv(copy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``uv ARGS`` in the copy, outside this project's virtual environment."""
    program = os.environ.get("UV") or shutil.which("uv")
    assert program, "uv runs the tests, so it is on PATH or in $UV"
    env = {name: value for name, value in os.environ.items() if name != "VIRTUAL_ENV"}
    return subprocess.run(
        [program, *args],
        cwd=copy,
        env={**env, "UV_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def passes(copy: Path, *command: str) -> str:
    run = uv(copy, "run", *command)
    assert run.returncode == 0, f"uv run {' '.join(command)}:\n{run.stdout}{run.stderr}"
    return run.stdout


def test_a_copy_that_acontext_create_made_locks_runs_and_passes_its_tests(tmp_path: Path) -> None:
    copy = acontext_create(ROOT, tmp_path / "my-agent")
    assert "\nname = 'my_agent'\n" in (copy / "pyproject.toml").read_text()
    passes(copy, "--no-project", "--python", ">=3.11", "python", ".ci/lock_after_rename.py")
    assert '\nname = "my-agent"\n' in (copy / "uv.lock").read_text()
    synced = uv(copy, "sync", "--locked")
    assert synced.returncode == 0, synced.stderr
    assert passes(copy, "agent", "--help").startswith("usage: agent ")
    default_tag = (
        "from openai_basic.settings import load_settings\n"
        "print(load_settings({}, require_openai=False).session_tag)"
    )
    assert passes(copy, "python", "-c", default_tag) == "my_agent\n"
    passes(copy, "pytest", "-x", "-q", "tests/test_session_tag.py")
