"""What the real ``acontext create my-agent`` does to the template, for the copy tests.

The CLI copies the template's folder whole. The one file it changes is ``pyproject.toml``, which it
re-marshals with go-toml v2: ``[project].name`` lowercased with every character outside
``[a-z0-9_]`` replaced by ``_``, comments dropped, keys and tables sorted, strings single-quoted,
arrays on one line, and empty parent tables (``[tool]``, ``[tool.hatch]``) written out.
``uv.lock`` is copied unchanged, so it still names the template.
"""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def acontext_create(template: Path, target: Path) -> Path:
    """Copy ``template`` to ``target`` and name the project after the folder, as the CLI does.

    What ``.gitignore`` lists (a virtual environment, caches, ``.env``) is no part of the template,
    and neither is ``.git``.
    """
    ignored = [line.rstrip("/") for line in (template / ".gitignore").read_text().splitlines()]
    patterns = [".git", *(pattern for pattern in ignored if pattern and pattern[0] != "#")]
    shutil.copytree(template, target, ignore=shutil.ignore_patterns(*patterns))
    pyproject = target / "pyproject.toml"
    pyproject.write_text(rewrite_pyproject(pyproject.read_text(), target.name))
    return target


def rewrite_pyproject(text: str, name: str) -> str:
    data = tomllib.loads(text)
    data["project"]["name"] = re.sub(r"[^a-z0-9_]", "_", name.lower())
    rewritten = marshal(data)
    assert tomllib.loads(rewritten) == data, "the rewrite must keep every value"
    return rewritten


def marshal(document: dict[str, Any]) -> str:
    """The document as go-toml v2 writes it: a table's keys, then its tables, each sorted."""
    tables = list(_tables((), document))
    lines: list[str] = []
    for i, (path, keys) in enumerate(tables):
        if path:
            lines.append(f"[{'.'.join(_key(part) for part in path)}]")
        lines.extend(f"{_key(key)} = {_value(value)}" for key, value in keys)
        if keys and i < len(tables) - 1:
            lines.append("")
    return "\n".join(lines) + "\n"


def _tables(
    path: tuple[str, ...], table: dict[str, Any]
) -> list[tuple[tuple[str, ...], list[tuple[str, Any]]]]:
    keys = [(key, value) for key, value in sorted(table.items()) if not isinstance(value, dict)]
    found = [(path, keys)]
    for key, value in sorted(table.items()):
        if isinstance(value, dict):
            found.extend(_tables((*path, key), value))
    return found


def _key(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list) and not any(isinstance(item, dict) for item in value):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    raise TypeError(f"the copy tests do not write {value!r} yet: teach marshal() how go-toml does")


def _string(text: str) -> str:
    """Single-quoted (a literal string) when it can be; otherwise a basic string, as JSON's."""
    if "'" in text or any(ord(char) < 32 or ord(char) == 127 for char in text):
        return json.dumps(text, ensure_ascii=False)
    return f"'{text}'"
