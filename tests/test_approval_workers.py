"""Tool approval on two real server processes sharing PostgreSQL and Redis: the answer may
come on the other worker (which then runs the rest of the turn, for every socket), two answers
racing on both are taken once, and a worker killed while its turn waits loses nothing: the
reaper leaves the waiting turn alone, and an answer on the survivor completes it."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
from websockets.sync.client import ClientConnection

from chat.turn.lease import REAP_EVERY_SECONDS
from tests.chat.frontend import render, without_empty
from tests.fake_provider import FakeProvider, text, tools
from tests.test_approval_servers import answer, approval_env, conversation, until_request
from tests.test_end_to_end import open_socket, restored, until_end
from tests.test_workers import Workers, start_workers

pytestmark = [
    pytest.mark.skipif(
        not (os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL")),
        reason="turns reach other workers through Redis and a shared PostgreSQL database",
    ),
    pytest.mark.timeout(360),
]

OWN_REDIS_DB = 13  # test_workers.py has 14, test_hostile_servers.py 15
READ = ("read_file", {"path": "todo.md"})


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def workers(
    request: pytest.FixtureRequest, fake_server: FakeProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    """Two workers and a spare to kill, on a database and a Redis database of this module's own."""
    env = approval_env(fake_server, tmp_path_factory.mktemp("approval"), f"approval_{request.param}")
    env["REDIS_URL"] = urlsplit(os.environ["REDIS_URL"])._replace(path=f"/{OWN_REDIS_DB}").geturl()
    env["TURN_DETACH_GRACE"] = "2"
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    started = start_workers(request.param, env, tmp_path_factory.mktemp("logs"), 3)
    yield started
    started.stop()


def chat(message: str) -> str:
    return json.dumps({"message": message, "model": "gpt-4o"})


def turn_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event for event in events if "message_id" in event]


def test_the_answer_on_the_other_worker_goes_on_there_for_every_socket_once(workers, fake):
    conversation_id = uuid.uuid4().hex
    fake.script(tools(READ, text=["Checking."]), text("You need to ", "write tests."))
    with (
        open_socket(workers.a, conversation_id, protocol=2) as on_a,
        open_socket(workers.b, conversation_id, protocol=2) as on_b,
    ):
        on_a.send(chat("What is on my list?"))
        paused_a, paused_b = until_request(on_a), until_request(on_b)
        assert paused_a == paused_b
        request = paused_b[-1]
        on_b.send(answer(request))
        on_a.send(answer(request, approved=False))  # too late, or first: one of the two is taken
        seen_a, seen_b = until_end(on_a), until_end(on_b)
    refused = [e for e in seen_a + seen_b if "message_id" not in e]
    assert [(e["type"], e["code"]) for e in refused] == [("error", "approval_answered")]
    assert turn_events(seen_a) == turn_events(seen_b)  # frame for frame
    events = paused_a + turn_events(seen_a)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["message_id"] for e in events} == {request["message_id"]}
    assert events[-1]["finish_reason"] == "stop" and events[-1]["usage"]["requests"] == 2
    assert len(fake.requests) == 2  # resumed once
    shown = without_empty(render(events, "What is on my list?"))
    assert restored(workers.a, conversation_id) == shown
    assert restored(workers.b, conversation_id) == shown


def test_a_worker_killed_while_its_turn_waits_loses_nothing(workers, fake):
    conversation_id = uuid.uuid4().hex
    fake.script(tools(READ, text=["Checking."]), text("You need to write tests."))
    victim = workers.spare
    assert victim is not None
    with open_socket(workers.b, conversation_id, protocol=2) as on_b:
        on_victim: ClientConnection = open_socket(victim, conversation_id, protocol=2)
        on_victim.send(chat("What is on my list?"))
        paused = until_request(on_b)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(5)
        on_victim.close_socket()
        # Its lease lapsed long ago, as if the wait had lasted an hour; then a reaper's look: a
        # running turn would be interrupted now.
        with psycopg.connect(victim.env["DATABASE_URL"], autocommit=True) as database:
            lapsed = "UPDATE chat_turn SET heartbeat_at = now() - interval '1 hour' WHERE id = %s::uuid"
            assert database.execute(lapsed, [paused[-1]["message_id"]]).rowcount == 1
        time.sleep(REAP_EVERY_SECONDS + 1)
        body = conversation(workers.a, conversation_id)
        assert [a["approval_id"] for a in body["pending_approvals"]] == [paused[-1]["approval_id"]]
        assert body["live"]["seq"] == paused[-1]["seq"]
        on_b.send(answer(paused[-1]))
        rest = until_end(on_b)
    events = paused + rest
    assert "error" not in [e["type"] for e in events]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert rest[0]["result"] == "- write tests\n" and rest[-1]["finish_reason"] == "stop"
    assert rest[-1]["usage"]["requests"] == 2
    assert restored(workers.a, conversation_id) == without_empty(render(events, "What is on my list?"))
