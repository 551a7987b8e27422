"""Server events as the JSON text frames the socket sends, and their timestamps.

A turn sends one frame per token, so building a frame is on the relay's hot path: the generic
encoder over a fresh dict, with a `datetime` formatted for every token, took 3.4 µs a frame;
the text-delta template below takes 0.65 µs (`python3 -m bench.encode`). The frames are byte for
byte what the generic encoder writes (tests/chat/test_wire.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from json.encoder import encode_basestring

from chat.protocol import FinalStream, Stream, TurnEvent, event_fields

_TEXT_EVENTS = (Stream, FinalStream)  # {"type", "content"}: nearly every frame of a turn
json_encode = json.JSONEncoder(ensure_ascii=False).encode  # built once: `json.dumps` with options builds one a call


class UtcClock:
    """The time as ISO 8601 in UTC, always with six fractional digits. The date and time of
    day are formatted once a second; only the microseconds are formatted for every frame."""

    def __init__(self, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.clock_ns = clock_ns  # integer nanoseconds: exact, where a float second is not
        self.cached = (-1, "")  # a second and its formatted prefix

    def now(self) -> str:
        second, micro = divmod(self.clock_ns() // 1000, 1_000_000)
        cached_second, prefix = self.cached
        if second != cached_second:
            prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            self.cached = (second, prefix)  # one assignment: another thread never sees half of it
        return f"{prefix}{micro:06d}+00:00"


timestamp_now = UtcClock().now


class TurnFrames:
    """A turn's events as frames: each carries a timestamp, the turn's model and ids, and its
    sequence number (1, 2, ... in the order sent)."""

    def __init__(self, *, model: str, conversation_id: str, message_id: str) -> None:
        self.common = {"model": model, "conversation_id": conversation_id, "message_id": message_id}
        self.seq = 0
        # What follows the timestamp, up to the sequence number: the encoder's own output for
        # the fields that stay the same all turn.
        self._tail = '", ' + json_encode(self.common)[1:-1] + ', "seq": '

    def encode(self, event: TurnEvent) -> str:
        self.seq += 1
        if type(event) in _TEXT_EVENTS:
            content = encode_basestring(event.content)
            head = f'{{"type": "{event.type}", "content": {content}, "timestamp": "'
            return f"{head}{timestamp_now()}{self._tail}{self.seq}}}"
        return json_encode({**event_fields(event), "timestamp": timestamp_now(), **self.common, "seq": self.seq})
