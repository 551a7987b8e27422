"""Turns over HTTP: a turn started by POST, streamed as server-sent events or run in the
background, joined from its events, cancelled and looked up; the same turn sockets see."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest
from django.test import override_settings

from chat.models import Turn, TurnStatus
from tests.chat.sse_client import request
from tests.conftest import connect
from tests.fake_provider import text, tools

pytestmark = pytest.mark.django_db(transaction=True)


def types(events):
    return [event["event"] for event in events]


async def wait_for_status(conversation_id: str, message_id: str, status: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        report = await (await request("GET", f"/conversations/{conversation_id}/turns/{message_id}")).json()
        if report["status"] == status or time.monotonic() > deadline:
            return report
        await asyncio.sleep(0.05)


async def test_a_streamed_turn_is_the_events_a_socket_gets(provider):
    provider.script(tools(("ls", {})), text("Hel", "lo"))
    response = await request("POST", "/conversations/h1/messages", {"message": "hi", "stream": True})
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-accel-buffering"] == "no"
    events = await response.until_end()
    assert types(events) == [
        "tool_call",
        "tool_result",
        "final_response_start",
        "final_stream",
        "final_stream",
        "stream_end",
    ]
    assert [e["id"] for e in events] == [e["data"]["seq"] for e in events] == list(range(1, 7))
    assert all(e["data"]["type"] == e["event"] for e in events)
    assert events[-1]["data"]["finish_reason"] == "stop"
    message_id = events[0]["data"]["message_id"]
    report = await (await request("GET", f"/conversations/h1/turns/{message_id}")).json()
    assert report == {
        "message_id": message_id,
        "status": "completed",
        "finish_reason": "stop",
        "usage": events[-1]["data"]["usage"],
        "error": None,
    }
    detail = await (await request("GET", "/conversations/h1")).json()
    assert [m["content"] for m in detail["messages"]][-1] == "Hello"


async def test_202_then_joined_from_the_start_by_events(provider):
    provider.script(text("a", "b", "c", interval=0.05))
    started = await request("POST", "/conversations/h2/messages", {"message": "hi"})
    assert started.status == 202
    body = await started.json()
    assert body["conversation_id"] == "h2" and body["status"] == "running"
    joined = await request("GET", "/conversations/h2/events?after_seq=0")
    assert joined.status == 200
    events = await joined.until_end()
    assert [e["id"] for e in events] == [1, 2, 3, 4]
    assert "".join(e["data"].get("content", "") for e in events) == "abc"
    assert {e["data"]["message_id"] for e in events} == {body["message_id"]}


async def test_events_resume_after_last_event_id_with_no_gap_and_no_duplicate(provider):
    provider.script(text(*"abcdef", interval=0.05))
    response = await request("POST", "/conversations/h3/messages", {"message": "hi", "stream": True})
    first = [await response.next_event(), await response.next_event()]
    await response.hang_up()
    rejoined = await request("GET", "/conversations/h3/events", headers={"Last-Event-ID": str(first[-1]["id"])})
    rest = await rejoined.until_end()
    assert [e["id"] for e in first + rest] == list(range(1, 8))
    assert "".join(e["data"].get("content", "") for e in first + rest) == "abcdef"
    # The turn is over and the client has it all: nothing more (an EventSource stops on 204).
    again = await request("GET", "/conversations/h3/events", headers={"Last-Event-ID": "7"})
    assert again.status == 204


async def test_events_of_a_conversation_with_no_turn_is_204(provider):
    await request("POST", "/conversations", {"session_id": "h4"})
    assert (await request("GET", "/conversations/h4/events?after_seq=0")).status == 204


async def test_a_turn_started_over_http_shows_on_a_v2_socket_and_the_other_way_round(provider):
    socket = await connect("h5", protocol=2)
    try:
        provider.script(text("over ", "http"))
        response = await request("POST", "/conversations/h5/messages", {"message": "hi", "stream": True})
        over_http = await response.until_end()
        on_socket = await socket.until_end()
        assert [e["data"] for e in over_http] == on_socket
        provider.script(text("over ", "socket", interval=0.05))
        await socket.send({"message": "again"})
        first = await socket.receive()
        joined = await request("GET", "/conversations/h5/events?after_seq=0")
        from_events = await joined.until_end()
        rest = await socket.until_end()
        assert [e["data"] for e in from_events] == [first, *rest]
    finally:
        await socket.communicator.disconnect()


async def test_a_second_turn_while_one_runs_is_409_busy(provider):
    provider.script(text("slow", ttft=1.0))
    started = await request("POST", "/conversations/h6/messages", {"message": "hi"})
    assert started.status == 202
    busy = await request("POST", "/conversations/h6/messages", {"message": "again", "stream": True})
    assert busy.status == 409
    assert await busy.json() | {"detail": None} == {
        "detail": None,
        "code": "busy",
        "error": "A reply is still being generated in this conversation; wait for it or cancel it.",
    }
    cancel = await request("POST", "/conversations/h6/cancel")
    assert (await cancel.json())["cancelled"] is True
    report = await wait_for_status("h6", (await started.json())["message_id"], "cancelled")
    assert report["status"] == "cancelled" and report["finish_reason"] == "cancelled"
    idle = await request("POST", "/conversations/h6/cancel")
    assert (await idle.json())["cancelled"] is False


async def test_cancel_closes_the_provider_stream_and_ends_the_sse_stream(provider):
    provider.script(text(*("x" * 200), interval=0.05))
    response = await request("POST", "/conversations/h7/messages", {"message": "hi", "stream": True})
    await response.next_event()
    since = time.time()
    assert (await (await request("POST", "/conversations/h7/cancel")).json())["cancelled"] is True
    events = await response.until_end()
    assert events[-1]["data"]["finish_reason"] == "cancelled"
    provider.wait_for_requests(1)
    deadline = time.monotonic() + 2
    while provider.requests[-1].closed_early_at is None and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert provider.requests[-1].closed_early_at is not None
    assert provider.requests[-1].closed_early_at - since < 1.0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"message": "  "}, "empty_message"),
        ({"message": 3}, "invalid_message"),
        ({"message": "hi", "stream": "yes"}, "invalid_message"),
        ({"message": "hi", "model": "no-such-model"}, "unknown_model"),
        ({"message": "x" * 40}, "message_too_large"),
        (b"{not json", "invalid_json"),
        ({"type": "cancel"}, "invalid_message"),
    ],
)
@override_settings(CHAT_MAX_MESSAGE_CHARS=30)
async def test_a_bad_body_is_400_with_its_code_and_starts_nothing(provider, body, code):
    response = await request("POST", "/conversations/h8/messages", body)
    assert response.status == 400
    assert (await response.json())["code"] == code
    assert not await Turn.objects.filter(conversation_id="h8").aexists()
    assert provider.requests == []


async def test_rate_limited_turns_are_429(provider):
    from dreamytin.config import Rate

    provider.script(text("one"))
    with override_settings(RATE_LIMIT_TURNS=Rate(1, 60)):
        first = await request("POST", "/conversations/h9/messages", {"message": "hi", "stream": True})
        await first.until_end()
        second = await request("POST", "/conversations/h9/messages", {"message": "again"})
    assert second.status == 429
    assert (await second.json())["code"] == "rate_limited"
    assert int(second.headers["retry-after"]) >= 1


async def test_budget_exceeded_is_402_and_no_provider_is_called(provider):
    with override_settings(BUDGET_USD_PER_DAY=Decimal(0)):
        response = await request("POST", "/conversations/h10/messages", {"message": "hi"})
    assert response.status == 402
    assert (await response.json())["code"] == "budget_exceeded"
    assert provider.requests == []


async def test_unknown_turn_and_bad_ids_are_404_and_400(provider):
    provider.script(text("ok"))
    await (await request("POST", "/conversations/h11/messages", {"message": "hi", "stream": True})).until_end()
    unknown = await request("GET", "/conversations/h11/turns/00000000-0000-0000-0000-000000000000")
    assert unknown.status == 404 and (await unknown.json())["code"] == "unknown_message"
    assert (await request("GET", "/conversations/h11/turns/not-a-uuid")).status == 404
    assert (await request("GET", "/conversations/nope/events?after_seq=0")).status == 404
    assert (await request("POST", "/conversations/nope/cancel")).status == 404
    assert (await request("GET", "/conversations/h11/events")).status == 400  # says nowhere where to start
    assert (await request("POST", "/conversations/bad%20id/messages", {"message": "hi"})).status in (400, 404)


@override_settings(TURN_DETACH_GRACE=0)
async def test_leaving_an_sse_stream_is_a_socket_leaving_unless_background(provider):
    provider.script(text(*("x" * 100), interval=0.05))
    response = await request("POST", "/conversations/h12/messages", {"message": "hi", "stream": True})
    message_id = (await response.next_event())["data"]["message_id"]
    await response.hang_up()
    report = await wait_for_status("h12", message_id, "cancelled")
    assert report["finish_reason"] == "cancelled"

    provider.script(text(*("y" * 20), interval=0.05))
    background = await request(
        "POST", "/conversations/h12/messages", {"message": "go", "stream": True, "background": True}
    )
    message_id = (await background.next_event())["data"]["message_id"]
    await background.hang_up()
    report = await wait_for_status("h12", message_id, "completed")
    assert report["status"] == "completed"
    done = await Turn.objects.aget(id=message_id)
    assert done.status == TurnStatus.COMPLETE


@override_settings(AUTH_MODE="none")
async def test_none_mode_serves_loopback_only(provider):
    response = await request("POST", "/conversations/h13/messages", {"message": "hi"}, client=("203.0.113.9", 4000))
    assert response.status == 403
    assert provider.requests == []


@override_settings(AUTH_MODE="django")
async def test_django_mode_needs_a_token_and_keeps_each_users_turns_their_own(provider, django_user_model):
    from asgiref.sync import sync_to_async

    from accounts.tokens import token_create

    alice = await django_user_model.objects.acreate(username="alice")
    bob = await django_user_model.objects.acreate(username="bob")
    _, alice_token = await sync_to_async(token_create)(user=alice)
    _, bob_token = await sync_to_async(token_create)(user=bob)
    as_alice, as_bob = {"Authorization": f"Bearer {alice_token}"}, {"Authorization": f"Bearer {bob_token}"}
    assert (await request("POST", "/conversations/h14/messages", {"message": "hi"})).status == 401
    provider.script(text("mine"))
    mine = await request("POST", "/conversations/h14/messages", {"message": "hi", "stream": True}, headers=as_alice)
    events = await mine.until_end()
    message_id = events[0]["data"]["message_id"]
    for method, path, body in (
        ("POST", "/conversations/h14/messages", {"message": "hijack"}),
        ("GET", "/conversations/h14/events?after_seq=0", None),
        ("POST", "/conversations/h14/cancel", None),
        ("GET", f"/conversations/h14/turns/{message_id}", None),
    ):
        refused = await request(method, path, body, headers=as_bob)
        assert refused.status == 404, path
    assert len(provider.requests) == 1
    report = await request("GET", f"/conversations/h14/turns/{message_id}", headers=as_alice)
    assert (await report.json())["status"] == "completed"
