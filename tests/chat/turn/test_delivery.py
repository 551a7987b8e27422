"""A page's v1 sockets share its turns: one of them shows each turn (chat/turn/delivery.py).

In one process here; tests/test_frontend.py drives the real frontend's habits on each server
and across two workers."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from django.conf import settings
from redis import asyncio as aioredis

from chat.turn import delivery
from chat.turn.delivery import Claim, RedisClaims
from tests.conftest import page_socket
from tests.fake_provider import text

pytestmark = pytest.mark.django_db(transaction=True)
WORDS = [f"w{i} " for i in range(40)]


def reply_text(events: list[dict]) -> str:
    return "".join(event.get("content", "") for event in events if event["type"] in ("stream", "final_stream"))


async def test_only_the_sending_socket_of_a_page_shows_the_reply(provider):
    stale, sender = await page_socket("page1"), await page_socket("page1")
    provider.script(text(*WORDS[:5], interval=0.01))
    events = await sender.turn("hi")
    assert reply_text(events) == "".join(WORDS[:5])
    assert await stale.communicator.receive_nothing(timeout=0.5)  # the page renders it once
    for socket in (stale, sender):
        await socket.communicator.disconnect()


async def test_another_socket_of_the_page_goes_on_where_the_sender_stopped(provider, async_client):
    other, sender = await page_socket("page2"), await page_socket("page2")
    provider.script(text(*WORDS, interval=0.03))
    await sender.send({"message": "count"})
    first = [await sender.receive() for _ in range(5)]
    await sender.communicator.disconnect()  # the page closes the socket it sent on
    rest = await other.until_end()
    assert [event["seq"] for event in first + rest] == list(range(1, len(first) + len(rest) + 1))
    assert reply_text(first + rest) == "".join(WORDS)
    await other.communicator.disconnect()


async def test_each_page_shows_the_turn_once(provider):
    mine = await page_socket("page4")
    other_browser = await page_socket("page4", user_agent="Mozilla/5.0 (Macintosh) Firefox/133.0")
    provider.script(text(*WORDS[:5], interval=0.01))
    events = await mine.turn("hi")
    assert await other_browser.until_end() == events
    for socket in (mine, other_browser):
        await socket.communicator.disconnect()


async def test_hello_makes_a_socket_see_every_turn(provider):
    first, second = await page_socket("page5"), await page_socket("page5")
    await second.send({"type": "hello", "protocol": 2})
    assert (await second.receive())["protocol"] == 2
    provider.script(text(*WORDS[:5], interval=0.01))
    events = await first.turn("hi")
    assert await second.until_end() == events
    for socket in (first, second):
        await socket.communicator.disconnect()


@pytest.mark.skipif(not settings.REDIS_URL, reason="in one process a claim dies with its sockets")
async def test_a_deliverer_whose_worker_died_is_replaced_from_where_it_last_said(monkeypatch):
    """Its worker never hands over: once its claim lapses, a standby on another worker goes on
    after what the dead one last said it had sent (no gap; at worst a few events twice)."""
    monkeypatch.setattr(delivery, "CLAIM_SECONDS", 0.5)

    async def announce(conversation_id: str) -> None:
        pass

    clients = [aioredis.from_url(settings.REDIS_URL) for _ in range(2)]
    dead, live = (RedisClaims(client, announce) for client in clients)
    where = {"conversation_id": f"lapse{uuid.uuid4().hex[:8]}", "turn_id": "t1", "client": "page"}
    assert (await dead.claim(**where, socket_id="a", joined_at=0)).won
    dead.renew(**where, socket_id="a", sent=7)
    await dead.renew_all()
    assert await live.claim(**where, socket_id="b", joined_at=3) == Claim(False)  # still alive
    await asyncio.sleep(0.7)  # the worker died: nothing renews its claim
    assert await live.claim(**where, socket_id="b", joined_at=3) == Claim(True, 7)
    assert await dead.claim(**where, socket_id="a", joined_at=0) == Claim(False)  # taken for good
    for client in clients:
        await client.aclose()
