"""Contract tests for the fake Acontext server, driven only through the real ``acontext`` SDK."""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from acontext import AcontextClient
from acontext.errors import APIError, TransportError

from tests.conftest import wait_for
from tests.fakes.acontext_server import (
    FakeAcontext,
    RecordedRequest,
    estimate_tokens,
    start_fake_acontext,
)

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
PROJECT_ID = "00ea930a-c66d-463b-a5ac-d48da0ef625a"

Private = tuple[FakeAcontext, AcontextClient]

USER_TEXT = "What is the weather in Paris? Then book me a table for two at 8pm."
ASSISTANT_TEXT = "It is 18\u00b0C and cloudy in Paris. I booked a table for two at 8pm."
TOOL_RESULT = '{"temp_c": 18, "sky": "cloudy"}'

# The conversation recorded against a real server, as sent ...
CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": USER_TEXT},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_abc123",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_abc123", "content": TOOL_RESULT},
    {"role": "assistant", "content": ASSISTANT_TEXT},
]
# ... and as the real server returned it from GET .../messages?format=openai.
RECORDED_ITEMS: list[dict[str, Any]] = [
    {"content": USER_TEXT, "role": "user"},
    {
        "tool_calls": [
            {
                "id": "call_abc123",
                "function": {"arguments": '{"city": "Paris"}', "name": "get_weather"},
                "type": "function",
            }
        ],
        "role": "assistant",
    },
    {"content": TOOL_RESULT, "tool_call_id": "call_abc123", "role": "tool"},
    {"content": ASSISTANT_TEXT, "role": "assistant"},
]

# The lenient blobs a real server accepted, in the recorded order, and what it returned.
EDGE_BLOBS: list[dict[str, Any]] = [
    {"role": "tool", "content": "result"},
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": ""},
    {"role": "assistant", "content": None},
    {"role": "developer", "content": "Be terse."},
    {
        "role": "user",
        "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}],
    },
    {"role": "tool", "tool_call_id": "call_never_made", "content": "x"},
    {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}},
]
EDGE_ITEMS: list[dict[str, Any]] = [
    {"content": "result", "tool_call_id": "", "role": "tool"},
    {"content": "You are helpful.", "role": "system"},
    {"content": "", "role": "user"},
    {"role": "assistant"},
    {"content": "Be terse.", "role": "developer"},
    {
        "content": [{"text": "part one", "type": "text"}, {"text": "part two", "type": "text"}],
        "role": "user",
    },
    {"content": "x", "tool_call_id": "call_never_made", "role": "tool"},
    {"role": "assistant"},
]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAcontext]:
    """One server for the module: tests use their own sessions and leave its knobs alone."""
    with start_fake_acontext() as server:
        yield server


@pytest.fixture(scope="module")
def client(fake: FakeAcontext) -> Iterator[AcontextClient]:
    with AcontextClient(api_key=fake.api_key, base_url=fake.base_url, timeout=5) as sdk:
        yield sdk


@pytest.fixture
def private() -> Iterator[Private]:
    """A fresh server and client, for tests that change server-wide state."""
    with (
        start_fake_acontext() as server,
        AcontextClient(api_key=server.api_key, base_url=server.base_url, timeout=5) as sdk,
    ):
        yield server, sdk


def api_error(exc: pytest.ExceptionInfo[APIError]) -> tuple[int, int | None, str | None]:
    return exc.value.status_code, exc.value.code, exc.value.message


def store_all(client: AcontextClient, session_id: str, blobs: list[dict[str, Any]]) -> None:
    for blob in blobs:
        client.sessions.store_message(session_id, blob=blob)  # type: ignore[arg-type]


# -- wire basics --------------------------------------------------------------


def test_base_url_ping_and_request_log(private: Private) -> None:
    fake, client = private
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/v1", fake.base_url)
    assert client.ping() == "pong"
    client.sessions.list(limit=5, time_desc=True)
    assert fake.requests == [
        RecordedRequest("GET", "/ping", {}, None),
        RecordedRequest("GET", "/session", {"limit": "5", "time_desc": "true"}, None),
    ]


@pytest.mark.parametrize("key", ["sk-ac-wrong-key", "not-even-prefixed"])
def test_wrong_key_is_401(fake: FakeAcontext, key: str) -> None:
    with AcontextClient(api_key=key, base_url=fake.base_url) as bad:
        for call in (bad.ping, bad.sessions.create, bad.sessions.list):
            with pytest.raises(APIError) as exc:
                call()
            assert api_error(exc) == (401, 401, "Unauthorized")
            assert exc.value.payload == {"code": 401, "msg": "Unauthorized"}


# -- sessions -----------------------------------------------------------------


def test_create_session_shapes(client: AcontextClient) -> None:
    plain = client.sessions.create()
    assert plain.project_id == PROJECT_ID
    assert plain.user_id is None
    assert plain.configs is None
    assert plain.disable_task_tracking is False
    assert TIMESTAMP.match(plain.created_at)
    assert plain.created_at == plain.updated_at
    uuid.UUID(plain.id)

    configured = client.sessions.create(
        user="alice@example.com", configs={"agent": "bot1"}, disable_task_tracking=True
    )
    again = client.sessions.create(user="alice@example.com")
    assert configured.configs == {"agent": "bot1"}
    assert configured.disable_task_tracking is True
    assert configured.user_id is not None
    assert configured.user_id == again.user_id
    assert client.sessions.create(user="bob").user_id != configured.user_id


def test_create_with_use_uuid_is_idempotent(private: Private) -> None:
    fake, client = private
    sid = str(uuid.uuid4())
    first = client.sessions.create(use_uuid=sid, configs={"v": 1})
    second = client.sessions.create(use_uuid=sid, configs={"v": 2})
    assert first.id == second.id == sid
    assert second.configs == {"v": 1}
    assert second.created_at == first.created_at
    assert fake.session_ids() == [sid]

    with pytest.raises(APIError) as exc:
        client.sessions.create(use_uuid="not-a-uuid")
    assert api_error(exc) == (400, 400, "parameter error")


def test_configs_get_put_patch_and_delete(fake: FakeAcontext, client: AcontextClient) -> None:
    sid = client.sessions.create(configs={"a": 1, "b": {"c": 2}}).id
    assert client.sessions.get_configs(sid).configs == {"a": 1, "b": {"c": 2}}
    assert client.sessions.patch_configs(sid, configs={"a": None, "d": 4}) == {
        "b": {"c": 2},
        "d": 4,
    }
    client.sessions.update_configs(sid, configs={"only": True})
    assert client.sessions.get_configs(sid).configs == {"only": True}
    assert fake.session(sid).configs == {"only": True}

    client.sessions.delete(sid)
    with pytest.raises(APIError) as exc:
        client.sessions.get_configs(sid)
    assert api_error(exc) == (400, 500, "database error")


def test_list_filters_and_pages(private: Private) -> None:
    _, client = private
    bare = client.sessions.create().id
    bot1 = client.sessions.create(configs={"agent": "bot1", "opts": {"x": 1, "y": [1, 2]}}).id
    bot2 = client.sessions.create(configs={"agent": "bot2"}, user="carol").id
    bot1b = client.sessions.create(configs={"agent": "bot1", "tier": "gold"}).id

    def ids(**kwargs: Any) -> list[str]:
        return [s.id for s in client.sessions.list(**kwargs).items]

    assert ids() == [bare, bot1, bot2, bot1b]
    assert ids(time_desc=True) == [bot1b, bot2, bot1, bare]
    assert ids(filter_by_configs={"agent": "bot1"}) == [bot1, bot1b]
    assert ids(filter_by_configs={"opts": {"y": [2]}}) == [bot1]
    assert ids(filter_by_configs={"opts": {"x": "1"}}) == []  # type-sensitive
    assert ids(user="carol") == [bot2]
    assert ids(user="nobody") == []

    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = client.sessions.list(limit=3, cursor=cursor, time_desc=True)
        seen += [s.id for s in page.items]
        if not page.has_more:
            assert page.next_cursor is None
            break
        cursor = page.next_cursor
    assert seen == [bot1b, bot2, bot1, bare]


# -- messages -----------------------------------------------------------------


def test_store_message_normalises_into_parts(fake: FakeAcontext, client: AcontextClient) -> None:
    sid = client.sessions.create().id
    user = client.sessions.store_message(sid, blob=CONVERSATION[0], meta={"turn": 1})  # type: ignore[arg-type]
    call = client.sessions.store_message(sid, blob=CONVERSATION[1])  # type: ignore[arg-type]
    tool = client.sessions.store_message(sid, blob=CONVERSATION[2])  # type: ignore[arg-type]

    assert user.role == "user"
    assert user.parent_id is None
    assert user.meta == {"turn": 1}
    assert [p.model_dump(exclude_none=True) for p in user.parts] == [
        {"type": "text", "text": USER_TEXT}
    ]
    assert user.session_task_process_status == "pending"
    assert user.task_id is None
    assert TIMESTAMP.match(user.created_at)

    assert call.role == "assistant"
    assert call.parent_id == user.id
    assert [p.model_dump(exclude_none=True) for p in call.parts] == [
        {
            "type": "tool-call",
            "meta": {
                "arguments": '{"city": "Paris"}',
                "id": "call_abc123",
                "name": "get_weather",
                "type": "function",
            },
        }
    ]

    assert tool.role == "user"
    assert tool.parent_id == call.id
    assert [p.model_dump(exclude_none=True) for p in tool.parts] == [
        {"type": "tool-result", "text": TOOL_RESULT, "meta": {"tool_call_id": "call_abc123"}}
    ]

    untracked = client.sessions.create(disable_task_tracking=True).id
    msg = client.sessions.store_message(untracked, blob={"role": "user", "content": "hi"})
    assert msg.session_task_process_status == "disable_tracking"


def test_get_messages_round_trip_matches_recording(
    fake: FakeAcontext, client: AcontextClient
) -> None:
    sid = client.sessions.create().id
    store_all(client, sid, CONVERSATION)
    out = client.sessions.get_messages(sid)
    assert out.items == RECORDED_ITEMS
    assert "content" not in out.items[1]
    assert out.metas == [{}, {}, {}, {}]
    assert len(out.ids) == 4
    assert out.has_more is False
    assert out.next_cursor is None
    assert out.edit_at_message_id == out.ids[-1]
    assert out.this_time_tokens == sum(estimate_tokens(i) for i in RECORDED_ITEMS)
    assert client.sessions.get_token_counts(sid).total_tokens == out.this_time_tokens
    assert fake.stored_messages(sid) == RECORDED_ITEMS


def test_lenient_blobs_round_trip_like_the_real_server(client: AcontextClient) -> None:
    sid = client.sessions.create().id
    store_all(client, sid, EDGE_BLOBS)
    assert client.sessions.get_messages(sid).items == EDGE_ITEMS


@pytest.mark.parametrize(
    "blob",
    [
        {"content": "no role"},
        {"role": "robot", "content": "beep"},
        {"role": "user", "content": None},
    ],
)
def test_rejected_blobs(client: AcontextClient, blob: dict[str, Any]) -> None:
    sid = client.sessions.create().id
    with pytest.raises(APIError) as exc:
        client.sessions.store_message(sid, blob=blob)  # type: ignore[arg-type]
    assert api_error(exc) == (400, 400, "failed to normalize openai message")
    assert client.sessions.get_messages(sid).items == []


def test_meta_limit_and_unsupported_format(client: AcontextClient) -> None:
    sid = client.sessions.create().id
    with pytest.raises(APIError) as exc:
        client.sessions.store_message(
            sid, blob={"role": "user", "content": "hi"}, meta={"big": "x" * 70_000}
        )
    assert exc.value.status_code == 400
    assert exc.value.message is not None and "meta" in exc.value.message
    with pytest.raises(APIError) as exc:
        client.sessions.store_message(
            sid, blob={"role": "user", "content": "hi"}, format="anthropic"
        )
    assert api_error(exc) == (400, 400, "parameter error")
    assert client.sessions.get_messages(sid).items == []


def test_metas_round_trip_and_patch(fake: FakeAcontext, client: AcontextClient) -> None:
    sid = client.sessions.create().id
    first = client.sessions.store_message(sid, blob={"role": "user", "content": "a"}, meta={"k": 1})
    client.sessions.store_message(sid, blob={"role": "assistant", "content": "b"})
    assert client.sessions.get_messages(sid).metas == [{"k": 1}, {}]
    assert client.sessions.patch_message_meta(sid, first.id, meta={"k": None, "z": 2}) == {"z": 2}
    assert fake.stored_metas(sid) == [{"z": 2}, {}]


def test_pagination_covers_all_messages_in_order(
    fake: FakeAcontext, client: AcontextClient
) -> None:
    blobs = [{"role": "user", "content": f"m{i}"} for i in range(7)]
    sid = fake.add_session(messages=blobs)
    everything = client.sessions.get_messages(sid)
    assert len(everything.items) == 7

    for desc in (False, True):
        items: list[Any] = []
        ids: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = client.sessions.get_messages(sid, limit=3, cursor=cursor, time_desc=desc)
            pages += 1
            items += page.items
            ids += page.ids
            if not page.has_more:
                assert page.next_cursor is None
                break
            assert page.next_cursor
            cursor = page.next_cursor
        assert pages == 3
        expected = everything.items[::-1] if desc else everything.items
        assert items == expected
        assert ids == (everything.ids[::-1] if desc else everything.ids)


# -- unknown, deleted and malformed sessions -----------------------------------


def check_session_errors(client: AcontextClient, sid: str) -> None:
    database_error = (400, 500, "database error")
    not_found = (404, 404, "session not found")
    calls: list[tuple[Callable[[], object], tuple[int, int, str]]] = [
        (lambda: client.sessions.get_messages(sid), database_error),
        (
            lambda: client.sessions.store_message(sid, blob={"role": "user", "content": "hi"}),
            database_error,
        ),
        (lambda: client.sessions.get_configs(sid), database_error),
        (lambda: client.sessions.flush(sid), not_found),
        (lambda: client.sessions.get_tasks(sid), not_found),
        (lambda: client.sessions.messages_observing_status(sid), not_found),
        (lambda: client.sessions.get_token_counts(sid), not_found),
    ]
    for call, expected in calls:
        with pytest.raises(APIError) as exc:
            call()
        assert api_error(exc) == expected


def test_unknown_session_errors_per_endpoint(client: AcontextClient) -> None:
    check_session_errors(client, str(uuid.uuid4()))


def test_deleted_session_behaves_like_unknown(client: AcontextClient) -> None:
    sid = client.sessions.create().id
    client.sessions.store_message(sid, blob={"role": "user", "content": "hi"})
    client.sessions.delete(sid)
    check_session_errors(client, sid)


def test_malformed_session_id_is_parameter_error(client: AcontextClient) -> None:
    sid = "not-a-uuid"
    calls: list[Callable[[], object]] = [
        lambda: client.sessions.get_messages(sid),
        lambda: client.sessions.store_message(sid, blob={"role": "user", "content": "hi"}),
        lambda: client.sessions.get_configs(sid),
        lambda: client.sessions.flush(sid),
        lambda: client.sessions.get_tasks(sid),
        lambda: client.sessions.messages_observing_status(sid),
        lambda: client.sessions.get_token_counts(sid),
        lambda: client.sessions.delete(sid),
    ]
    for call in calls:
        with pytest.raises(APIError) as exc:
            call()
        assert api_error(exc) == (400, 400, "parameter error")


def test_unknown_route_is_404(fake: FakeAcontext, client: AcontextClient) -> None:
    with pytest.raises(APIError) as exc:
        client.request("GET", "/no/such/route")
    assert exc.value.status_code == 404
    assert exc.value.code == 404


# -- flush and tasks ------------------------------------------------------------


def test_flush_processes_at_most_32_per_call(fake: FakeAcontext, client: AcontextClient) -> None:
    sid = fake.add_session(messages=[{"role": "user", "content": f"task {i}"} for i in range(40)])
    status = client.sessions.messages_observing_status(sid)
    assert (status.observed, status.in_process, status.pending) == (0, 0, 40)

    flag = client.sessions.flush(sid)
    assert (flag.status, flag.errmsg) == (200, "")
    status = client.sessions.messages_observing_status(sid)
    assert (status.observed, status.in_process, status.pending) == (32, 0, 8)
    assert TIMESTAMP.match(status.updated_at)

    client.sessions.flush(sid)
    status = client.sessions.messages_observing_status(sid)
    assert (status.observed, status.in_process, status.pending) == (40, 0, 0)
    tasks = client.sessions.get_tasks(sid, limit=200).items
    assert [t.order for t in tasks] == list(range(1, 41))


def test_tasks_after_flush(fake: FakeAcontext, client: AcontextClient) -> None:
    sid = client.sessions.create().id
    store_all(client, sid, CONVERSATION)
    before = client.sessions.get_tasks(sid)
    assert (before.items, before.has_more, before.next_cursor) == ([], False, None)

    client.sessions.flush(sid)
    tasks = client.sessions.get_tasks(sid)
    assert len(tasks.items) == 1
    task = tasks.items[0]
    assert task.order == 1
    assert task.session_id == sid
    assert task.project_id == PROJECT_ID
    assert task.status == "success"
    assert task.is_planning is False
    assert task.data.task_description == USER_TEXT
    assert task.data.progresses == [f"Agent responded to: {USER_TEXT}"]
    assert task.data.user_preferences is None
    assert fake.session(sid).messages[0].session_task_process_status == "success"

    client.sessions.store_message(sid, blob={"role": "user", "content": "I prefer window seats."})
    client.sessions.flush(sid)
    newest = client.sessions.get_tasks(sid, time_desc=True).items[0]
    assert (newest.order, newest.status) == (2, "running")
    assert newest.data.progresses is None
    assert newest.data.user_preferences == ["I prefer window seats."]


def test_flush_ignores_sessions_without_task_tracking(client: AcontextClient) -> None:
    sid = client.sessions.create(disable_task_tracking=True).id
    store_all(client, sid, CONVERSATION)
    assert client.sessions.flush(sid).status == 200
    assert client.sessions.get_tasks(sid).items == []
    assert client.sessions.messages_observing_status(sid).pending == 0


def test_failed_flush_surfaces_in_flag_response(private: Private) -> None:
    fake, client = private
    sid = fake.add_session(messages=CONVERSATION)
    fake.flush_status, fake.flush_errmsg = 500, "extraction failed"
    flag = client.sessions.flush(sid)
    assert flag.status != 200
    assert flag.errmsg == "extraction failed"
    assert client.sessions.messages_observing_status(sid).pending == 4
    assert client.sessions.get_tasks(sid).items == []


# -- edit strategies ------------------------------------------------------------


def test_token_limit_keeps_tool_call_pairs_together(
    fake: FakeAcontext, client: AcontextClient
) -> None:
    sid = fake.add_session(messages=CONVERSATION)
    tail = RECORDED_ITEMS[1:]
    # Budget for the last three items minus one token: the user message goes first, then the
    # assistant tool call must go together with its tool result.
    limit = sum(estimate_tokens(i) for i in tail) - 1
    out = client.sessions.get_messages(
        sid, edit_strategies=[{"type": "token_limit", "params": {"limit_tokens": limit}}]
    )
    assert out.items == [RECORDED_ITEMS[3]]
    assert out.this_time_tokens == estimate_tokens(RECORDED_ITEMS[3])
    assert fake.stored_messages(sid) == RECORDED_ITEMS  # storage untouched

    roomy = client.sessions.get_messages(
        sid, edit_strategies=[{"type": "token_limit", "params": {"limit_tokens": 10_000}}]
    )
    assert roomy.items == RECORDED_ITEMS


def test_remove_tool_result_keeps_recent(fake: FakeAcontext, client: AcontextClient) -> None:
    blobs: list[dict[str, Any]] = []
    for i in range(4):
        call = {"id": f"call_{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        blobs.append({"role": "assistant", "content": None, "tool_calls": [call]})
        blobs.append({"role": "tool", "tool_call_id": f"call_{i}", "content": f"result {i}"})
    sid = fake.add_session(messages=blobs)
    out = client.sessions.get_messages(
        sid,
        edit_strategies=[
            {"type": "remove_tool_result", "params": {"keep_recent_n_tool_results": 1}}
        ],
    )
    results = [i["content"] for i in out.items if i["role"] == "tool"]
    assert results == ["Done", "Done", "Done", "result 3"]
    stored = [i["content"] for i in fake.stored_messages(sid) if i["role"] == "tool"]
    assert stored == ["result 0", "result 1", "result 2", "result 3"]


# -- fault injection and lifecycle ------------------------------------------------


def test_fail_next_injects_api_errors(private: Private) -> None:
    fake, client = private
    sid = client.sessions.create().id
    fake.fail_next(1, path_contains="/messages")
    client.ping()  # not matching: unaffected
    with pytest.raises(APIError) as exc:
        client.sessions.store_message(sid, blob={"role": "user", "content": "lost"})
    assert api_error(exc) == (503, 503, "injected failure")
    assert fake.stored_messages(sid) == []
    client.sessions.store_message(sid, blob={"role": "user", "content": "kept"})
    assert fake.stored_messages(sid) == [{"content": "kept", "role": "user"}]


def test_drop_after_write_stores_but_loses_the_answer(private: Private) -> None:
    fake, client = private
    sid = client.sessions.create().id
    fake.fail_next(1, drop_after_write=True)
    with pytest.raises(TransportError):
        client.sessions.store_message(sid, blob={"role": "user", "content": "applied"})
    assert fake.stored_messages(sid) == [{"content": "applied", "role": "user"}]
    assert client.ping() == "pong"


def test_stop_then_restart_keeps_data(private: Private) -> None:
    fake, client = private
    sid = client.sessions.create(configs={"k": "v"}).id
    client.sessions.store_message(sid, blob={"role": "user", "content": "before"})
    url = fake.base_url

    fake.stop()
    with pytest.raises(TransportError):
        client.ping()
    with pytest.raises(TransportError):
        client.sessions.store_message(sid, blob={"role": "user", "content": "while down"})

    fake.restart()
    assert fake.base_url == url
    assert client.sessions.get_messages(sid).items == [{"content": "before", "role": "user"}]
    assert client.sessions.get_configs(sid).configs == {"k": "v"}


def test_latency_is_applied(private: Private) -> None:
    fake, client = private
    fake.latency = 0.05
    started = time.monotonic()
    client.ping()
    assert time.monotonic() - started >= 0.05


def test_latency_range_draws_from_a_seeded_random() -> None:
    fake = FakeAcontext(latency_range=(0.05, 0.3), seed=11)
    expected = random.Random(11)
    draws = [fake.next_latency() for _ in range(20)]
    assert draws == [expected.uniform(0.05, 0.3) for _ in range(20)]
    fake.latency_range = None
    fake.latency = 0.01
    assert fake.next_latency() == 0.01


def test_latency_range_is_applied(private: Private) -> None:
    fake, client = private
    fake.latency_range = (0.05, 0.06)
    started = time.monotonic()
    client.ping()
    assert time.monotonic() - started >= 0.05


def test_stop_and_restart_from_another_thread_while_requests_are_in_flight(
    private: Private,
) -> None:
    fake, client = private
    sid = client.sessions.create().id
    outcomes: list[str] = []

    def store(i: int) -> None:
        try:
            client.sessions.store_message(sid, blob={"role": "user", "content": f"m{i}"})
            outcomes.append("stored")
        except TransportError:
            outcomes.append("cut")

    senders = [threading.Thread(target=store, args=(i,)) for i in range(6)]
    with fake.holding():
        for sender in senders:
            sender.start()
        wait_for(lambda: len(fake.requests) == 7)  # every request is read, and held
        stopper = threading.Thread(target=fake.stop)
        stopper.start()
        stopper.join()
        for sender in senders:
            sender.join()
        assert outcomes == ["cut"] * 6
        assert fake.stored_messages(sid) == []
    # requests already read are still applied once let go; their answers are lost
    wait_for(lambda: len(fake.stored_messages(sid)) == 6)
    with pytest.raises(TransportError):
        client.ping()

    restarter = threading.Thread(target=fake.restart)
    restarter.start()
    restarter.join()
    assert client.ping() == "pong"


def test_flapping_stops_and_restarts_until_the_block_ends(private: Private) -> None:
    fake, client = private
    seen: set[str] = set()
    with fake.flapping(up=(0.05, 0.1), down=(0.05, 0.1), seed=3) as outages:

        def flapped_and_seen_both() -> bool:
            try:
                seen.add(client.ping())
            except TransportError:
                seen.add("down")
            return len(outages) >= 3 and seen == {"pong", "down"}

        wait_for(flapped_and_seen_both, seconds=60)
    assert all(0.05 <= outage <= 0.1 for outage in outages)
    assert client.ping() == "pong"  # up for good after the block
