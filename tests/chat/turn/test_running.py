"""A turn belongs to its conversation: every v2 socket on it sees the turn, a reload continues it,
`resume` fills the gap, any socket cancels it, and it outlives its socket for the grace period.

In one process here; tests/test_workers.py runs the same across two worker processes."""

from __future__ import annotations

import asyncio
import time

import pytest
from django.test import override_settings

from chat.models import Turn
from tests.chat.frontend import as_shown, reload_render, render, without_empty
from tests.conftest import connect, page_get, page_socket
from tests.fake_provider import text

pytestmark = pytest.mark.django_db(transaction=True)
WORDS = [f"w{i} " for i in range(40)]


async def detail(async_client, conversation_id):
    body = (await async_client.get(f"/conversations/{conversation_id}")).json()
    return {**body, "messages": as_shown(body["messages"])}


async def closed_within(provider, since: float, seconds: float) -> bool:
    """Whether the provider saw its stream closed early within `seconds` of `since` (it notices
    at its next chunk's write: wait for that)."""
    await asyncio.sleep(max(since + seconds + 0.2 - time.time(), 0))
    closed = provider.requests[-1].closed_early_at
    return closed is not None and closed - since < seconds


async def until(socket, kind, timeout=10):
    seen = []
    while True:
        event = await socket.receive(timeout=timeout)
        seen.append(event)
        if event["type"] == kind:
            return seen


async def test_every_socket_on_the_conversation_sees_the_same_turn(provider, async_client):
    first, second = await connect("fan1", protocol=2), await connect("fan1", protocol=2)
    provider.script(text("Hello", " there", interval=0.02))
    started = await first.turn("hi")
    watched = await second.until_end()
    assert watched == started
    assert [event["seq"] for event in watched] == list(range(1, len(watched) + 1))
    assert without_empty(render(watched, "hi")) == (await detail(async_client, "fan1"))["messages"]
    for socket in (first, second):
        await socket.communicator.disconnect()


async def test_a_reload_mid_turn_continues_the_reply_without_duplicates(provider, async_client):
    socket = await page_socket("reload1")
    provider.script(text(*WORDS, interval=0.03))
    await socket.send({"message": "count"})
    await until(socket, "stream")
    await asyncio.sleep(0.2)
    await socket.communicator.disconnect()  # the reload: the turn goes on (TURN_DETACH_GRACE)
    restored = await page_get(async_client, "reload1")
    assert restored["live"]["seq"] >= 2
    await asyncio.sleep(0.3)  # the frontend connects about 100 ms after its GET; the reply goes on
    reloaded = await page_socket("reload1")  # the existing frontend: no resume
    rest = await reloaded.until_end()
    assert rest[0]["seq"] == restored["live"]["seq"] + 1  # what the GET did not show, and only that
    shown = reload_render(rest, restored["messages"])
    final = await detail(async_client, "reload1")
    assert "live" not in final
    assert shown[-1]["content"] == final["messages"][-1]["content"] == "".join(WORDS)
    await reloaded.communicator.disconnect()


async def test_get_then_resume_on_connect_is_gapless(provider, async_client):
    socket = await connect("resume1")
    provider.script(text(*WORDS, interval=0.03))
    await socket.send({"message": "count"})
    await until(socket, "stream")
    await socket.communicator.disconnect()
    await asyncio.sleep(0.2)
    restored = await detail(async_client, "resume1")
    live = restored["live"]
    await asyncio.sleep(0.2)  # events the next socket did not see happen meanwhile
    # The client knows its last seq when it connects: nothing live comes before the replay.
    again = await connect(f"resume1?after_seq={live['seq']}")
    replayed = await until(again, "resume_end")
    end = replayed.pop()
    assert end["message_id"] == live["message_id"] and end["live"] is True
    rest = await again.until_end()
    events = replayed + rest
    assert [event["seq"] for event in events] == list(range(live["seq"] + 1, live["seq"] + 1 + len(events)))
    assert end["seq"] == live["seq"] + len(replayed)
    shown = without_empty(reload_render(events, restored["messages"]))
    assert shown == (await detail(async_client, "resume1"))["messages"]
    assert shown[-1]["content"] == "".join(WORDS)
    await again.communicator.disconnect()


async def test_resume_replays_a_turn_that_just_ended(provider):
    socket = await connect("resume2")
    provider.script(text("one", " two"))
    events = await socket.turn("hi")
    await socket.send({"type": "resume", "after_seq": 1})
    replayed = await until(socket, "resume_end")
    assert replayed[:-1] == events[1:]
    assert replayed[-1]["live"] is False and replayed[-1]["message_id"] == events[0]["message_id"]
    await socket.communicator.disconnect()


async def test_resume_with_no_turn_says_so(provider):
    socket = await connect("resume3")
    await socket.send({"type": "resume", "after_seq": 0})
    end = await socket.receive()
    assert end["type"] == "resume_end" and end["message_id"] is None and end["live"] is False
    await socket.communicator.disconnect()


async def test_any_socket_cancels_and_a_second_turn_is_busy(provider):
    first, second = await connect("cancel2", protocol=2), await connect("cancel2", protocol=2)
    provider.script(text(*WORDS, interval=0.05))
    await first.send({"message": "long"})
    await until(second, "stream")
    await second.send({"message": "me too"})
    assert (await until(second, "error"))[-1]["code"] == "busy"
    cancelled_at = time.time()
    await second.send({"type": "cancel"})
    await first.send({"type": "cancel"})  # both at once: the turn still ends once, recorded
    for socket in (first, second):
        ended = await socket.until_end()
        assert ended[-1]["finish_reason"] == "cancelled"
        assert [event["type"] for event in ended].count("stream_end") == 1
    assert await closed_within(provider, cancelled_at, 1.0)
    assert (await Turn.objects.aget(id=ended[-1]["message_id"])).status == "cancelled"
    for socket in (first, second):
        await socket.communicator.disconnect()


@override_settings(TURN_DETACH_GRACE=0)
async def test_with_no_grace_the_last_socket_leaving_cancels_the_turn(provider):
    socket = await connect("grace0")
    provider.script(text(*WORDS, interval=0.05))
    await socket.send({"message": "long"})
    first = await socket.receive()
    left_at = time.time()
    await socket.communicator.disconnect()
    assert await closed_within(provider, left_at, 1.0)
    assert (await Turn.objects.aget(id=first["message_id"])).status == "cancelled"


@override_settings(TURN_DETACH_GRACE=0)
async def test_with_no_grace_a_second_socket_keeps_the_turn(provider):
    first, second = await connect("grace0b"), await connect("grace0b")
    provider.script(text("a", "b", "c", interval=0.1))
    await first.send({"message": "go"})
    await first.receive()
    await first.communicator.disconnect()
    assert (await second.until_end())[-1]["finish_reason"] == "stop"
    await second.communicator.disconnect()


@override_settings(TURN_DETACH_GRACE=0.5)
async def test_a_turn_nobody_watches_is_cancelled_after_the_grace(provider, async_client):
    socket = await connect("grace1")
    provider.script(text(*WORDS, interval=0.05))
    await socket.send({"message": "long"})
    first = await socket.receive()
    await socket.communicator.disconnect()
    await asyncio.sleep(0.3)
    turn = await Turn.objects.aget(id=first["message_id"])
    assert turn.status == "streaming"  # within the grace it goes on
    await asyncio.sleep(0.8)
    turn = await Turn.objects.aget(id=first["message_id"])
    assert turn.status == "cancelled"
    assert provider.requests[-1].closed_early_at is not None
    shown = (await detail(async_client, "grace1"))["messages"]
    assert shown[-1]["role"] == "assistant" and shown[-1]["content"].startswith("w0 ")


@override_settings(TURN_DETACH_GRACE=5)
async def test_a_reconnect_within_the_grace_gets_the_end(provider, async_client):
    socket = await connect("grace2")
    provider.script(text(*WORDS[:10], interval=0.05))
    await socket.send({"message": "ten"})
    await socket.receive()
    await socket.communicator.disconnect()
    await asyncio.sleep(0.2)
    again = await connect("grace2")
    assert (await again.until_end())[-1]["finish_reason"] == "stop"
    assert (await detail(async_client, "grace2"))["messages"][-1]["content"] == "".join(WORDS[:10])
    await again.communicator.disconnect()
