"""Turns streamed over server-sent events against the same turns over WebSocket: the server's
CPU per relayed chunk, side by side (target: SSE at most 1.2x).

    python3 -m bench.sse                    # K = 200 on uvicorn, 3 pairs of rounds
    python3 -m bench.sse --k 50 --servers uvicorn,daphne --pairs 5
    python3 -m bench.sse --smoke            # a few seconds

A WebSocket round is `bench.layer.server_round` (K sockets, each on a conversation of its own,
one chat turn each, as `bench.run` measures). An SSE round is the same K turns started by
`POST /conversations/<id>/messages` with `"stream": true`, each read to its `stream_end`.
Every round reads the server's CPU from /proc around the turns alone; each server first serves
one unmeasured round of each kind, then the rounds alternate their order (WebSocket then SSE,
SSE then WebSocket) so the machine's drift falls on both. Prints a table and writes JSON
(bench/results/sse.json unless --out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.layer import MODEL, server_round, summarize
from bench.measure import StreamTiming, cpu_seconds, load, results_write, stamps
from bench.run import server_env, start_fake
from tests.servers import Server


async def sse_turn(client: httpx.AsyncClient, url: str, errors: Counter[str]) -> StreamTiming:
    """One turn over SSE, read as a client of it does: line by line, each event's JSON. A
    failed one is counted in `errors` by its status or exception."""
    timing = StreamTiming()
    started = time.time()
    body = {"message": "hi", "model": MODEL, "stream": True}
    try:
        await _sse_read(client, url, body, timing, started)
    except (httpx.HTTPError, OSError) as exc:
        errors[str(exc) if isinstance(exc, httpx.HTTPStatusError) else type(exc).__name__] += 1
        return timing
    if not timing.ok:
        errors["no stream_end with finish_reason stop"] += 1
    return timing


async def _sse_read(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], timing: StreamTiming, started: float
) -> None:
    async with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            raise httpx.HTTPStatusError(f"HTTP {response.status_code}", request=response.request, response=response)
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            now = time.time()
            if event["type"] in ("stream", "final_stream"):
                timing.ttft = timing.ttft if timing.ttft is not None else now - started
                timing.chunk_latency += [now - sent for sent in stamps(event["content"])]
                timing.chunks += 1
            elif event["type"] == "stream_end":
                timing.ok = event["finish_reason"] == "stop"


async def sse_round(server: Server, k: int, arrival: str, span: float, tag: str) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=k + 10, max_keepalive_connections=k + 10)
    errors: Counter[str] = Counter()
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        # K connections open before the turns, as the WebSocket round's sockets are.
        await asyncio.gather(*(client.get(f"{server.url}/") for _ in range(k)))
        load_1min = os.getloadavg()[0]
        cpu_before = cpu_seconds(server.process.pid)
        urls = [f"{server.url}/conversations/sse-{tag}{arrival}-{k}-{i}/messages" for i in range(k)]
        turns = await load(k, arrival=arrival, span=span, turn=lambda i: sse_turn(client, urls[i], errors))
        cpu = cpu_seconds(server.process.pid) - cpu_before
    summary = summarize(turns)
    summary.update(
        {
            "cpu_us_per_chunk": round(cpu / max(summary["chunks"], 1) * 1e6, 1),
            "load_1min": round(load_1min, 2),
            "errors": dict(errors),
        }
    )
    return summary


async def compare(server: Server, k: int, arrival: str, span: float, pairs: int) -> dict[str, Any]:
    pid, port = server.process.pid, server.port
    await server_round(pid, port, min(k, 50), arrival, span, tag="warm-")  # unmeasured: first-use costs
    await sse_round(server, min(k, 50), arrival, span, tag="warm-")
    rounds: dict[str, list[dict[str, Any]]] = {"websocket": [], "sse": []}
    for index in range(pairs):
        order = ["websocket", "sse"] if index % 2 == 0 else ["sse", "websocket"]
        for kind in order:
            if kind == "websocket":
                rounds[kind].append(await server_round(pid, port, k, arrival, span, tag=f"r{index}-"))
            else:
                rounds[kind].append(await sse_round(server, k, arrival, span, tag=f"r{index}-"))
    ratios = [
        s["cpu_us_per_chunk"] / w["cpu_us_per_chunk"]
        for s, w in zip(rounds["sse"], rounds["websocket"], strict=True)
        if w["cpu_us_per_chunk"]
    ]
    return {
        "websocket_cpu_us_per_chunk": round(statistics.median(r["cpu_us_per_chunk"] for r in rounds["websocket"]), 1),
        "sse_cpu_us_per_chunk": round(statistics.median(r["cpu_us_per_chunk"] for r in rounds["sse"]), 1),
        "sse_over_websocket": round(statistics.median(ratios), 3) if ratios else None,
        "failed": sum(r["failed"] for kind in rounds.values() for r in kind),
        "rounds": rounds,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="dreamytin-bench-sse-"))
    (tmp / "ws").mkdir()
    fake, url = start_fake(tmp, args.chunks, 1 / args.rate, args.ttft)
    span = args.ttft + args.chunks / args.rate
    report: dict[str, Any] = {
        "config": {"k": args.k, "chunks": args.chunks, "rate_per_s": args.rate, "ttft_s": args.ttft,
                   "arrival": args.arrival, "pairs": args.pairs, "cpus": os.cpu_count()},
        "servers": {},
    }  # fmt: skip
    env = server_env(tmp, url)
    try:
        for kind in args.servers:
            server = Server(kind, env, tmp / f"{kind}.log")
            try:
                report["servers"][kind] = await compare(server, args.k, args.arrival, span, args.pairs)
            finally:
                server.stop()
    finally:
        fake.terminate()
        fake.wait(10)
    shutil.rmtree(tmp)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--servers", default="uvicorn", type=lambda value: value.split(","))
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--rate", type=float, default=20.0, help="chunks per second of each reply")
    parser.add_argument("--ttft", type=float, default=0.2)
    parser.add_argument("--arrival", default="steady", choices=("burst", "steady"))
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="K=5, 10 chunks, one pair")
    parser.add_argument("--out", default="bench/results/sse.json")
    args = parser.parse_args()
    if args.smoke:
        args.k, args.chunks, args.pairs, args.rate = 5, 10, 1, 50.0
    report = asyncio.run(run(args))
    print(f"K={args.k}, {args.chunks} chunks a turn, {args.arrival} arrivals, median of {args.pairs} pairs")
    print(f"{'server':<10} {'WebSocket µs/chunk':>19} {'SSE µs/chunk':>13} {'SSE/WS':>7} {'failed':>7}")
    for kind, row in report["servers"].items():
        print(
            f"{kind:<10} {row['websocket_cpu_us_per_chunk']:>19} {row['sse_cpu_us_per_chunk']:>13} "
            f"{row['sse_over_websocket']!s:>7} {row['failed']:>7}"
        )
    results_write(args.out, report)


if __name__ == "__main__":
    main()
