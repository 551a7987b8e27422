"""A turn whose worker died: found by its lapsed lease, ended as `interrupted` with what its
sockets saw kept, and the sockets still open told so."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chat.models import Turn, TurnStatus
from chat.protocol import Stream, ToolCall, ToolResult
from chat.runtime import runtime
from chat.store import services
from chat.turn import turns_reap
from chat.wire import TurnFrames
from tests.chat.frontend import as_shown
from tests.conftest import connect
from tests.fake_provider import text

pytestmark = pytest.mark.django_db(transaction=True)


async def _dead_turn(conversation_id: str) -> Turn:
    """A turn as a worker left it when it died: events sent, little written."""
    turn, _ = await services.aturn_start(conversation_id=conversation_id, model="gpt-4o", user_message="list it")
    frames = TurnFrames(model="gpt-4o", conversation_id=conversation_id, message_id=str(turn.id))
    feed = runtime().feeds.get(conversation_id)
    events = [
        Stream(content="Let me look"),
        ToolCall(tool_name="list_directory", arguments={"path": "."}, call_id="call_1"),
        ToolResult(tool_name="list_directory", result="a.txt", call_id="call_1", ok=True),
    ]
    relay = runtime().relay()
    for event in events:
        frame = frames.encode(event)
        feed.append(str(turn.id), frames.seq, frame)
        if relay is not None:  # its worker wrote them to the stream too
            relay.publish(feed, str(turn.id), frames.seq, frame, end=False)
    if relay is not None:
        await relay.flush()
    await Turn.objects.filter(id=turn.id).aupdate(heartbeat_at=timezone.now() - timedelta(seconds=20))
    return turn


async def test_a_dead_workers_turn_is_interrupted_and_its_sockets_told(provider, async_client):
    socket = await connect("dead2")
    turn = await _dead_turn("dead2")
    seen = [await socket.receive() for _ in range(3)]
    assert [event["type"] for event in seen] == ["stream", "tool_call", "tool_result"]

    assert await turns_reap() == 1
    closing = await socket.until_end()
    assert [event["type"] for event in closing] == ["final_response_start", "error", "stream_end"]
    assert [event["seq"] for event in closing] == [4, 5, 6]
    assert closing[1]["code"] == "interrupted" and closing[1]["retryable"] is True
    assert closing[2]["finish_reason"] == "error"

    stored = await Turn.objects.aget(id=turn.id)
    assert stored.status == TurnStatus.INTERRUPTED
    body = (await async_client.get("/conversations/dead2")).json()
    assert "live" not in body
    assert as_shown(body["messages"]) == [
        {"role": "user", "content": "list it"},
        {"role": "assistant", "content": "Let me look"},
        {"role": "tool", "content": "🔧 list_directory", "toolName": "list_directory", "toolResult": "a.txt"},
        {"role": "assistant", "content": f"Error: {services.INTERRUPTED_ERROR}"},
    ]
    assert await turns_reap() == 0  # claimed once

    # The conversation goes on, and the model is replayed what the user saw.
    provider.script(text("Here it is"))
    events = await socket.turn("and now?")
    assert events[-1]["finish_reason"] == "stop"
    replay = provider.requests[-1].body["messages"]
    assert any(message.get("content") == "Let me look" for message in replay)
    assert any(message.get("role") == "tool" and message.get("content") == "a.txt" for message in replay)
    await socket.communicator.disconnect()


async def test_a_live_turns_lease_is_not_taken(provider):
    socket = await connect("alive1")
    provider.script(text("a", "b", interval=0.05))
    await socket.send({"message": "hi"})
    await socket.receive()
    assert await turns_reap() == 0
    assert (await socket.until_end())[-1]["finish_reason"] == "stop"
    await socket.communicator.disconnect()
