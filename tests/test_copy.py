"""Copies of the template, made as `acontext create` makes them: they lock, run and pass their
checks, also after the README's steps change their tools.

Each test makes a copy with a virtual environment of its own and runs uv there, so they are left
out of the default run: `uv run pytest -m copy` runs them, as `.ci/run` does. A copy changed by a
README step runs its own `.ci/run`. uv runs offline: the template's own install put every locked
package in uv's cache.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.acontext_create import acontext_create

# Set for a copy's own CI, which these tests run: its copy tests would copy it again.
NESTED = "TEMPLATE_COPY_CI"
pytestmark = [
    pytest.mark.copy,
    pytest.mark.skipif(bool(os.environ.get(NESTED)), reason="a copy's own CI copies nothing"),
]

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_TOOLS = Path("src/openai_basic/sample_tools.py")


def uv_program() -> str:
    program = os.environ.get("UV") or shutil.which("uv")
    assert program, "uv runs the tests, so it is on PATH or in $UV"
    return program


def outside_this_project() -> dict[str, str]:
    """The environment for a command in a copy: not this project's virtual environment, and uv
    offline (the template's own install put every locked package in uv's cache)."""
    env = {name: value for name, value in os.environ.items() if name != "VIRTUAL_ENV"}
    return {**env, "UV_OFFLINE": "1"}


def uv(copy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``uv ARGS`` in the copy."""
    return subprocess.run(
        [uv_program(), *args],
        cwd=copy,
        env=outside_this_project(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def passes(copy: Path, *command: str) -> str:
    run = uv(copy, "run", *command)
    assert run.returncode == 0, f"uv run {' '.join(command)}:\n{run.stdout}{run.stderr}"
    return run.stdout


def readme_python(heading: str) -> str:
    """The first Python block of the README section with this heading, exactly as written."""
    _, found, section = (ROOT / "README.md").read_text().partition(f"\n{heading}\n")
    assert found, f"the README has no {heading!r}"
    level = len(heading.split()[0])  # the section ends at the next heading of its level or above
    section = re.split(rf"\n#{{1,{level}}} ", section, maxsplit=1)[0]
    blocks = re.findall(r"(?ms)^```python\n(.*?)^```$", section)
    assert blocks, f"the README's {heading!r} has no Python block"
    return str(blocks[0])


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


def add_a_tool(copy: Path) -> None:
    """The README's block goes where the TOOLS line was: the new function, then TOOLS with it."""
    tools = copy / SAMPLE_TOOLS
    added = readme_python("## Adding a tool")
    tools.write_text(re.sub(r"(?m)^TOOLS\b.*\n", added, tools.read_text()))


def replace_the_tools(copy: Path) -> None:
    (copy / SAMPLE_TOOLS).write_text(readme_python("### Replacing the sample tools"))


STEPS = {
    "add a tool": (add_a_tool, "get_weather book_flight get_exchange_rate"),
    "replace the tools": (replace_the_tools, "get_time"),
}


@pytest.fixture(scope="module", params=STEPS)
def changed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy whose tools were changed by one of the README's steps, exactly as written."""
    copy = acontext_create(ROOT, tmp_path_factory.mktemp("step") / "my-agent")
    step, offered = STEPS[request.param]
    step(copy)
    names = "from openai_basic.sample_tools import TOOLS; print(*(t.__name__ for t in TOOLS))"
    assert passes(copy, "python", "-c", names) == f"{offered}\n"
    return copy


def test_the_copy_passes_its_own_ci_after_the_readme_step(changed: Path) -> None:
    """Its `.ci/run`, as CI runs it on a clean clone: the lock, the linter, the formatter, the type
    checker and every test (its copy tests skip: they would copy it again)."""
    env = outside_this_project()
    env["PATH"] = f"{Path(uv_program()).parent}{os.pathsep}{env.get('PATH', '')}"
    run = subprocess.run(
        ["bash", ".ci/run"],
        cwd=changed,
        env={**env, NESTED: "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, f"{run.stdout[-6000:]}{run.stderr[-6000:]}"
    assert re.search(r"\b\d+ passed in ", run.stdout), run.stdout[-2000:]
