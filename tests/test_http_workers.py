"""Turns over HTTP on two real workers (tests/test_workers.py's deployment: one PostgreSQL
database, one Redis): a turn started by POST on one worker is joined over server-sent events
and on a v2 socket on the other, cancelled from the other, and reported by either; its
webhook is delivered, signed, by the workers' sender."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.chat.sse_client import sse_events
from tests.fake_provider import FakeProvider, text, tools
from tests.servers import Server
from tests.test_end_to_end import closed_early_within, until_end
from tests.test_workers import MANY, Workers, deployment, new_conversation, open_v2, pytestmark, start_workers
from tests.webhooks.receiver import Receiver
from webhooks.signing import signature_valid

__all__ = ["deployment", "pytestmark"]  # the module's fixture and marks, as test_workers.py has them
KEY = b"w" * 32


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def workers(
    deployment: dict[str, str], receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    env = {
        **deployment,
        "TURN_DETACH_GRACE": "2",
        "WEBHOOK_URLS": receiver.url,
        "WEBHOOK_SECRET": "whsec_" + base64.b64encode(KEY).decode(),
    }
    started = start_workers("uvicorn", env, tmp_path_factory.mktemp("logs"))
    yield started
    started.stop()


def post_stream(server: Server, conversation_id: str, message: str) -> Iterator[dict[str, Any]]:
    body = {"message": message, "model": "gpt-4o", "stream": True}
    with httpx.stream("POST", f"{server.url}/conversations/{conversation_id}/messages", json=body, timeout=20) as reply:
        assert reply.status_code == 200
        yield from sse_events(reply.iter_lines())


def joined(server: Server, conversation_id: str, after_seq: int = 0) -> list[dict[str, Any]]:
    url = f"{server.url}/conversations/{conversation_id}/events?after_seq={after_seq}"
    with httpx.stream("GET", url, timeout=20) as reply:
        assert reply.status_code == 200
        return list(sse_events(reply.iter_lines()))


def test_a_turn_posted_on_one_worker_is_joined_on_the_other_over_sse_and_a_socket(workers, fake, receiver):
    conversation_id = new_conversation()
    fake.script(tools(("read_file", {"path": "todo.md"})), text(*MANY[:30], interval=0.02))
    with open_v2(workers.b, conversation_id) as on_b:
        events = post_stream(workers.a, conversation_id, "what is on my list?")
        first = [next(events), next(events)]
        from_b: list[list[dict[str, Any]]] = []
        joiner = threading.Thread(target=lambda: from_b.append(joined(workers.b, conversation_id, first[-1]["id"])))
        joiner.start()
        rest = list(events)
        joiner.join(20)
        socket_b = until_end(on_b)
    on_a = first + rest
    assert [e["id"] for e in on_a] == list(range(1, len(on_a) + 1))
    assert [e["data"] for e in from_b[0]] == [e["data"] for e in on_a[2:]]  # no gap, no duplicate
    assert socket_b == [e["data"] for e in on_a]
    message_id = on_a[0]["data"]["message_id"]
    report = httpx.get(f"{workers.b.url}/conversations/{conversation_id}/turns/{message_id}").json()
    assert report["status"] == "completed" and report["usage"] == on_a[-1]["data"]["usage"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        hooks = [h for h in receiver.received if json.loads(h.body)["data"]["message_id"] == message_id]
        if hooks:
            break
        time.sleep(0.1)
    assert len(hooks) == 1 and signature_valid(KEY, hooks[0].headers, hooks[0].body)
    assert json.loads(hooks[0].body)["type"] == "turn.completed"


def test_a_cancel_on_the_other_worker_ends_the_sse_stream_and_the_provider_call(workers, fake: FakeProvider):
    conversation_id = new_conversation()
    fake.script(text(*MANY, interval=0.02))
    events = post_stream(workers.a, conversation_id, "write a lot")
    first = next(events)
    cancelled_at = time.time()
    answer = httpx.post(f"{workers.b.url}/conversations/{conversation_id}/cancel", timeout=5)
    assert answer.json()["cancelled"] is True
    rest = list(events)
    assert rest[-1]["data"]["finish_reason"] == "cancelled"
    assert closed_early_within(fake, cancelled_at)
    report = httpx.get(f"{workers.b.url}/conversations/{conversation_id}/turns/{first['data']['message_id']}").json()
    assert report["status"] == "cancelled"
    assert httpx.post(f"{workers.b.url}/conversations/{conversation_id}/cancel").json()["cancelled"] is False
