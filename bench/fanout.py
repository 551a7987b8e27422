"""The sockets of a fan-out round (bench.workers) and what they saw: each turn's starter and its
watcher on the other worker, and the comparison of their events."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from bench.measure import ChatClient, StreamTiming, percentile, stamps
from bench.run import MODEL
from tests.servers import Server

CHUNKS = ("stream", "final_stream")
# Watchers may end after their starters: the round waits while any of them still receives
# (a relay that lags is late, not lossy), until no watcher got a frame for DRAIN_IDLE seconds.
DRAIN_IDLE, DRAIN_MAX = 5.0, 120.0
# Per fan-out round: events a watcher lacks (of which `lost_gaps` before the last it got: skipped,
# not merely cut short), got out of order or twice, frames that differ from the starter's, turns
# not exactly the starter's, turns only the watcher saw, frames of no turn, and starter turns whose
# own seq list is not 1..n.
COUNTS = (
    "lost", "lost_gaps", "reordered", "duplicated", "differing_frames", "differing_turns", "extra_turns",
    "stray_frames", "starter_gaps",
)  # fmt: skip
EXAMPLES = 6  # anomalies kept in the report, to see what went wrong


@dataclass
class Seen:
    """One socket's view of one turn: its frames in the order they arrived."""

    frames: list[str] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)  # time.time() at each frame's arrival
    latency: list[float] = field(default_factory=list)  # per chunk: arrival minus the provider's stamp
    first_chunk: float | None = None
    chunks: int = 0
    finish: str | None = None

    def add(self, text: str, event: dict[str, Any], now: float) -> None:
        self.frames.append(text)
        self.seqs.append(event.get("seq", -1))
        self.arrived.append(now)
        if event["type"] in CHUNKS:
            self.chunks += 1
            self.first_chunk = self.first_chunk or now
            self.latency += [now - sent for sent in stamps(event["content"])]
        elif event["type"] == "stream_end":
            self.finish = event.get("finish_reason")


class Socket:
    """A client socket that records every turn it is sent, by message id, in a reader task of
    its own: a watcher sends nothing and cannot wait on replies of its own, and reading the
    starter the same way makes the two views comparable frame for frame."""

    def __init__(self, url: str) -> None:
        self.client = ChatClient(url)
        self.turns: dict[str, Seen] = {}
        self.ended: asyncio.Queue[str | None] = asyncio.Queue()  # turns ended; None: a lone error
        self.strays: list[dict[str, Any]] = []  # frames of no turn (`busy`, `pong`, ...)
        self.reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.client.open()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for text in self.client.ws:
            now = time.time()
            event = json.loads(text)
            turn_id = event.get("message_id")
            if turn_id is None:
                self.strays.append(event)
                if event["type"] == "error":
                    self.ended.put_nowait(None)
                continue
            self.turns.setdefault(turn_id, Seen()).add(text, event, now)
            if event["type"] == "stream_end":
                self.ended.put_nowait(turn_id)

    async def turn(self) -> StreamTiming:
        """Start a turn and wait for its end; its timing as `ChatClient.turn` has it."""
        started = time.time()
        await self.client.ws.send(json.dumps({"message": "hi", "model": MODEL}))
        turn_id = await asyncio.wait_for(self.ended.get(), 120)
        if turn_id is None:
            return StreamTiming()
        seen = self.turns[turn_id]
        ttft = None if seen.first_chunk is None else seen.first_chunk - started
        return StreamTiming(ttft=ttft, chunk_latency=seen.latency, chunks=seen.chunks, ok=seen.finish == "stop")

    async def close(self) -> None:
        await self.client.close()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


def ws_url(server: Server, conversation_id: str) -> str:
    return f"ws://127.0.0.1:{server.port}/ws/{conversation_id}"


async def sockets_open(sockets: list[Socket]) -> None:
    for start in range(0, len(sockets), 50):  # in batches: a burst of handshakes is not what we measure
        await asyncio.gather(*(socket.open() for socket in sockets[start : start + 50]))


async def drain(starters: list[Socket], watchers: list[Socket]) -> float:
    """Wait until every watcher has the end of every turn its starter saw, or stops receiving;
    how long that took."""
    started = progressed = time.monotonic()
    received = -1
    while time.monotonic() < min(progressed + DRAIN_IDLE, started + DRAIN_MAX):
        if all(
            (seen := watcher.turns.get(turn_id)) is not None and seen.finish is not None
            for starter, watcher in zip(starters, watchers, strict=True)
            for turn_id in starter.turns
        ):
            break
        now_received = sum(len(seen.frames) for watcher in watchers for seen in watcher.turns.values())
        if now_received != received:
            received, progressed = now_received, time.monotonic()
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def compare(starters: list[Socket], watchers: list[Socket]) -> dict[str, Any]:
    """Each watcher against its starter, turn by turn. Latencies are of each conversation's
    last turn, the one `load` measures (steady: the second, run beside K - 1 other streams)."""
    counts = dict.fromkeys(COUNTS, 0)
    examples: list[dict[str, Any]] = []
    latency: list[float] = []
    hop: list[float] = []
    delivered = 0
    for starter, watcher in zip(starters, watchers, strict=True):
        delivered += sum(seen.chunks for socket in (starter, watcher) for seen in socket.turns.values())
        counts["extra_turns"] += len(watcher.turns.keys() - starter.turns.keys())
        counts["stray_frames"] += len(watcher.strays) + len(starter.strays)
        for index, (turn_id, sent) in enumerate(starter.turns.items()):
            got = watcher.turns.get(turn_id, Seen())
            by_seq = dict(zip(sent.seqs, sent.frames, strict=True))
            counts["starter_gaps"] += sent.seqs != list(range(1, len(sent.seqs) + 1))
            missing = sorted(set(sent.seqs) - set(got.seqs))
            counts["lost"] += len(missing)
            counts["lost_gaps"] += sum(seq < max(got.seqs, default=0) for seq in missing)
            counts["duplicated"] += len(got.seqs) - len(set(got.seqs))
            counts["reordered"] += sum(later < earlier for earlier, later in pairwise(got.seqs))
            differing = [
                (seq, frame) for seq, frame in zip(got.seqs, got.frames, strict=True) if by_seq.get(seq, frame) != frame
            ]
            counts["differing_frames"] += len(differing)
            counts["differing_turns"] += got.frames != sent.frames
            if (missing or differing) and len(examples) < EXAMPLES:
                examples.append(
                    {
                        "conversation": starter.client.url.rsplit("/", 1)[-1],
                        "turn": index + 1,
                        "starter_seqs": len(sent.seqs),
                        "watcher_seqs": f"{got.seqs[:1]}..{got.seqs[-1:]} ({len(got.seqs)})",
                        "missing": f"{missing[:3]}..{missing[-1:]} ({len(missing)})" if missing else None,
                        "differing": [
                            {"seq": seq, "starter": by_seq[seq], "watcher": frame} for seq, frame in differing[:2]
                        ],
                    }
                )
            if index == len(starter.turns) - 1:
                latency += got.latency
                arrived = dict(zip(sent.seqs, sent.arrived, strict=True))
                hop += [at - arrived[seq] for seq, at in zip(got.seqs, got.arrived, strict=True) if seq in arrived]
    return {
        "delivered_chunks": delivered,
        **counts,
        "watcher_chunk_p50_ms": ms(percentile(latency, 50)),
        "watcher_chunk_p99_ms": ms(percentile(latency, 99)),
        "hop_p50_ms": ms(percentile(hop, 50)),
        "hop_p99_ms": ms(percentile(hop, 99)),
        "examples": examples,
    }


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)
