"""docs/library.md's example runs as written, against the scripted model."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.fakes.openai_server import FakeOpenAI, text, tool_calls

LIBRARY = Path(__file__).resolve().parents[1] / "docs" / "library.md"


def library_example() -> str:
    match = re.search(r"(?ms)^```python\n(.*?)^```$", LIBRARY.read_text())
    assert match, "docs/library.md shows the example"
    return match.group(1)


def test_the_library_example_runs(model: FakeOpenAI, tmp_path: Path) -> None:
    model.script(tool_calls(("add", '{"a": 2, "b": 40}')), text("2 + 40 = 42"))
    script = tmp_path / "example.py"
    script.write_text(library_example())
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env={"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": model.base_url, "PATH": ""},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2 + 40 = 42 Usage(")
    assert model.requests[1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": model.requests[1]["messages"][-2]["tool_calls"][0]["id"],
        "content": "42",
    }
