"""Turns owned by the conversation, on two real server processes (workers A and B) that share
one PostgreSQL database and one Redis database, driven by real WebSocket clients: every socket
on a conversation, on either worker, sees its turn; a cancel, a busy check, a reload and a
resume work across workers; a reply goes on for TURN_DETACH_GRACE seconds without a socket; a
worker killed mid-turn leaves the turn `interrupted`, its partial reply kept. What each socket
saw live, rendered as the frontend renders it, must be what `GET /conversations/<id>` restores.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from websockets.sync.client import ClientConnection

from tests.chat.frontend import as_shown, reload_render, render, without_empty
from tests.fake_provider import FakeProvider, text, tools
from tests.servers import Server, servers_start
from tests.test_end_to_end import closed_early_within, open_socket, restored, server_env, until_end

# Sockets that see every turn (v2); the existing frontend's (v1) share a page's turns:
# tests/test_frontend.py runs those across two workers.
open_v2 = partial(open_socket, protocol=2)

pytestmark = [
    pytest.mark.skipif(
        not (os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL")),
        reason="turns reach other workers through Redis and a shared PostgreSQL database",
    ),
    # A test's time includes its module fixture's: two or three servers starting (seconds each,
    # a minute or more on a loaded machine).
    pytest.mark.timeout(360),
]

OWN_REDIS_DB = 14  # test_hostile_servers.py has 15
GRACE = 2.0  # TURN_DETACH_GRACE of the workers most tests run on
STORY = ("Once ", "upon a time, ", "a test ", "ran.")
MANY = tuple(f"w{i} " for i in range(400))


@dataclass
class Workers:
    """Servers of one kind on the module's database and Redis database; `spare`, when started,
    is a third one that a test may kill."""

    a: Server
    b: Server
    spare: Server | None = None

    def stop(self) -> None:
        for server in (self.a, self.b, self.spare):
            if server is not None and server.process.poll() is None:
                server.stop()


def start_workers(kind: str, env: dict[str, str], logs: Path, count: int = 2) -> Workers:
    """`count` servers of `kind`, started side by side."""
    return Workers(
        *servers_start([partial(Server, kind, env, logs / f"{kind}-{i}.log", start_timeout=180) for i in range(count)])
    )


@pytest.fixture(scope="module")
def deployment(fake_server: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment every worker here shares: a PostgreSQL database of this module's own
    (made anew and migrated), and a Redis database of its own, emptied (no turn log or
    presence of an earlier run). Conversation ids are random, so the tests never meet."""
    env = server_env(fake_server, tmp_path_factory.mktemp("workers"), "workers")
    env["REDIS_URL"] = urlsplit(os.environ["REDIS_URL"])._replace(path=f"/{OWN_REDIS_DB}").geturl()
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    return env


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def workers(
    request: pytest.FixtureRequest, deployment: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    """Two workers, and a spare started with them (a server takes seconds to start) for the
    kill test. TURN_DETACH_GRACE=0 (stop at once) is tested in one process
    (tests/chat/turn/test_running.py) and on each server (tests/test_end_to_end.py)."""
    env = {**deployment, "TURN_DETACH_GRACE": str(GRACE)}
    started = start_workers(request.param, env, tmp_path_factory.mktemp("logs"), 3)
    yield started
    started.stop()


def new_conversation() -> str:
    return uuid.uuid4().hex


def chat(message: str) -> str:
    return json.dumps({"message": message, "model": "gpt-4o"})


def resume(after_seq: int) -> str:
    return json.dumps({"type": "resume", "after_seq": after_seq})


def receive(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def until_resume_end(ws: ClientConnection) -> list[dict[str, Any]]:
    events = []
    while not events or events[-1]["type"] != "resume_end":
        events.append(receive(ws))
    return events


def conversation(server: Server, conversation_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}/conversations/{conversation_id}", timeout=5)
    assert answer.status_code == 200
    return answer.json()


def while_live(server: Server, conversation_id: str, at_least: int) -> dict[str, Any]:
    """The conversation as a reload sees it, once its live turn has sent `at_least` events."""
    deadline = time.monotonic() + 5
    while True:
        body = conversation(server, conversation_id)
        assert "live" in body, "the turn is not running any more"
        if body["live"]["seq"] >= at_least or time.monotonic() > deadline:
            return body
        time.sleep(0.01)


def once_ended(server: Server, conversation_id: str, timeout: float = 5) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while "live" in (body := conversation(server, conversation_id)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "live" not in body, "the turn is still running"
    return body


def provider_closed_at(fake: FakeProvider, timeout: float) -> float | None:
    """When the client (the server) hung up the last provider stream early, if it did."""
    deadline = time.monotonic() + timeout
    while fake.requests[-1].closed_early_at is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return fake.requests[-1].closed_early_at


def seqs(events: list[dict[str, Any]]) -> list[int]:
    return [event["seq"] for event in events]


# Every socket, on either worker, sees the turn.


def test_both_workers_sockets_get_the_same_turn(workers, fake):
    conversation_id = new_conversation()
    fake.script(tools(("read_file", {"path": "todo.md"}), text=["Checking."]), text("You need to ", "write tests."))
    with open_v2(workers.a, conversation_id) as on_a, open_v2(workers.b, conversation_id) as on_b:
        on_a.send(chat("What is on my list?"))
        seen_a = until_end(on_a)
        seen_b = until_end(on_b)
    assert [e["type"] for e in seen_a] == [
        "stream", "tool_call", "tool_result", "final_response_start", "final_stream", "final_stream", "stream_end",
    ]  # fmt: skip
    assert seen_b == seen_a  # frame for frame: seq, ids and timestamps
    assert seqs(seen_a) == list(range(1, len(seen_a) + 1))
    assert len({e["message_id"] for e in seen_a}) == 1
    shown = without_empty(render(seen_a, "What is on my list?"))
    assert shown[-1]["content"] == "You need to write tests."
    assert restored(workers.a, conversation_id) == shown
    assert restored(workers.b, conversation_id) == shown


def test_the_next_turn_from_the_other_worker_reaches_both_sockets_too(workers, fake):
    conversation_id = new_conversation()
    fake.script(text("First ", "answer."), text("Second ", "answer."))
    with open_v2(workers.a, conversation_id) as on_a, open_v2(workers.b, conversation_id) as on_b:
        on_a.send(chat("one"))
        first_a, first_b = until_end(on_a), until_end(on_b)
        on_b.send(chat("two"))
        second_a, second_b = until_end(on_a), until_end(on_b)
    assert first_b == first_a and second_a == second_b
    assert seqs(second_b) == list(range(1, len(second_b) + 1))  # each turn counts from 1
    assert second_b[0]["message_id"] != first_b[0]["message_id"]
    shown = without_empty(render(second_b, "two", without_empty(render(first_a, "one"))))
    assert [m["content"] for m in shown] == ["one", "First answer.", "two", "Second answer."]
    assert restored(workers.a, conversation_id) == shown


def test_a_cancel_on_the_other_worker_ends_the_turn_for_every_socket(workers, fake):
    conversation_id = new_conversation()
    fake.script(text(*MANY, interval=0.02))
    with open_v2(workers.a, conversation_id) as on_a, open_v2(workers.b, conversation_id) as on_b:
        on_a.send(chat("write a lot"))
        seen_a, seen_b = [receive(on_a)], [receive(on_b)]
        time.sleep(0.2)
        cancelled_at = time.time()
        on_b.send(json.dumps({"type": "cancel"}))
        until_end(on_a, seen_a)
        until_end(on_b, seen_b)
    assert seen_b == seen_a
    # Its last events in the message: an `error` there says what ended the turn instead.
    assert seen_a[-1]["finish_reason"] == "cancelled", seen_a[-3:]
    assert "error" not in [e["type"] for e in seen_a]
    assert seqs(seen_a) == list(range(1, len(seen_a) + 1))
    assert closed_early_within(fake, cancelled_at)  # the worker running it stopped the provider stream
    shown = without_empty(render(seen_a, "write a lot"))
    assert shown[-1]["content"].startswith("w0 ") and len(seen_a) < len(MANY)
    assert restored(workers.b, conversation_id) == shown


def test_a_message_on_the_other_worker_while_a_turn_runs_is_busy(workers, fake):
    conversation_id = new_conversation()
    fake.script(text(*MANY[:20], interval=0.05))
    with open_v2(workers.a, conversation_id) as on_a, open_v2(workers.b, conversation_id) as on_b:
        on_a.send(chat("first"))
        seen_b = [receive(on_b)]  # the turn runs
        on_b.send(chat("second"))
        until_end(on_b, seen_b)
        seen_a = until_end(on_a)
    refused = [e for e in seen_b if "message_id" not in e]  # not one of the turn's events
    assert [(e["type"], e["code"]) for e in refused] == [("error", "busy")]
    assert [e for e in seen_b if "message_id" in e] == seen_a
    assert seen_a[-1]["finish_reason"] == "stop"
    assert len(fake.requests) == 1  # the refused message never reached the provider
    assert restored(workers.a, conversation_id) == without_empty(render(seen_a, "first"))


def test_branching_on_the_other_worker_while_a_turn_runs_is_busy(workers, fake):
    conversation_id = new_conversation()
    fake.script(text("first answer"), text(*MANY[:20], interval=0.05))
    with open_v2(workers.a, conversation_id) as on_a, open_v2(workers.b, conversation_id) as on_b:
        on_a.send(chat("first"))
        first = until_end(on_a)[-1]["message_id"]
        until_end(on_b)
        user = conversation(workers.b, conversation_id)["messages"][0]["id"]
        on_a.send(chat("second"))
        seen_b = [receive(on_b)]  # the turn runs, on worker a
        on_b.send(json.dumps({"type": "regenerate", "message_id": first}))
        on_b.send(json.dumps({"type": "edit", "message_id": user, "message": "other"}))
        switched = httpx.post(f"{workers.b.url}/conversations/{conversation_id}/branch", json={"message_id": first})
        until_end(on_b, seen_b)
        until_end(on_a)
    assert switched.status_code == 409 and switched.json()["code"] == "busy"
    refused = [e for e in seen_b if "message_id" not in e]
    assert [(e["type"], e["code"]) for e in refused] == [("error", "busy"), ("error", "busy")]
    assert len(fake.requests) == 2
    assert [e["content"] for e in restored(workers.a, conversation_id)][::2] == ["first", "second"]


# A reload, a resume, and nobody watching.


def test_a_reload_mid_reply_continues_it_on_the_other_worker(workers, fake):
    """The existing frontend's reload: the socket closes, GET restores the reply so far, a new
    socket (here on the other worker) gets the rest, appended to the restored reply. The chunks
    are a second apart, so no event falls between the GET and the new socket's joining (one
    that did would be missed: a plain socket joins from then on, and `resume` fills that gap)."""
    conversation_id = new_conversation()
    fake.script(text(*STORY, interval=1.0))
    with open_socket(workers.a, conversation_id) as on_a:
        on_a.send(chat("Tell me a story"))
        assert receive(on_a)["seq"] == 1
    before = while_live(workers.b, conversation_id, at_least=1)
    with open_socket(workers.b, conversation_id) as on_b:
        rest = until_end(on_b)
    seq = before["live"]["seq"]
    assert as_shown(before["messages"]) == [
        {"role": "user", "content": "Tell me a story"},
        {"role": "assistant", "content": "".join(STORY[:seq])},
    ]
    assert {e["message_id"] for e in rest} == {before["live"]["message_id"]}
    assert seqs(rest) == list(range(seq + 1, seq + 1 + len(rest)))  # no event twice, none missing
    assert rest[-1]["finish_reason"] == "stop"
    after = restored(workers.a, conversation_id)
    assert without_empty(reload_render(rest, as_shown(before["messages"]))) == after
    assert after[-1] == {"role": "assistant", "content": "".join(STORY)}


def test_a_resume_on_the_other_worker_after_a_disconnect_is_gapless(workers, fake):
    conversation_id = new_conversation()
    fake.script(text(*STORY, interval=0.5))
    with open_socket(workers.a, conversation_id) as on_a:
        on_a.send(chat("Tell me a story"))
        receive(on_a)
    before = while_live(workers.a, conversation_id, at_least=1)
    after_seq = before["live"]["seq"]
    while_live(workers.a, conversation_id, at_least=after_seq + 1)  # so that there is something to resend
    with open_socket(workers.b, conversation_id) as on_b:
        on_b.send(resume(after_seq))
        received = until_end(on_b)
    ends = [i for i, e in enumerate(received) if e["type"] == "resume_end"]
    assert len(ends) == 1
    replayed, end, live = received[: ends[0]], received[ends[0]], received[ends[0] + 1 :]
    assert replayed and live
    assert end["message_id"] == before["live"]["message_id"] and end["live"] is True
    assert end["seq"] == replayed[-1]["seq"]
    events = replayed + live
    assert seqs(events) == list(range(after_seq + 1, after_seq + 1 + len(events)))
    assert events[-1]["finish_reason"] == "stop"
    after = restored(workers.b, conversation_id)
    assert without_empty(reload_render(events, as_shown(before["messages"]))) == after
    assert after[-1] == {"role": "assistant", "content": "".join(STORY)}


def test_a_reply_goes_on_without_sockets_until_someone_returns_within_the_grace(workers, fake):
    """Nobody watches for 1 s: the reply goes on; the one who returns (on the other worker)
    resumes it, and it runs to its end past the grace, since someone watches it again."""
    conversation_id = new_conversation()
    words = [f"part{i} " for i in range(8)]
    fake.script(text(*words, interval=0.4))  # 3.2 s: it would be cancelled at 2.4 s had nobody returned
    with open_socket(workers.a, conversation_id) as on_a:
        on_a.send(chat("go on"))
        seen = [receive(on_a)]
    time.sleep(1.0)
    assert "live" in conversation(workers.b, conversation_id)  # nobody watches; it still runs
    with open_socket(workers.b, conversation_id) as on_b:
        on_b.send(resume(seen[-1]["seq"]))
        seen += [e for e in until_end(on_b, []) if e["type"] != "resume_end"]
    assert seqs(seen) == list(range(1, len(seen) + 1))
    assert seen[-1]["finish_reason"] == "stop"
    assert fake.requests[-1].closed_early_at is None
    shown = without_empty(render(seen, "go on"))
    assert restored(workers.a, conversation_id) == shown
    assert shown[-1]["content"] == "".join(words)


def test_a_reply_nobody_returns_to_is_cancelled_after_the_grace(workers, fake):
    conversation_id = new_conversation()
    fake.script(text(*MANY, interval=0.025))  # 10 s
    with open_socket(workers.a, conversation_id) as on_a:
        on_a.send(chat("write a lot"))
        receive(on_a)
    left_at = time.time()
    closed_at = provider_closed_at(fake, GRACE + 3)
    assert closed_at is not None, "the abandoned reply was never stopped"
    assert GRACE - 0.5 < closed_at - left_at < GRACE + 1.5
    shown = as_shown(once_ended(workers.b, conversation_id)["messages"])
    # A resume within minutes of its end replays it: it ended cancelled, not failed.
    with open_socket(workers.b, conversation_id) as on_b:
        on_b.send(resume(0))
        *events, end = until_resume_end(on_b)
    assert end["live"] is False and end["seq"] == len(events)
    assert seqs(events) == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "stream_end" and events[-1]["finish_reason"] == "cancelled"
    assert "error" not in [e["type"] for e in events]
    assert shown == without_empty(render(events, "write a lot"))
    assert shown[-1]["content"].startswith("w0 ") and len(events) < len(MANY)


def test_a_socket_on_the_other_worker_keeps_the_turn_going_past_the_grace(workers, fake):
    conversation_id = new_conversation()
    fake.script(text(*MANY, interval=0.02))
    with ExitStack() as sockets:
        on_b = sockets.enter_context(open_v2(workers.b, conversation_id))
        with open_v2(workers.a, conversation_id) as on_a:
            on_a.send(chat("write a lot"))
            receive(on_a)
        seen = [receive(on_b)]
        watched_until = time.monotonic() + GRACE + 0.5
        while time.monotonic() < watched_until:  # A's socket left; B's still gets the reply
            seen.append(receive(on_b))
            assert seen[-1]["type"] == "stream"
        assert fake.requests[-1].closed_early_at is None
        left_at = time.time()
    closed_at = provider_closed_at(fake, GRACE + 3)  # the last socket anywhere left: the grace
    assert closed_at is not None and GRACE - 0.5 < closed_at - left_at < GRACE + 1.5
    assert seqs(seen) == list(range(1, len(seen) + 1))


# A worker that dies mid-turn.


def test_a_worker_killed_mid_turn_leaves_it_interrupted_with_its_partial_reply(workers, fake):
    conversation_id = new_conversation()
    fake.script(text(*MANY, interval=0.05))  # 20 s: still streaming when its worker dies
    victim = workers.spare
    assert victim is not None
    with open_v2(workers.b, conversation_id) as on_b:
        on_victim = open_v2(victim, conversation_id)
        on_victim.send(chat("write a lot"))
        seen = [receive(on_b) for _ in range(3)]
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(5)
        killed_at = time.monotonic()
        on_victim.close_socket()
        # Its lease lapses after 12 s; a reaper (B's, A's) looks every 2 s: 14 s at most.
        while seen[-1]["type"] != "stream_end":
            seen.append(receive(on_b, timeout=max(killed_at + 25 - time.monotonic(), 0.1)))
        assert [e["type"] for e in seen[-3:]] == ["final_response_start", "error", "stream_end"]
        error, end = seen[-2], seen[-1]
        assert error["code"] == "interrupted" and error["retryable"] is True
        assert end["finish_reason"] == "error"
        assert seqs(seen) == list(range(1, len(seen) + 1))
        assert {e["type"] for e in seen[:-3]} == {"stream"}
        shown = without_empty(render(seen, "write a lot"))
        assert [m["role"] for m in shown] == ["user", "assistant", "assistant"]
        assert shown[1]["content"].startswith("w0 ") and shown[2]["content"].startswith("Error: ")
        assert restored(workers.b, conversation_id) == shown
        # The conversation is usable again at once.
        fake.script(text("Back again."))
        on_b.send(chat("still there?"))
        again = until_end(on_b)
    assert again[-1]["finish_reason"] == "stop"
    assert restored(workers.b, conversation_id) == [*shown, *without_empty(render(again, "still there?"))]
