"""Clients and measurements shared by the benchmark: stamped chunks, percentiles, process CPU
and memory from /proc."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class StreamTiming:
    ttft: float | None = None  # seconds from request to first chunk
    chunk_latency: list[float] = field(default_factory=list)  # receive time minus send stamp
    chunks: int = 0
    ok: bool = False


def django_setup(database_url: str, **environ: str) -> None:
    """Django on `database_url` (never the server's database), as in production: DEBUG off (in
    DEBUG Django keeps the text of the last 9,000 queries, bulk inserts among them), no Redis;
    migrated."""
    os.environ.update(
        DATABASE_URL=database_url,
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="dreamytin.settings",
        DEBUG="0",
        SECRET_KEY="bench-only",
        **environ,
    )
    os.environ.pop("REDIS_URL", None)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


ARRIVALS = ("burst", "steady")


async def load(k: int, *, arrival: str, span: float, turn: Callable[[int], Awaitable[StreamTiming]]) -> Load:
    """K clients each running chat turns (`turn(i)` is client i's next turn).

    burst: every client starts one turn at the same instant (the worst case: K turn starts
    queue behind each other). steady: client i starts at i * span / K (span: one reply's
    length) and runs two turns back to back; every second turn runs beside K - 1 other
    streams while turns start at a steady rate, and only those are measured.
    """
    if arrival == "burst":
        return Load.of(await asyncio.gather(*(turn(i) for i in range(k)), return_exceptions=True), turns_per_client=1)

    turns = 2

    async def client(i: int) -> list[StreamTiming]:
        await asyncio.sleep(i * span / k)
        return [await turn(i) for _ in range(turns)]

    results = await asyncio.gather(*(client(i) for i in range(k)), return_exceptions=True)
    flat: list[StreamTiming | BaseException] = []
    for result in results:
        flat += result if isinstance(result, list) else [result] * turns
    return Load.of(flat, turns_per_client=turns)


@dataclass
class Load:
    every: list[StreamTiming]  # every turn (a failed one as an empty timing), for CPU per chunk
    measured: list[StreamTiming]  # the turns whose latency is reported

    @classmethod
    def of(cls, results: list[StreamTiming | BaseException], *, turns_per_client: int) -> Load:
        """`results` in client order, `turns_per_client` each; each client's last turn is measured."""
        timings = [t if isinstance(t, StreamTiming) else StreamTiming() for t in results]
        return cls(every=timings, measured=timings[turns_per_client - 1 :: turns_per_client])


def results_write(path: str, results: object) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out}")


def stamps(content: str) -> list[float]:
    return [float(part) for part in content.split() if part.replace(".", "", 1).isdigit()]


def process_tree(pid: int) -> list[int]:
    """A process and its descendants (uvicorn's workers are children of its supervisor)."""
    tree, index = [pid], 0
    while index < len(tree):
        for task in os.listdir(f"/proc/{tree[index]}/task"):
            try:
                with open(f"/proc/{tree[index]}/task/{task}/children") as handle:
                    tree += [int(child) for child in handle.read().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
        index += 1
    return tree


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of a process and its children, in nanoseconds resolution
    (schedstat); /proc's stat counts in 10 ms ticks, too coarse for short runs."""
    total = 0
    for process in process_tree(pid):
        for task in os.listdir(f"/proc/{process}/task"):
            try:
                with open(f"/proc/{process}/task/{task}/schedstat") as handle:
                    total += int(handle.read().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                continue  # the thread ended while we looked (before its file opened, or after)
    return total / 1e9


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children."""
    total = 0
    for process in process_tree(pid):
        with open(f"/proc/{process}/statm") as handle:
            total += int(handle.read().split()[1]) * PAGE
    return total


async def raw_sse_stream(client: httpx.AsyncClient, url: str) -> StreamTiming:
    """A direct streaming client of the provider: the floor."""
    timing = StreamTiming()
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    started = time.time()
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            now = time.time()
            delta = json.loads(line[6:])["choices"]
            content = delta[0]["delta"].get("content") if delta else None
            if content:
                timing.ttft = timing.ttft if timing.ttft is not None else now - started
                timing.chunk_latency += [now - sent for sent in stamps(content)]
                timing.chunks += 1
    timing.ok = True
    return timing


class ChatClient:
    """A WebSocket client that does what the frontend does."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: Any = None

    async def open(self) -> None:
        self.ws = await connect(self.url, max_size=2**22, open_timeout=60)
        assert json.loads(await self.ws.recv())["type"] == "connected"

    async def turn(self, message: str, model: str, *, first_token_only: bool = False) -> StreamTiming:
        """One chat turn; with `first_token_only`, cancel it once the first token arrived."""
        timing = StreamTiming()
        started = time.time()
        await self.ws.send(json.dumps({"message": message, "model": model}))
        while True:
            event = json.loads(await asyncio.wait_for(self.ws.recv(), 120))
            now = time.time()
            if event["type"] in ("stream", "final_stream"):
                if timing.ttft is None and first_token_only:
                    await self.ws.send(json.dumps({"type": "cancel"}))
                timing.ttft = timing.ttft if timing.ttft is not None else now - started
                timing.chunk_latency += [now - sent for sent in stamps(event["content"])]
                timing.chunks += 1
            elif event["type"] == "stream_end":
                timing.ok = event["finish_reason"] == ("cancelled" if first_token_only else "stop")
                return timing

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
