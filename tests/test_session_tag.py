"""Each agent made from the template tags its sessions with its own name and lists only those."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from openai_basic.acontext_api import AcontextApi
from openai_basic.mirror import AcontextMirror
from openai_basic.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_the_tag_is_the_projects_own_name_unless_set(tmp_path: Path) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert load_settings({"OPENAI_API_KEY": "k"}, cwd=tmp_path).session_tag == project["name"]
    chosen = load_settings({"OPENAI_API_KEY": "k", "AGENT_SESSION_TAG": "support"}, cwd=tmp_path)
    assert chosen.session_tag == "support"


def test_sessions_lists_only_the_sessions_made_with_its_tag(settings: Settings) -> None:
    made: dict[str, str] = {}
    for tag in ("trip-planner", "support"):
        tagged = dataclasses.replace(settings, session_tag=tag)
        mirror = AcontextMirror(tagged)
        made[tag] = mirror.create(model="m", system_prompt="Be kind.").session_id
        mirror.append({"role": "user", "content": f"hi {tag}"})
        assert mirror.sync(timeout=10) == 0
        mirror.close()
    for tag, session_id in made.items():
        with AcontextApi(dataclasses.replace(settings, session_tag=tag)) as api:
            assert [(s.id, s.first_message) for s in api.sessions(limit=10)] == [
                (session_id, f"hi {tag}")
            ]
