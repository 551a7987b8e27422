"""Our layer's cost over the bare SDK: one definition and one measuring function, which
`bench.run` and `bench.ab --sdk` both use.

A server round: K WebSocket clients, each on a conversation of its own, run chat turns on a
real server process, whose CPU per relayed chunk is read from /proc (`server_round`). An SDK
round: the same turns run by the server's own agent with no server (`bench.sdk_baseline`), in a
process of its own, on the server's event loop (`sdk_round`).

Our layer's cost is the median, over N pairs of a server round and an SDK round run right
beside it, of (server CPU per chunk / SDK CPU per chunk - 1), in percent (`own_layer_pct`).
`layered_rounds` makes the pairs: each server first serves one unmeasured round (first-use
costs are not the steady state), then the rounds alternate their order, servers then SDK, then
SDK then servers, so the VM's drift over minutes falls on both sides.

The figure depends on how busy the machine is: when the server cannot keep up (the cores are
shared with the clients, the provider and other work), it handles several chunks per wake-up
and its CPU per chunk falls faster than the SDK's. Each round records the 1-minute load average
and the chunk latency it saw, so figures taken at different loads are not compared.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
from typing import Any

from bench.measure import ChatClient, Load, StreamTiming, cpu_seconds, load, percentile, rss_bytes
from tests.servers import PROJECT, Server

MODEL = "gpt-4o"


def summarize(turns: Load) -> dict[str, Any]:
    good = [t for t in turns.measured if t.ok]
    ttft = [t.ttft for t in good if t.ttft is not None]
    latency = [x for t in good for x in t.chunk_latency]
    return {
        "turns": len(turns.every),
        "failed": sum(not t.ok for t in turns.every),
        "chunks": sum(t.chunks for t in turns.every),
        "ttft_p50_ms": ms(percentile(ttft, 50)),
        "ttft_p99_ms": ms(percentile(ttft, 99)),
        "chunk_p50_ms": ms(percentile(latency, 50)),
        "chunk_p99_ms": ms(percentile(latency, 99)),
    }


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def server_loop(kind: str) -> str:
    """The event loop a server runs on: Daphne on asyncio's (Twisted's asyncio reactor),
    uvicorn on uvloop when it is installed (its `--loop auto`)."""
    if kind == "daphne" or importlib.util.find_spec("uvloop") is None:
        return "asyncio"
    return "uvloop"


def sdk_round(
    env: dict[str, str], k: int, arrival: str, span: float, client: str = "route", loop: str = "asyncio"
) -> dict[str, Any]:
    """The server's agent on the same turns with no server (`bench.sdk_baseline`), run with the
    server's settings on the server's event loop."""
    load_1min = os.getloadavg()[0]
    command = [sys.executable, "-m", "bench.sdk_baseline", "--model", MODEL, "--k", str(k)]
    command += ["--arrival", arrival, "--span", str(span), "--client", client, "--loop", loop]
    out = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True, check=True)
    raw = json.loads(out.stdout.strip().splitlines()[-1])
    timings = [StreamTiming(ttft=t, ok=True) for t in raw["ttft"]]
    if timings:
        timings[0].chunk_latency = raw["chunk_latency"]
    summary = summarize(Load(every=timings, measured=timings))
    summary.update({"turns": None, "failed": raw["failed"], "chunks": raw["chunks"], "loop": raw["loop"]})
    summary["cpu_us_per_chunk"] = round(raw["cpu_seconds"] / max(raw["chunks"], 1) * 1e6, 1)
    summary["load_1min"] = round(load_1min, 2)
    return summary


async def server_round(pid: int, port: int, k: int, arrival: str, span: float, tag: str = "") -> dict[str, Any]:
    """K clients, each on a conversation of its own (`tag` keeps repeated rounds apart)."""
    load_1min = os.getloadavg()[0]
    rss_start = rss_bytes(pid)
    clients = [ChatClient(f"ws://127.0.0.1:{port}/ws/bench-{tag}{arrival}-{k}-{index}") for index in range(k)]
    for start in range(0, k, 50):  # open in batches: a burst of handshakes is not what we measure
        await asyncio.gather(*(client.open() for client in clients[start : start + 50]))
    await asyncio.sleep(0.5)
    rss_idle = rss_bytes(pid)
    peak = rss_idle
    cpu_before = cpu_seconds(pid)
    turns = asyncio.ensure_future(load(k, arrival=arrival, span=span, turn=lambda i: clients[i].turn("hi", MODEL)))
    while not turns.done():
        peak = max(peak, rss_bytes(pid))
        await asyncio.sleep(0.05)
    cpu = cpu_seconds(pid) - cpu_before
    await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
    summary = summarize(turns.result())
    summary.update(
        {
            "cpu_us_per_chunk": round(cpu / max(summary["chunks"], 1) * 1e6, 1),
            "rss_per_idle_conn_kib": round((rss_idle - rss_start) / k / 1024, 1),
            "rss_per_streaming_conn_kib": round((peak - rss_start) / k / 1024, 1),
            "rss_peak_mb": round(peak / 2**20, 1),
            "load_1min": round(load_1min, 2),
        }
    )
    return summary


def own_layer_pct(server_cpu: list[float], sdk_cpu: list[float]) -> float | None:
    """Our layer's cost over the bare SDK, in percent: the median over the pairs of rounds made
    beside each other of server CPU per chunk / SDK CPU per chunk - 1."""
    shares = [(server / sdk - 1) * 100 for server, sdk in zip(server_cpu, sdk_cpu, strict=True) if sdk]
    return round(statistics.median(shares), 1) if shares else None


async def layered_rounds(
    servers: dict[str, Server],
    env: dict[str, str],
    *,
    k: int,
    arrival: str,
    span: float,
    pairs: int,
    loop: str,
    sdk: bool = True,
    warm: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """Each server's rounds of one load and, with `sdk`, the SDK-only rounds beside them: round
    i of every server and of the SDK ran within one stretch of minutes. Even rounds run the
    servers in the given order then the SDK, odd rounds the reverse. With `warm`, each server
    first serves an unmeasured round of min(K, 50) clients of the same arrival."""
    if warm:
        for server in servers.values():
            await server_round(server.process.pid, server.port, min(k, 50), arrival, span, tag="warm-")
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in [*servers, *(["sdk"] if sdk else [])]}
    for index in range(pairs):
        order = list(rounds) if index % 2 == 0 else list(reversed(rounds))
        for name in order:
            if name == "sdk":
                rounds[name].append(sdk_round(env, k, arrival, span, "route", loop))
            else:
                server = servers[name]
                result = await server_round(server.process.pid, server.port, k, arrival, span, tag=f"r{index}-")
                rounds[name].append(result)
    return rounds


def cpu(rounds: list[dict[str, Any]]) -> list[float]:
    return [r["cpu_us_per_chunk"] for r in rounds]
