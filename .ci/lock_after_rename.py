"""Lock a copy again when `acontext create` renamed the project and nothing else changed.

`acontext create` copies uv.lock unchanged, so a fresh copy's lock still names the template and
`uv sync --locked` refuses it. Locking again then changes only the project's own entry. Any other
difference means pyproject.toml changed without `uv lock`: the old lock is put back, and CI fails.
"""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any


def by_name(lock: str) -> dict[str, Any]:
    document = tomllib.loads(lock)
    return {**document, "package": {package["name"]: package for package in document["package"]}}


def main() -> int:
    pyproject = tomllib.loads(Path("pyproject.toml").read_text())
    project = re.sub(r"[-_.]+", "-", pyproject["project"]["name"]).lower()
    before = Path("uv.lock").read_text()
    old = by_name(before)
    (locked,) = [name for name, p in old["package"].items() if p["source"] == {"editable": "."}]
    if locked == project:
        return 0  # not renamed: `uv sync --locked` judges the lock
    subprocess.run([os.environ.get("UV", "uv"), "lock", "--quiet"], check=True)
    old["package"][project] = {**old["package"].pop(locked), "name": project}
    if by_name(Path("uv.lock").read_text()) != old:
        Path("uv.lock").write_text(before)
        print(
            f"uv.lock is out of date beyond the project's new name ({locked} -> {project}): "
            "run `uv lock`, check what changed, and commit it",
            file=sys.stderr,
        )
        return 1
    print(f"uv.lock locked again for the project's new name ({locked} -> {project}): commit it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
