"""Server-sent events from turn frames: the event lines, keep-alive comments, and the end."""

from __future__ import annotations

import asyncio

import pytest

from chat import sse
from chat.protocol import Stream, StreamEnd
from chat.sse import TurnStream, sse_event
from chat.wire import TurnFrames


def test_an_event_is_the_frame_with_its_seq_and_type():
    frames = TurnFrames(model="gpt-4o", conversation_id="c", message_id="t1")
    frames.encode(Stream(content="x"))
    frame = frames.encode(Stream(content='tricky "seq": 99 }\n'))
    seq, event = sse_event(frame)
    assert seq == 2
    assert event == f"id: 2\nevent: stream\ndata: {frame}\n\n"
    assert "\n" not in frame  # a frame is one line: nothing to split over several data lines


async def test_a_quiet_turn_gets_keepalive_comments_and_the_stream_ends_after_stream_end(monkeypatch):
    monkeypatch.setattr(sse, "KEEPALIVE_SECONDS", 0.05)
    frames = TurnFrames(model="gpt-4o", conversation_id="c", message_id="t1")
    stream = TurnStream("t1")
    body = stream.events([], joined=True)
    assert await anext(body) == b": keepalive\n\n"
    await stream.send(frames.encode(Stream(content="hi")))
    await stream.send(frames.encode(StreamEnd(finish_reason="stop", usage={})))
    written = await anext(body)
    assert written.count(b"\n\n") == 2 and b"event: stream_end" in written  # one write for both
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(body), 1)
