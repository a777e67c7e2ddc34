"""The commands in README.md and docs/ as written: each `uv run agent` line and each row of the
README's command table parses, each `uv run pytest` line names markers that exist, each benchmark
line parses, and any other
command is a setup step the README explains and these offline tests cannot run (so a new one is a
choice, not an accident)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

from openai_basic.cli import COMMAND_HELP, build_command_parser, build_parser
from tests.benchmarks import __main__ as benchmarks

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SEPARATORS = ("|", "&&", "||", ";")
# the network, Docker or the real acontext CLI; tests/acontext_create.py does what `create` does
NOT_RUN_HERE = (
    "pip install uv",
    "curl -fsSL https://install.acontext.io | sh",
    "mkdir acontext-server && cd acontext-server",
    "acontext server up",
    "acontext create my-agent --template-path python/openai-basic",
    "cd my-agent",
    "cp .env.example .env",
    "printf 'first\\nsecond\\n'",
)


def commands(line: str) -> list[tuple[str, ...]]:
    """The commands of a shell line, each as its words, without the comment."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    found: list[tuple[str, ...]] = [()]
    for word in lexer:
        if word in SEPARATORS:
            found.append(())
        else:
            found[-1] += (word,)
    return [command for command in found if command]


def shell_lines() -> list[tuple[str, str]]:
    """Every line of every bash block, with the page it is on."""
    return [
        (page.relative_to(ROOT).as_posix(), line)
        for page in PAGES
        for block in re.findall(r"(?ms)^```bash\n(.*?)^```$", page.read_text())
        for line in block.splitlines()
        if line.strip()
    ]


LINES = shell_lines()
KNOWN = {command for line in NOT_RUN_HERE for command in commands(line)}


def test_the_readme_has_shell_lines_to_check() -> None:
    assert sum(page == "README.md" for page, _ in LINES) >= 10


@pytest.mark.parametrize("page, line", LINES)
def test_each_shell_line_is_checked_or_a_known_setup_step(page: str, line: str) -> None:
    for command in commands(line):
        if command[:3] == ("uv", "run", "agent"):
            assert_agent_parses(list(command[3:]))
        elif command[:3] == ("uv", "run", "pytest"):
            assert_markers_exist(list(command[3:]))
        elif command[:5] == ("uv", "run", "python", "-m", "tests.benchmarks"):
            benchmarks.build_parser().parse_args(list(command[5:]))
        else:
            assert command in KNOWN, f"{page}: a command no test checks: {' '.join(command)}"


@pytest.mark.parametrize(
    "row", re.findall(r"(?m)^\| `agent ([^`]*)` \|", (ROOT / "README.md").read_text())
)
def test_each_command_in_the_readme_table_parses(row: str) -> None:
    assert_agent_parses(shlex.split(row))


def assert_agent_parses(argv: list[str]) -> None:
    command = argv[0] if argv and argv[0] in COMMAND_HELP else None
    parser = build_command_parser(command) if command else build_parser()
    try:
        parser.parse_args(argv[1:] if command else argv)
    except SystemExit as usage_error:
        raise AssertionError(f"`agent {' '.join(argv)}` is a usage error") from usage_error


def assert_markers_exist(argv: list[str]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = pyproject["tool"]["pytest"]["ini_options"]["markers"]
    markers = {marker.partition(":")[0] for marker in declared}
    named = [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == "-m"]
    assert set(named) <= markers, f"`pytest {' '.join(argv)}` names an undeclared marker"


def test_the_env_file_the_readme_copies_is_there() -> None:
    assert ("cp", ".env.example", ".env") in KNOWN
    assert (ROOT / ".env.example").is_file()
