"""Events as frames: the text-delta template writes what the generic encoder writes, and every
timestamp is ISO 8601 in UTC with microseconds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from chat import wire
from chat.protocol import FinalResponseStart, FinalStream, Stream, StreamEnd, ToolCall
from chat.wire import TurnFrames, UtcClock, json_encode

STAMP = "2026-11-24T12:00:00.000001+00:00"
TURN = {"model": "gpt-4o", "conversation_id": "conv-ü1", "message_id": "9f1c"}
HARD_TEXT = 'a "quote" \\ back\nnew\tline \x00\x1f é 中文 😀 </script> \u2028'


@pytest.fixture
def frames(monkeypatch: pytest.MonkeyPatch) -> TurnFrames:
    monkeypatch.setattr(wire, "timestamp_now", lambda: STAMP)
    return TurnFrames(**TURN)


@pytest.mark.parametrize("event", [Stream(content=HARD_TEXT), FinalStream(content=HARD_TEXT), Stream(content="x")])
def test_text_frames_are_the_generic_encoders_bytes(frames: TurnFrames, event: Stream | FinalStream) -> None:
    generic = json_encode({"type": event.type, "content": event.content, "timestamp": STAMP, **TURN, "seq": 1})
    assert frames.encode(event) == generic
    assert json.loads(generic)["content"] == event.content


def test_every_event_kind_carries_the_turn_fields_and_the_next_seq(frames: TurnFrames) -> None:
    events = [
        Stream(content="hi"),
        ToolCall(tool_name="ls", arguments={"path": "é"}, call_id="c1"),
        FinalResponseStart(),
        FinalStream(content="done"),
        StreamEnd(finish_reason="stop", usage={"requests": 1}),
    ]
    decoded = [json.loads(frames.encode(event)) for event in events]
    assert [frame["type"] for frame in decoded] == [event.type for event in events]
    assert [frame["seq"] for frame in decoded] == [1, 2, 3, 4, 5]
    for frame in decoded:
        assert {key: frame[key] for key in TURN} == TURN and frame["timestamp"] == STAMP
    assert decoded[1]["arguments"] == {"path": "é"} and decoded[4]["usage"] == {"requests": 1}


def test_clock_writes_utc_iso_8601_with_six_fractional_digits() -> None:
    stamps = iter([1_700_000_000_999_999_999, 1_700_000_001_000_000_000, 1_700_000_001_000_001_500])
    clock = UtcClock(clock_ns=lambda: next(stamps))
    assert [clock.now() for _ in range(3)] == [
        "2023-11-14T22:13:20.999999+00:00",
        "2023-11-14T22:13:21.000000+00:00",  # a new second: the date and time are formatted again
        "2023-11-14T22:13:21.000001+00:00",
    ]


def test_clock_reads_the_real_time() -> None:
    stamp = datetime.fromisoformat(UtcClock().now())
    assert stamp.utcoffset() == timedelta(0)
    assert abs(stamp - datetime.now(UTC)) < timedelta(seconds=1)
