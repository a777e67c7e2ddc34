"""Shared fixtures. Tests fail closed on the network: only loopback can be reached."""

from __future__ import annotations

import io
import ipaddress
import os
import pty
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openai_basic.cli import main
from openai_basic.settings import Settings
from openai_basic.tools import ToolFunction
from tests.fakes.acontext_server import FakeAcontext, start_fake_acontext
from tests.fakes.openai_server import FakeOpenAI, start_fake_openai

AGENT = Path(sys.executable).parent / "agent"
_real_connect = socket.socket.connect
_real_getaddrinfo = socket.getaddrinfo


def pytest_configure(config: pytest.Config) -> None:
    """A suite started in the background by a script inherits SIGINT ignored, and so would each
    agent it starts: the Ctrl-C tests need Python's own handler back."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _loopback(host: object) -> bool:
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
        raise ConnectionRefusedError(f"tests may only connect to loopback, not {address[0]}")
    return _real_connect(self, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not _loopback(host):
        raise socket.gaierror(f"tests may only resolve loopback names, not {host}")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No real keys, no real URLs, no .env from the developer's checkout, no outside network."""
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "ACONTEXT_", "AGENT_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", _guarded_getaddrinfo)


@pytest.fixture(scope="session")
def no_certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("no-certificates")


@pytest.fixture
def plain_http(monkeypatch: pytest.MonkeyPatch, no_certificates: Path) -> None:
    """The fakes speak plain HTTP, so the SDKs' clients need no certificate authorities: an
    empty folder of them spares each client (three a conversation) loading a bundle, 15 ms."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(no_certificates))


@pytest.fixture
def model(plain_http: None) -> Iterator[FakeOpenAI]:
    with start_fake_openai() as fake:
        yield fake


@pytest.fixture
def acontext(plain_http: None) -> Iterator[FakeAcontext]:
    with start_fake_acontext() as fake:
        yield fake


@pytest.fixture
def settings(model: FakeOpenAI, acontext: FakeAcontext, tmp_path: Path) -> Settings:
    return Settings(
        openai_api_key="sk-test",
        openai_base_url=model.base_url,
        openai_model="gpt-4o-mini",
        acontext_api_key=acontext.api_key,
        acontext_base_url=acontext.base_url,
        system_prompt="You are a test assistant.",
        max_iterations=4,
        task_wait_seconds=10.0,
        state_dir=tmp_path / ".agent",
        sync_wait_seconds=10.0,
        openai_max_retries=0,
    )


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class AgentCommand:
    """Runs the installed ``agent`` script as a user would, pointed at the fakes."""

    env: Mapping[str, str]
    cwd: Path

    def __call__(
        self, *args: str, input: str | None = "", env: Mapping[str, str] | None = None
    ) -> Run:
        merged = {**self.env, **(env or {})}
        done = subprocess.run(
            [str(AGENT), *args],
            input=input,
            capture_output=True,
            text=True,
            env={k: v for k, v in merged.items() if v is not None},
            cwd=self.cwd,
            timeout=60,
        )
        return Run(done.returncode, done.stdout, done.stderr)

    def start(self, *args: str, stdin: Any = subprocess.DEVNULL, command: str = "") -> Any:
        """Start it without waiting (``command`` replaces ``agent ARGS`` with ``python -c``)."""
        argv = [sys.executable, "-c", command] if command else [str(AGENT), *args]
        return subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(self.env),
            cwd=self.cwd,
            text=True,
        )


class Terminal:
    """The agent with its stdin on a pseudo-terminal, as if a person were typing."""

    def __init__(self, agent: AgentCommand, *args: str) -> None:
        self.leader, follower = pty.openpty()
        self.process = agent.start(*args, stdin=follower)
        os.close(follower)

    def type(self, *lines: str) -> None:
        for line in lines:
            os.write(self.leader, line.encode() + b"\n")

    def finish(self) -> tuple[int, str, str]:
        stdout, stderr = self.process.communicate(timeout=30)
        os.close(self.leader)
        return self.process.returncode, stdout, stderr


def typed(*lines: str) -> bytes:
    """What a user types: each line and its Enter."""
    return "".join(f"{line}\n" for line in lines).encode()


def wait_for(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def as_returned(message: dict[str, Any]) -> dict[str, Any]:
    """A message as Acontext gives it back: with tool calls, it has no content key."""
    if message.get("tool_calls"):
        return {k: v for k, v in message.items() if k != "content"}
    return message


class Typed(io.TextIOWrapper):
    """Lines typed at a terminal: stdin that says it is one, so the chat is interactive."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def cli(
    agent: AgentCommand, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Run]:
    """Runs ``main(ARGS)`` in this process, as the ``agent`` fixture's command would run.

    ``input`` is piped stdin, or with ``terminal=True`` what is typed, ending as Ctrl-D does.
    """

    def run(
        *args: str,
        input: bytes = b"",
        env: Mapping[str, str] | None = None,
        tools: Iterable[ToolFunction] | None = None,
        terminal: bool = False,
    ) -> Run:
        for name, value in {**agent.env, **(env or {})}.items():
            if name not in ("PATH", "HOME"):
                monkeypatch.setenv(name, value)
        stdin = (Typed if terminal else io.TextIOWrapper)(io.BytesIO(input))
        monkeypatch.setattr(sys, "stdin", stdin)
        try:
            code = main(list(args), tools=tools)
        except SystemExit as exit:  # argparse's usage errors and --help, as the script exits
            code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture
def agent(settings: Settings, tmp_path: Path, no_certificates: Path) -> AgentCommand:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "SSL_CERT_DIR": str(no_certificates),  # as plain_http explains
        "OPENAI_API_KEY": settings.openai_api_key,
        "OPENAI_BASE_URL": settings.openai_base_url or "",
        "ACONTEXT_API_KEY": settings.acontext_api_key,
        "ACONTEXT_BASE_URL": settings.acontext_base_url,
        "AGENT_SYSTEM_PROMPT": settings.system_prompt,
        "AGENT_MAX_ITERATIONS": str(settings.max_iterations),
        "AGENT_TASK_WAIT_SECONDS": "10",
        "AGENT_SYNC_WAIT_SECONDS": "10",
    }
    return AgentCommand(env, tmp_path)
