"""Whatever is wrong with the state folder, the user gets one line that says what to do."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

import openai_basic.journal
from openai_basic.conversation import Conversation
from openai_basic.errors import JournalError
from openai_basic.mirror import AcontextMirror
from openai_basic.output import Output
from openai_basic.settings import Settings
from tests.conftest import Run, wait_for
from tests.fakes.acontext_server import FakeAcontext
from tests.fakes.openai_server import FakeOpenAI, echo_responder, text

Cli = Callable[..., Run]


def test_a_state_folder_that_is_a_file(cli: Cli, model: FakeOpenAI, tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a folder")
    run = cli("hi", env={"AGENT_STATE_DIR": "state"})
    assert (run.code, run.stdout) == (2, "")
    assert run.stderr == (
        f"error: cannot use the state folder {tmp_path / 'state'} (it is a file, not a folder): "
        "set AGENT_STATE_DIR to a folder you can write\n"
    )
    assert model.requests == []  # nothing paid for that could not be kept


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_journal_is_reported_as_such(
    cli: Cli, model: FakeOpenAI, acontext: FakeAcontext, tmp_path: Path, damage: str
) -> None:
    model.responder = echo_responder
    journal = tmp_path / ".agent" / "journal.sqlite3"
    if damage == "garbage":
        journal.parent.mkdir()
        journal.write_bytes(b"this is not a database" * 100)
    else:
        assert cli(input=b"one\ntwo\nthree\n" * 20).code == 0
        data = journal.read_bytes()
        journal.write_bytes(data[: len(data) // 2] + b"\0" * 100)
        (tmp_path / ".agent" / "journal.sqlite3-wal").unlink(missing_ok=True)
    for args in (["hi"], ["sync"], ["doctor"]):
        run = cli(*args)
        assert run.code in (1, 2), args
        assert "Traceback" not in run.stderr
        assert f"the journal {journal} is damaged" in run.stderr + run.stdout
        assert "Acontext" not in run.stderr.replace("Acontext reachable", "")


def test_a_journal_locked_by_another_process(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("sync").code == 0  # makes the journal
    monkeypatch.setattr(openai_basic.journal, "BUSY_SECONDS", 1)
    other = sqlite3.connect(tmp_path / ".agent" / "journal.sqlite3", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        run = cli("hi")
    finally:
        other.close()
    assert run.code == 1
    assert run.stderr == (
        f"error: journal: {tmp_path / '.agent' / 'journal.sqlite3'} stayed locked by another "
        "process for 1 s: let the other agent finish, then try again\n"
    )


def test_a_full_disk_mid_conversation_keeps_the_reply_and_the_messages(
    settings: Settings, model: FakeOpenAI, acontext: FakeAcontext
) -> None:
    """The journal may not grow (as on a full disk): the paid-for reply is printed, and the
    messages it could not keep still reach Acontext."""
    model.script(text("first"), text("second"))
    stdout = io.StringIO()
    with Conversation(settings=settings, out=Output(stdout=stdout, stderr=io.StringIO())) as chat:
        chat.turn("one")
        db = chat.mirror.journal._db  # the one way to fill the disk here without root mounts
        db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
        with pytest.raises(JournalError, match="is full: free some space"):
            chat.turn("two " * 5000)
        assert stdout.getvalue() == "first\nsecond\n"
        chat.save(10)
        assert chat.mirror.unsent() == 0
        stored = acontext.stored_messages(chat.session_id)
    assert [m["content"] for m in stored] == ["one", "first", "two " * 5000, "second"]


def test_messages_kept_in_memory_go_after_every_message_journaled_before_them(
    settings: Settings, acontext: FakeAcontext
) -> None:
    """What the full-disk test above depends on, without its timing: the writer is still
    sending the first message when the second is journaled and the disk fills up."""
    with AcontextMirror(settings) as mirror:
        opened = mirror.create(model="m", system_prompt="s")
        mirror.sync(timeout=5)  # the writer is up
        with acontext.holding():  # the writer is sending "one" and has read nothing else
            mirror.append({"role": "user", "content": "one"})
            wait_for(lambda: len(acontext.requests) == 1)
            mirror.append({"role": "assistant", "content": "first"})
            db = mirror.journal._db
            db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
            mirror.append({"role": "user", "content": "two " * 5000})
            mirror.append({"role": "assistant", "content": "second"})
            assert mirror.journal_failure is not None
        assert mirror.sync(timeout=10) == 0
        stored = [m["content"] for m in acontext.stored_messages(opened.session_id)]
    assert stored == ["one", "first", "two " * 5000, "second"]


def test_read_only_commands_make_no_journal(
    cli: Cli, acontext: FakeAcontext, tmp_path: Path
) -> None:
    session_id = acontext.add_session(
        configs={"agent": "openai-basic"}, messages=[{"role": "user", "content": "hi"}]
    )
    (tmp_path / ".agent").mkdir()  # the folder may exist (the line history lives there)
    for args in (["tasks", session_id], ["history", session_id], ["sessions"], ["doctor"]):
        cli(*args)
        assert list((tmp_path / ".agent").iterdir()) == [], args
