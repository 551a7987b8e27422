"""Turns that run on another worker, through Redis: their events reach the sockets here, in
order, a socket here can resume them, and a cancel here reaches their worker."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.conf import settings
from redis import asyncio as aioredis

from chat.protocol import Stream, StreamEnd
from chat.store import services
from chat.turn.relay import CONTROL_CHANNEL, log_key
from chat.wire import TurnFrames
from tests.conftest import connect

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="the relay runs only with REDIS_URL"),
]


class OtherWorker:
    """What another worker's relay writes for a turn it runs: the conversation's stream."""

    def __init__(self, conversation_id: str, turn_id: str) -> None:
        self.client = aioredis.from_url(settings.REDIS_URL)
        self.key = log_key(conversation_id)
        self.turn_id = turn_id
        self.frames = TurnFrames(model="gpt-4o", conversation_id=conversation_id, message_id=turn_id)
        self.sent: list[dict] = []

    async def send(self, event) -> None:
        frame = self.frames.encode(event)
        fields = {"turn": self.turn_id, "seq": self.frames.seq, "frame": frame}
        if isinstance(event, StreamEnd):
            fields["end"] = 1
        if self.frames.seq == 1:
            await self.client.delete(self.key)
        await self.client.xadd(self.key, fields)
        self.sent.append(json.loads(frame))


async def test_a_turn_on_another_worker_reaches_the_sockets_here(provider, async_client):
    turn, _ = await services.aturn_start(conversation_id="remote1", model="gpt-4o", user_message="hi")
    other = OtherWorker("remote1", str(turn.id))
    socket = await connect("remote1")
    for word in ("one ", "two ", "three"):
        await other.send(Stream(content=word))
    received = [await socket.receive(timeout=5) for _ in range(3)]
    assert received == other.sent

    body = (await async_client.get("/conversations/remote1")).json()
    assert body["live"] == {"message_id": str(turn.id), "seq": 3}
    assert body["messages"][-1] == {"role": "assistant", "content": "one two three", "message_id": str(turn.id)}

    # A socket that reconnects here resumes from the stream: no gap, no duplicate.
    late = await connect("remote1")
    await late.send({"type": "resume", "after_seq": 1})
    replayed = [await late.receive(timeout=5) for _ in range(3)]
    assert replayed[:2] == other.sent[1:]
    assert replayed[2]["type"] == "resume_end" and replayed[2]["live"] is True and replayed[2]["seq"] == 3
    usage = {"requests": 1, "input_tokens": 1, "output_tokens": 3, "total_tokens": 4, "cost_usd": None}
    await other.send(StreamEnd(finish_reason="stop", usage=usage))
    assert await socket.receive(timeout=5) == other.sent[-1]
    assert await late.receive(timeout=5) == other.sent[-1]
    for each in (socket, late):
        await each.communicator.disconnect()


async def test_a_cancel_here_reaches_the_worker_running_the_turn(provider):
    listener = aioredis.from_url(settings.REDIS_URL).pubsub()
    await listener.subscribe(CONTROL_CHANNEL)
    socket = await connect("remote2")
    await socket.send({"type": "cancel"})
    async with asyncio.timeout(5):
        while True:
            message = await listener.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None and json.loads(message["data"])["op"] == "cancel":
                break
    assert json.loads(message["data"])["conversation_id"] == "remote2"
    await listener.aclose()
    await socket.communicator.disconnect()
