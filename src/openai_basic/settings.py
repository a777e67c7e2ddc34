"""Settings: read once at the CLI edge into a frozen object and passed down."""

from __future__ import annotations

import functools
import io
import math
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values

from openai_basic.errors import ConfigError
from openai_basic.text import decode, valid

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_ACONTEXT_API_KEY = "sk-ac-your-root-api-bearer-token"
DEFAULT_ACONTEXT_BASE_URL = "http://localhost:8029/api/v1"
PLACEHOLDER_OPENAI_API_KEY = "sk-..."  # what .env.example holds until the user puts a key there
PLACEHOLDER_KEY_FIX = (
    f"OPENAI_API_KEY is the placeholder {PLACEHOLDER_OPENAI_API_KEY} from .env.example: "
    "put your key in .env"
)
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant. Use the tools when they help, and answer concisely."
)
TEMPLATE_NAME = "openai-basic"
ApprovalPolicy = Literal["ask", "always", "never"]
APPROVAL_POLICIES: tuple[ApprovalPolicy, ...] = ("ask", "always", "never")


@functools.cache
def project_name() -> str:
    """The name of the installed project that provides this package, the default session tag.

    ``acontext create`` renames the project, so each copy tags its sessions with its own name.
    An editable install (what ``uv sync`` makes) lists no package files for
    ``packages_distributions()`` to find, so the project's console script is asked first.
    """
    package = __name__.partition(".")[0]
    for script in metadata.entry_points(group="console_scripts"):
        if script.module.partition(".")[0] == package and script.dist is not None:
            return script.dist.name
    found = metadata.packages_distributions().get(package)
    return found[0] if found else TEMPLATE_NAME


@dataclass(frozen=True)
class Settings:
    """Every setting and its default. ``load_settings`` reads them; the README's table explains
    them."""

    openai_api_key: str
    openai_base_url: str | None
    state_dir: Path
    openai_model: str = DEFAULT_MODEL
    acontext_api_key: str = DEFAULT_ACONTEXT_API_KEY
    acontext_base_url: str = DEFAULT_ACONTEXT_BASE_URL
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_iterations: int = 10
    task_wait_seconds: float = 120.0
    sync_wait_seconds: float = 10.0
    openai_max_retries: int = 2
    tool_timeout_seconds: float = 60.0
    tool_result_max_chars: int = 20_000
    context_tokens: int = 64_000
    strict_tools: bool = True
    approve_tools: ApprovalPolicy = "ask"  # for the tools that need approval
    session_tag: str = field(default_factory=project_name)
    learn: bool = False  # attach sessions to a learning space and recall its skills
    learning_space: str = ""  # a space id; empty: the one remembered in the state folder
    learn_wait_seconds: float = 60.0


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    cwd: Path | None = None,
    require_openai: bool = True,
    on_note: Callable[[str], None] = lambda note: None,
) -> Settings:
    """Merge ``.env`` from the working directory under the real environment (which wins).

    ``on_note`` hears what the user should know that is no error: bytes in ``.env`` that are
    not UTF-8, read as U+FFFD.
    """
    cwd = cwd or Path.cwd()
    values = {**_dotenv(cwd / ".env", on_note), **(os.environ if environ is None else environ)}

    def get(name: str) -> str:
        return valid(values.get(name) or "").strip()

    base_url = get("OPENAI_BASE_URL") or None
    return Settings(
        openai_api_key=_openai_key(get("OPENAI_API_KEY"), base_url, require_openai),
        openai_base_url=base_url,
        state_dir=cwd / (get("AGENT_STATE_DIR") or ".agent"),
        **{field: read(raw, name) for name, (field, read) in READERS.items() if (raw := get(name))},
    )


def _dotenv(path: Path, on_note: Callable[[str], None]) -> dict[str, str]:
    """The values in ``.env``, if there is one. A stray byte (a comment saved in Latin-1) should
    not stop the agent; one in a key is refused as a key next."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    text, replaced = decode(raw)
    if replaced:
        on_note(f"note: bytes in {path} that are not UTF-8 were replaced with \ufffd")
    return {k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v is not None}


def _openai_key(key: str, base_url: str | None, required: bool) -> str:
    """The key to send. The placeholder is no key: a local server is sent none, and OpenAI is
    not asked with it (``agent doctor``, which needs no key to start, flags it)."""
    placeholder = key == PLACEHOLDER_OPENAI_API_KEY
    if (not key or placeholder) and base_url is not None:
        return "not-needed"  # OpenAI-compatible local servers often need no key
    if placeholder and required:
        raise ConfigError(PLACEHOLDER_KEY_FIX)
    if not key and required:
        raise ConfigError(
            "OPENAI_API_KEY is not set: put it in .env (see .env.example) or the environment"
        )
    return _header_value(key, "OPENAI_API_KEY")


def _header_value(key: str, name: str) -> str:
    """A key goes in an HTTP header, which takes printable ASCII only; say so before a request."""
    if key.isascii() and key.isprintable():
        return key
    raise ConfigError(
        f"{name} contains characters that cannot be sent in an HTTP header "
        "(non-ASCII or control characters); check .env and the environment"
    )


def _text(raw: str, name: str) -> str:
    return raw


def _url(raw: str, name: str) -> str:
    return raw.rstrip("/")


def _space_id(raw: str, name: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ConfigError(f"{name} must be a learning space id (a UUID), not {raw!r}") from None


def _whole(raw: str, name: str, least: int = 1) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = least - 1
    if value < least:
        raise ConfigError(f"{name} must be a whole number of at least {least}, not {raw!r}")
    return value


def _seconds(raw: str, name: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < math.inf:  # float() also reads "inf" and "nan"
        raise ConfigError(f"{name} must be a number of seconds, not {raw!r}")
    return value


def _flag(raw: str, name: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false (or yes/no, on/off, 1/0), not {raw!r}")


def _approval_policy(raw: str, name: str) -> ApprovalPolicy:
    value = raw.lower()
    if value not in APPROVAL_POLICIES:
        raise ConfigError(f"{name} must be ask, always or never, not {raw!r}")
    return value


# The settings read one way: the Settings field each sets and how its text becomes a value.
# A setting that is not set, or set empty, keeps the field's default.
READERS: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "OPENAI_MODEL": ("openai_model", _text),
    "ACONTEXT_API_KEY": ("acontext_api_key", _header_value),
    "ACONTEXT_BASE_URL": ("acontext_base_url", _url),
    "AGENT_SYSTEM_PROMPT": ("system_prompt", _text),
    "AGENT_MAX_ITERATIONS": ("max_iterations", _whole),
    "AGENT_TASK_WAIT_SECONDS": ("task_wait_seconds", _seconds),
    "AGENT_SYNC_WAIT_SECONDS": ("sync_wait_seconds", _seconds),
    "OPENAI_MAX_RETRIES": ("openai_max_retries", functools.partial(_whole, least=0)),
    "AGENT_TOOL_TIMEOUT_SECONDS": ("tool_timeout_seconds", _seconds),
    "AGENT_TOOL_RESULT_MAX_CHARS": ("tool_result_max_chars", _whole),
    "AGENT_CONTEXT_TOKENS": ("context_tokens", functools.partial(_whole, least=0)),
    "AGENT_STRICT_TOOLS": ("strict_tools", _flag),
    "AGENT_APPROVE_TOOLS": ("approve_tools", _approval_policy),
    "AGENT_SESSION_TAG": ("session_tag", _text),
    "AGENT_LEARN": ("learn", _flag),
    "AGENT_LEARNING_SPACE": ("learning_space", _space_id),
    "AGENT_LEARN_WAIT_SECONDS": ("learn_wait_seconds", _seconds),
}
