"""What a WebSocket frame costs the ASGI server itself: a bare ASGI app (no Django, no Channels,
no SDK) sends stream frames like the chat server's, at the benchmark's rate, to K clients that
offer compression as browsers do. Part of the server's "own layer" in `bench.run` is this cost.

    python3 -m bench.frames            # K = 200, 200 frames each at 20/s
    python3 -m bench.frames --smoke

Prints µs of server CPU per frame for daphne, uvicorn as the README runs it (no
permessage-deflate) and uvicorn's default (deflate), and writes JSON
(bench/results/frames.json unless --out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from typing import Any

from websockets.asyncio.client import connect

from bench.measure import cpu_seconds, results_write
from tests.servers import PROJECT, free_port

APP = "bench.frames:app"
SERVERS: dict[str, list[str]] = {
    "daphne": ["daphne", APP],
    "uvicorn": ["uvicorn", APP, "--ws-per-message-deflate", "false"],
    "uvicorn, deflate": ["uvicorn", APP],
}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Each text message "N R" from a client gets N stream frames at R per second, then "end"."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        frames, rate = message["text"].split()
        for seq in range(int(frames)):
            await asyncio.sleep(1 / float(rate))
            await send({"type": "websocket.send", "text": _frame(seq)})
        await send({"type": "websocket.send", "text": "end"})


def _frame(seq: int) -> str:
    # The shape and size of the chat server's `stream` event.
    return json.dumps(
        {
            "type": "stream",
            "content": f"{time.time():.6f} ",
            "timestamp": "2026-11-24T12:00:00.000000+00:00",
            "model": "gpt-4o",
            "conversation_id": "bench-frames-0001",
            "message_id": "1234",
            "seq": seq,
        },
        ensure_ascii=False,
    )


def _start(argv: list[str], port: int) -> subprocess.Popen[bytes]:
    server, *rest = argv
    if server == "daphne":
        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), *rest]
    else:
        command = [sys.executable, "-m", "uvicorn", "--port", str(port), "--log-level", "warning", *rest]
    process = subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{server} did not start")


async def _client(port: int, frames: int, rate: float) -> int:
    async with connect(f"ws://127.0.0.1:{port}/", compression="deflate", max_size=None) as websocket:
        await websocket.send(f"{frames} {rate}")
        received = 0
        while await websocket.recv() != "end":
            received += 1
        return received


async def measure(name: str, k: int, frames: int, rate: float) -> dict[str, Any]:
    port = free_port()
    process = _start(SERVERS[name], port)
    try:
        cpu_before = cpu_seconds(process.pid)
        received = sum(await asyncio.gather(*(_client(port, frames, rate) for _ in range(k))))
        cpu = cpu_seconds(process.pid) - cpu_before
    finally:
        process.terminate()
        process.wait(10)
    return {"server": name, "k": k, "frames": received, "cpu_us_per_frame": round(cpu / max(received, 1) * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=str(PROJECT / "bench" / "results" / "frames.json"))
    args = parser.parse_args()
    if args.smoke:
        args.k, args.frames, args.rate = 2, 5, 50.0
    results = [asyncio.run(measure(name, args.k, args.frames, args.rate)) for name in SERVERS]
    for row in results:
        print(f"{row['server']:18s} K={row['k']:<5d} frames {row['frames']:<7d} cpu {row['cpu_us_per_frame']} us/frame")
    results_write(args.out, results)


if __name__ == "__main__":
    main()
