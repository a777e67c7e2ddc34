"""Settings come from the environment and ./.env, the environment winning."""

from __future__ import annotations

from pathlib import Path

import pytest

from openai_basic.errors import ConfigError
from openai_basic.settings import (
    DEFAULT_ACONTEXT_API_KEY,
    DEFAULT_ACONTEXT_BASE_URL,
    DEFAULT_MODEL,
    PLACEHOLDER_OPENAI_API_KEY,
    READERS,
    Settings,
    load_settings,
)


def test_defaults_need_only_the_openai_key(tmp_path: Path) -> None:
    settings = load_settings({"OPENAI_API_KEY": "sk-1"}, cwd=tmp_path)
    assert settings.openai_api_key == "sk-1"
    assert settings.openai_base_url is None
    assert settings.openai_model == DEFAULT_MODEL == "gpt-4o-mini"
    assert settings.acontext_api_key == DEFAULT_ACONTEXT_API_KEY
    assert settings.acontext_base_url == DEFAULT_ACONTEXT_BASE_URL == "http://localhost:8029/api/v1"
    assert settings.max_iterations == 10


def test_dotenv_in_the_working_directory_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "OPENAI_API_KEY=sk-from-file\nOPENAI_MODEL=file-model\nAGENT_MAX_ITERATIONS=3\n"
    )
    settings = load_settings({"OPENAI_MODEL": "env-model"}, cwd=tmp_path)
    assert settings.openai_api_key == "sk-from-file"
    assert settings.openai_model == "env-model"
    assert settings.max_iterations == 3


@pytest.mark.parametrize("key", [None, "", "   "])
def test_a_missing_or_empty_openai_key_is_a_clear_error(tmp_path: Path, key: str | None) -> None:
    environ = {} if key is None else {"OPENAI_API_KEY": key}
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        load_settings(environ, cwd=tmp_path)


def test_the_placeholder_key_of_a_copied_env_example_is_named(tmp_path: Path) -> None:
    example = Path(__file__).parents[1] / ".env.example"
    (tmp_path / ".env").write_text(example.read_text())
    with pytest.raises(ConfigError) as raised:
        load_settings({}, cwd=tmp_path)
    assert str(raised.value) == (
        "OPENAI_API_KEY is the placeholder sk-... from .env.example: put your key in .env"
    )
    assert f"OPENAI_API_KEY={PLACEHOLDER_OPENAI_API_KEY}\n" in example.read_text()


def test_the_placeholder_key_is_no_key(tmp_path: Path) -> None:
    placeholder = {"OPENAI_API_KEY": PLACEHOLDER_OPENAI_API_KEY}
    local = load_settings(
        {**placeholder, "OPENAI_BASE_URL": "http://localhost:11434/v1"}, cwd=tmp_path
    )
    assert local.openai_api_key == "not-needed"  # a local server is not sent the placeholder
    commands = load_settings(placeholder, cwd=tmp_path, require_openai=False)
    assert commands.openai_api_key == PLACEHOLDER_OPENAI_API_KEY  # for the doctor to flag


def test_a_local_openai_compatible_server_needs_no_key(tmp_path: Path) -> None:
    settings = load_settings({"OPENAI_BASE_URL": "http://localhost:11434/v1"}, cwd=tmp_path)
    assert settings.openai_base_url == "http://localhost:11434/v1"
    assert settings.openai_api_key


@pytest.mark.parametrize("raw", ["0", "-2", "ten"])
def test_a_bad_iteration_limit_is_a_clear_error(tmp_path: Path, raw: str) -> None:
    with pytest.raises(ConfigError, match="AGENT_MAX_ITERATIONS must be a whole number"):
        load_settings({"OPENAI_API_KEY": "k", "AGENT_MAX_ITERATIONS": raw}, cwd=tmp_path)


def test_a_dotenv_that_is_not_utf8_is_read_with_a_note(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"OPENAI_API_KEY=sk-1\nAGENT_SYSTEM_PROMPT=R\xe9ponds\n")
    notes: list[str] = []
    settings = load_settings({}, cwd=tmp_path, on_note=notes.append)
    assert (settings.openai_api_key, settings.system_prompt) == ("sk-1", "R\ufffdponds")
    assert notes == [
        f"note: bytes in {tmp_path / '.env'} that are not UTF-8 were replaced with \ufffd"
    ]


@pytest.mark.parametrize(
    "name, key", [("OPENAI_API_KEY", "sk-tést"), ("ACONTEXT_API_KEY", "sk-ac-\x01key")]
)
def test_a_key_that_cannot_go_in_a_header_is_a_clear_error(
    tmp_path: Path, name: str, key: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"OPENAI_API_KEY": "sk-1", name: key}, cwd=tmp_path)
    assert str(raised.value) == (
        f"{name} contains characters that cannot be sent in an HTTP header "
        "(non-ASCII or control characters); check .env and the environment"
    )


@pytest.mark.parametrize("raw", ["inf", "nan", "Infinity"])
@pytest.mark.parametrize(
    "name", ["AGENT_TOOL_TIMEOUT_SECONDS", "AGENT_TASK_WAIT_SECONDS", "AGENT_SYNC_WAIT_SECONDS"]
)
def test_seconds_that_never_end_are_a_clear_error(tmp_path: Path, name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be a number of seconds, not '{raw}'"):
        load_settings({"OPENAI_API_KEY": "k", name: raw}, cwd=tmp_path)


@pytest.mark.parametrize(
    "raw, strict",
    [
        *[("true", True), ("Yes", True), ("on", True), ("1", True), ("", True)],
        *[("false", False), ("NO", False), ("off", False), ("0", False)],
    ],
)
def test_strict_tools_is_read_as_a_flag(tmp_path: Path, raw: str, strict: bool) -> None:
    settings = load_settings({"OPENAI_API_KEY": "k", "AGENT_STRICT_TOOLS": raw}, cwd=tmp_path)
    assert settings.strict_tools is strict


def test_a_strict_tools_value_that_is_no_flag_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"OPENAI_API_KEY": "k", "AGENT_STRICT_TOOLS": "banana"}, cwd=tmp_path)
    assert str(raised.value) == (
        "AGENT_STRICT_TOOLS must be true or false (or yes/no, on/off, 1/0), not 'banana'"
    )


def test_env_example_and_the_readme_list_every_setting_with_its_default(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    names = ["OPENAI_API_KEY", "OPENAI_BASE_URL", "AGENT_STATE_DIR", *READERS]
    example = (root / ".env.example").read_text()
    readme = (root / "README.md").read_text()
    assert [name for name in names if f"\n{name}=" not in example] == []
    assert [name for name in names if f"| `{name}` |" not in readme] == []
    (tmp_path / ".env").write_text(example)
    from_example = load_settings({"OPENAI_API_KEY": "k"}, cwd=tmp_path)
    assert from_example == Settings(
        openai_api_key="k", openai_base_url=None, state_dir=tmp_path / ".agent"
    )
