"""The relay benchmark: what the backend adds between a streaming provider and the browser.

    python3 -m bench.run                 # K = 1, 50, 200 on daphne and uvicorn (a few minutes)
    python3 -m bench.run --ks 1,50,200,1000
    python3 -m bench.run --smoke         # a few seconds; tests run this

In one run it measures the floor (raw SSE clients of the fake provider), the library cost (the
same Agents SDK runs with no server, on the server's model route and on the stock OpenAI
client) and the real server processes, then prints a table and writes JSON
(bench/results/latest.json unless --out). Every K runs with two arrival patterns (see
`bench.measure.load`): a burst of K turns started at once, and steady arrivals that keep K
streams running while turns start at an even rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.layer import (
    MODEL,
    cpu,
    layered_rounds,
    ms,
    own_layer_pct,
    sdk_round,
    server_loop,
    summarize,
)
from bench.measure import ARRIVALS, ChatClient, load, raw_sse_stream, results_write
from tests.servers import PROJECT, Server


def start_fake(tmp: Path, chunks: int, interval: float, ttft: float) -> tuple[subprocess.Popen[bytes], str]:
    port_file = tmp / "fake.port"
    command = [sys.executable, "-m", "bench.fake_server", "--port-file", str(port_file)]
    command += ["--chunks", str(chunks), "--interval", str(interval), "--ttft", str(ttft)]
    process = subprocess.Popen(command, cwd=PROJECT)
    for _ in range(200):
        if port_file.exists() and port_file.read_text():
            return process, f"http://127.0.0.1:{port_file.read_text()}"
        time.sleep(0.05)
    raise RuntimeError("fake provider did not start")


def server_env(tmp: Path, fake_url: str) -> dict[str, str]:
    models = tmp / "models.json"
    models.write_text(
        json.dumps(
            {"defaultModel": MODEL, "models": {MODEL: {"provider": "openai", "name": "GPT-4o", "maxTokens": 128000}}}
        )
    )
    env = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": "bench-" + "x" * 50,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{tmp / 'bench.sqlite3'}"),
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": f"{fake_url}/v1",
        "MODELS_FILE": str(models),
        "TOOLS_ALLOWED_DIRS": str(tmp / "ws"),
        "PROVIDER_RETRIES": "0",
        "LOG_LEVEL": "WARNING",
        # Every benchmark client connects from 127.0.0.1: K = 200 is past the default 100.
        "MAX_CONNECTIONS_PER_ADDRESS": "100000",
        # The relay is measured, not the local model (bench.local_model): keep it out of the catalog.
        "LOCAL_MODEL": "0",
    }
    env.pop("REDIS_URL", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=PROJECT, env=env, check=True)
    return env


async def raw_baseline(url: str, k: int, arrival: str, span: float) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=k + 10, max_keepalive_connections=k + 10)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await raw_sse_stream(client, url)
        return summarize(await load(k, arrival=arrival, span=span, turn=lambda _: raw_sse_stream(client, url)))


async def first_and_tenth(port: int) -> dict[str, Any]:
    """Time to first token of ten sequential turns right after start."""
    client = ChatClient(f"ws://127.0.0.1:{port}/ws/warmcheck")
    await client.open()
    ttfts = []
    for _ in range(10):
        ttfts.append((await client.turn("hi", MODEL, first_token_only=True)).ttft or 0.0)
    await client.close()
    return {
        "first_ttft_ms": ms(ttfts[0]),
        "tenth_ttft_ms": ms(ttfts[9]),
        "first_minus_tenth_ms": ms(ttfts[0] - ttfts[9]),
    }


def added(server: dict[str, Any], floor: dict[str, Any]) -> dict[str, Any]:
    def diff(key: str) -> float | None:
        if server.get(key) is None or floor.get(key) is None:
            return None
        return round(server[key] - floor[key], 3)

    return {
        "added_ttft_p50_ms": diff("ttft_p50_ms"),
        "added_ttft_p99_ms": diff("ttft_p99_ms"),
        "added_chunk_p50_ms": diff("chunk_p50_ms"),
        "added_chunk_p99_ms": diff("chunk_p99_ms"),
    }


async def server_measure(
    server: Server, kind: str, env: dict[str, str], k: int, arrival: str, span: float, pairs: int, warm: bool
) -> dict[str, Any]:
    """The server's rounds of one load, each paired with an SDK-only round on the server's loop
    run right beside it (`bench.layer.layered_rounds`, as `bench.ab --sdk`; `warm` for the
    server's first load). The row has the first round's latencies and memory (later rounds reuse
    its freed memory), the medians of the CPU figures, our layer's cost
    (`bench.layer.own_layer_pct`), and every round's turns."""
    rounds = await layered_rounds(
        {kind: server}, env, k=k, arrival=arrival, span=span, pairs=pairs, loop=server_loop(kind), warm=warm
    )
    served, sdk = rounds[kind], rounds["sdk"]
    row = dict(served[0])
    pairs_cpu = [
        {"server_cpu_us_per_chunk": s["cpu_us_per_chunk"], "sdk_cpu_us_per_chunk": d["cpu_us_per_chunk"]}
        for s, d in zip(served, sdk, strict=True)
    ]
    row.update(
        {
            # Every round's turns count: one failed turn in any round shows.
            **{key: sum(r[key] for r in served) for key in ("turns", "failed", "chunks")},
            "cpu_us_per_chunk": round(statistics.median(cpu(served)), 1),
            "sdk_cpu_us_per_chunk": round(statistics.median(cpu(sdk)), 1),
            "own_layer_cpu_overhead_pct": own_layer_pct(cpu(served), cpu(sdk)),
            "sdk_paired": sdk[0],
            "pairs": pairs_cpu,
        }
    )
    return row


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="dreamytin-bench-"))
    (tmp / "ws").mkdir()
    fake, url = start_fake(tmp, args.chunks, 1 / args.rate, args.ttft)
    report: dict[str, Any] = {
        "config": {
            "ks": args.ks,
            "chunks": args.chunks,
            "rate_per_s": args.rate,
            "ttft_s": args.ttft,
            "arrivals": args.arrivals,
            "pairs": args.pairs,
            "cpus": os.cpu_count(),
        },
        "baselines": {},
        "servers": {},
    }
    span = args.ttft + args.chunks / args.rate  # one reply's length
    env = server_env(tmp, url)
    try:
        for k in args.ks:
            report["baselines"][str(k)] = {}
            for arrival in args.arrivals:
                report["baselines"][str(k)][arrival] = {
                    "raw_sse": await raw_baseline(url, k, arrival, span),
                    # The library's cost as most run it: asyncio's loop. Each server's own
                    # layer is taken against SDK-only rounds on its own loop (server_measure).
                    "sdk": sdk_round(env, k, arrival, span, "route"),
                    "sdk_stock_client": sdk_round(env, k, arrival, span, "stock"),
                }
        for kind in args.servers:
            server = Server(kind, env, tmp / f"{kind}.log")
            try:
                entry: dict[str, Any] = {
                    "loop": server_loop(kind),
                    "cold_start_s": round(server.cold_start, 3),
                    "warm_s": round(server.warm, 3),
                    **await first_and_tenth(server.port),
                    "by_k": {},
                }
                warm = True  # the server's first load starts with an unmeasured round
                for k in args.ks:
                    entry["by_k"][str(k)] = {}
                    for arrival in args.arrivals:
                        row = await server_measure(server, kind, env, k, arrival, span, args.pairs, warm)
                        warm = False
                        row.update(added(row, report["baselines"][str(k)][arrival]["raw_sse"]))
                        entry["by_k"][str(k)][arrival] = row
                report["servers"][kind] = entry
            finally:
                server.stop()
    finally:
        fake.terminate()
        fake.wait(10)
    shutil.rmtree(tmp)  # only after a good run: a failed one leaves its server logs there
    return report


COLUMNS = (
    ("failed", "fail"),
    ("added_ttft_p50_ms", "+ttft50"),
    ("added_ttft_p99_ms", "+ttft99"),
    ("added_chunk_p50_ms", "+chunk50"),
    ("added_chunk_p99_ms", "+chunk99"),
    ("cpu_us_per_chunk", "cpu us/chunk"),
    ("sdk_cpu_us_per_chunk", "sdk cpu"),
    ("own_layer_cpu_overhead_pct", "own cpu %"),
    ("rss_per_idle_conn_kib", "idle KiB"),
    ("rss_per_streaming_conn_kib", "stream KiB"),
    ("rss_peak_mb", "peak MB"),
)


def print_table(report: dict[str, Any]) -> None:
    print(f"config: {report['config']}")
    print("baselines (ms; cpu in us per chunk):")
    for k, by_arrival in report["baselines"].items():
        for arrival, base in by_arrival.items():
            raw, sdk, stock = base["raw_sse"], base["sdk"], base["sdk_stock_client"]
            print(
                f"  K={k:<5}{arrival:<7} raw SSE: ttft p50 {raw['ttft_p50_ms']} p99 {raw['ttft_p99_ms']}, "
                f"chunk p50 {raw['chunk_p50_ms']} p99 {raw['chunk_p99_ms']}, failed {raw['failed']} | "
                f"SDK only: ttft p50 {sdk['ttft_p50_ms']} p99 {sdk['ttft_p99_ms']}, "
                f"chunk p50 {sdk['chunk_p50_ms']} p99 {sdk['chunk_p99_ms']}, cpu {sdk['cpu_us_per_chunk']} "
                f"(stock openai client {stock['cpu_us_per_chunk']}), failed {sdk['failed'] + stock['failed']}"
            )
    print(
        "servers (added = server minus raw SSE, same K and arrivals, same run; sdk cpu: the SDK alone on "
        "the server's event loop, in rounds paired with the server's; own cpu %: median of the pairs):"
    )
    print(f"  {'server':<9}{'K':>6} {'arrival':<8}" + "".join(f"{title:>13}" for _, title in COLUMNS))
    for kind, entry in report["servers"].items():
        for k, by_arrival in entry["by_k"].items():
            for arrival, row in by_arrival.items():
                print(f"  {kind:<9}{k:>6} {arrival:<8}" + "".join(f"{row[key]!s:>13}" for key, _ in COLUMNS))
        print(
            f"  {kind} (on {entry['loop']}): cold start {entry['cold_start_s']} s; "
            f"first turn ttft {entry['first_ttft_ms']} ms, tenth {entry['tenth_ttft_ms']} ms "
            f"(first - tenth {entry['first_minus_tenth_ms']} ms)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ks", default="1,50,200", help="concurrent streams, comma-separated")
    parser.add_argument("--servers", default="daphne,uvicorn", help="daphne, uvicorn, uvicorn:N (N workers)")
    parser.add_argument("--chunks", type=int, default=200, help="chunks per stream (a reply of ~200 tokens)")
    parser.add_argument("--rate", type=float, default=20.0, help="chunks per second per stream")
    parser.add_argument("--ttft", type=float, default=0.2, help="fake time to first token, seconds")
    parser.add_argument("--arrivals", default=",".join(ARRIVALS), help="burst and/or steady (see bench.measure.load)")
    parser.add_argument(
        "--pairs", type=int, default=1, help="server rounds per load, each paired with an SDK-only round"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny run that checks the benchmark works")
    parser.add_argument("--out", default=str(PROJECT / "bench" / "results" / "latest.json"))
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    if args.smoke:
        args.ks, args.chunks, args.rate, args.ttft = "2", 5, 50.0, 0.05
    args.ks = [int(k) for k in str(args.ks).split(",")]
    args.servers = args.servers.split(",")
    args.arrivals = args.arrivals.split(",")
    report = asyncio.run(run(args))
    print_table(report)
    results_write(args.out, report)


if __name__ == "__main__":
    main()
