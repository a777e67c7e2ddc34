"""A learning space's skills: listed, read and pulled into files (``agent skills``, ``/skills``).

What a session learns goes into skills; ``learning`` attaches sessions and recalls skills, this
module reads them. An unknown space is said as such, and a pulled file never lands outside its
skill's folder, whatever the server says.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from openai_basic.acontext_api import AcontextApi, load_sdk
from openai_basic.errors import ConfigError, ServiceError, SpaceNotFoundError
from openai_basic.journal import JOURNAL_FILE, Journal
from openai_basic.settings import Settings

if TYPE_CHECKING:
    from acontext import AcontextClient

NO_SPACE = (
    "no learning space yet: run `agent --learn` once to make one, or set AGENT_LEARNING_SPACE"
)


@dataclass(frozen=True)
class SkillInfo:
    """A skill of a learning space, as listed."""

    id: str
    name: str
    description: str
    files: tuple[str, ...]
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, skill: Any) -> SkillInfo:
        """From the SDK's ``Skill``."""
        files = tuple(str(entry.path) for entry in skill.file_index)
        return cls(
            skill.id, skill.name, skill.description, files, skill.created_at, skill.updated_at
        )


@dataclass(frozen=True)
class PulledSkill:
    name: str
    folder: Path
    files: tuple[str, ...]


def command_space(settings: Settings, user: str | None) -> str:
    """The space ``agent skills`` reads: the setting, or the one remembered; never made."""
    known = known_space(settings, user)
    if known is None:
        raise ConfigError(NO_SPACE)
    return known


def known_space(settings: Settings, user: str | None) -> str | None:
    """The setting, or the space remembered for the user; None when there is none yet."""
    if settings.learning_space:
        return settings.learning_space
    if not (settings.state_dir / JOURNAL_FILE).exists():  # a read needs no state folder made
        return None
    journal = Journal(settings.state_dir)
    try:
        return journal.remembered_space(user or "")
    finally:
        journal.close()


def known_skills(settings: Settings, user: str | None) -> tuple[str, list[SkillInfo]] | None:
    """The known space and its skills (``/skills`` before the session); None without one."""
    space_id = known_space(settings, user)
    if space_id is None:
        return None
    with AcontextApi(settings) as api:
        return space_id, list_skills(api, space_id)


def list_skills(api: AcontextApi, space_id: str) -> list[SkillInfo]:
    with in_space(api, space_id):
        return list(listed_skills(api.client, space_id))


def listed_skills(client: AcontextClient, space_id: str) -> tuple[SkillInfo, ...]:
    # the SDK's annotation ``list[Skill]`` sits in a class with a method named ``list``, which
    # mypy reads instead of the builtin
    found: Any = client.learning_spaces.list_skills(space_id)
    return tuple(SkillInfo.of(skill) for skill in found)


def skill_text(api: AcontextApi, space_id: str, name: str) -> str:
    """A skill's ``SKILL.md``, found by name."""
    skill = _named(list_skills(api, space_id), name, space_id)
    with in_space(api, space_id):
        found = api.client.skills.get_file(skill_id=skill.id, file_path="SKILL.md")
    return found.content.raw if found.content is not None else ""


def pull_skills(
    api: AcontextApi, space_id: str, folder: Path, *, name: str | None = None
) -> list[PulledSkill]:
    """Write each skill's files (or one skill's) under ``folder/<name>/``. A path that would
    leave that folder is refused, whatever the server says."""
    skills = list_skills(api, space_id)
    if name is not None:
        skills = [_named(skills, name, space_id)]
    pulled = []
    for skill in skills:
        target = folder / _folder_name(skill.name)
        for path in skill.files:
            with in_space(api, space_id):
                found = api.client.skills.get_file(skill_id=skill.id, file_path=path)
            write_skill_file(target, path, _file_bytes(found))
        pulled.append(PulledSkill(skill.name, target, skill.files))
    return pulled


def _named(skills: list[SkillInfo], name: str, space_id: str) -> SkillInfo:
    for skill in skills:
        if skill.name == name:
            return skill
    names = ", ".join(skill.name for skill in skills) or "none"
    raise ConfigError(f"no skill {name!r} in learning space {space_id} (its skills: {names})")


def _file_bytes(found: Any) -> bytes:
    if found.content is not None:
        return str(found.content.raw).encode("utf-8", "surrogateescape")
    import httpx  # a binary file comes as a short-lived link

    answer = httpx.get(found.url, timeout=30.0)
    answer.raise_for_status()
    return answer.content


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _folder_name(name: str) -> str:
    cleaned = _UNSAFE_NAME.sub("-", name).strip(".-")
    return cleaned or "skill"


def write_skill_file(folder: Path, path: str, data: bytes) -> None:
    """Write one file inside ``folder``, whole or not at all."""
    relative = PurePosixPath(path)
    target = folder.joinpath(*relative.parts)
    if (
        not path
        or "\\" in path
        or relative.is_absolute()
        or any(part in ("", "..") for part in relative.parts)
        or not target.resolve().is_relative_to(folder.resolve())
    ):
        raise ServiceError(
            "Acontext", f"refused the skill file path {path!r}: it leaves its folder"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror}") from exc


@contextlib.contextmanager
def in_space(api: AcontextApi, space_id: str) -> Iterator[None]:
    """The SDK's errors as this package's; an unknown space is said as such."""
    errors = load_sdk().errors
    with api.translate():
        try:
            yield
        except errors.APIError as exc:
            if exc.status_code in (400, 404) and exc.message in (
                "learning space not found",
                "parameter error",
            ):
                raise SpaceNotFoundError(space_id) from exc
            raise
