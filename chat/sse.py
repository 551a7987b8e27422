"""Server-sent events: a turn's frames as an HTTP response (`text/event-stream`).

An SSE response is one more watcher of the conversation, like a v2 socket (chat/turn/fanout.py):
the watcher hands it the same frames, same `seq`, and it writes each as `id: <seq>`,
`event: <type>`, `data: <frame>`. It follows one turn and ends after that turn's `stream_end`.
A client that goes away is a socket leaving: the watcher is closed, and the turn's detach grace
starts if it was the conversation's last (a background turn has none).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from django.http import StreamingHttpResponse

from chat.turn import Watcher, unwatch

KEEPALIVE_SECONDS = 15.0  # a comment line while a tool runs: proxies and clients see a live stream
_TYPE_AT = len('{"type": "')  # every frame begins with its type (chat/wire.py)
_SEQ = '"seq": '  # and ends with its seq


def sse_event(frame: str) -> tuple[int, str]:
    """One frame as an SSE event, and its seq (a frame is one line of JSON: nothing to split)."""
    kind = frame[_TYPE_AT : frame.index('"', _TYPE_AT)]
    seq = frame[frame.rindex(_SEQ) + len(_SEQ) : -1]
    return int(seq), f"id: {seq}\nevent: {kind}\ndata: {frame}\n\n"


class TurnStream:
    """The frames a watcher sends, held until the response's iterator writes them. They are
    written in batches (all that came since the last write): a fast turn costs fewer writes."""

    def __init__(self, turn_id: str | None = None) -> None:
        self.turn_id = turn_id  # the turn it follows: set by the start, or by `resume_end`
        self.pending: list[str] = []
        self.ready = asyncio.Event()
        self.watcher: Watcher | None = None

    async def send(self, frame: str) -> None:  # the watcher's `Send`
        self.pending.append(frame)
        self.ready.set()

    async def next_batch(self, within: float | None = None) -> list[str]:
        """What came since the last call; waits for something (empty after `within` seconds)."""
        if not self.pending:
            try:
                # Not `wait_for`, which on Python 3.11 makes a task of the wait: one per batch.
                async with asyncio.timeout(within):
                    await self.ready.wait()
            except TimeoutError:
                return []
        self.ready.clear()
        batch, self.pending = self.pending, []
        return batch

    async def replayed(self) -> list[str] | None:
        """After `watch(resume_after=n)`: the turn's frames after `n`, up to `resume_end`, which
        names the turn (then followed); None when the conversation has no turn to show."""
        frames: list[str] = []
        while True:
            batch = await self.next_batch()
            for index, frame in enumerate(batch):
                if not frame.startswith('{"type": "resume_end"'):
                    frames.append(frame)
                    continue
                self.pending[:0] = batch[index + 1 :]  # live frames that came with it
                if self.pending:
                    self.ready.set()
                self.turn_id = json.loads(frame)["message_id"]
                return frames if self.turn_id is not None else None

    async def events(self, first: list[str], *, joined: bool, after: int = 0) -> AsyncIterator[bytes]:
        """The response's body: `first`, then the turn's frames as they come, until its
        `stream_end`; closes the watcher however it ends (the client left: a socket leaving).
        `joined`: the watcher is on the turn already; otherwise frames of the turn before it
        (ending as this one started) may come first, and are skipped, as are its own up to
        `after`."""
        marker = f'"message_id": "{self.turn_id}"'
        try:
            batch = first
            while True:
                out: list[str] = []
                done = False
                for frame in batch:
                    if marker not in frame:
                        if joined:
                            done = True  # a newer turn began: this one's end never reached this worker
                            break
                        continue
                    joined = True
                    seq, event = sse_event(frame)
                    if seq > after:
                        out.append(event)
                    if frame.startswith('{"type": "stream_end"'):
                        done = True
                        break
                if out:
                    yield "".join(out).encode()
                if done:
                    return
                batch = await self.next_batch(KEEPALIVE_SECONDS)
                if not batch:
                    yield b": keepalive\n\n"
        finally:
            if self.watcher is not None:
                await asyncio.shield(unwatch(self.watcher))


def sse_response(body: AsyncIterator[bytes], status: int = 200) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, status=status, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on as it comes (deploy/nginx.conf)
    return response
