"""Turns owned by the conversation, across workers: what a second socket on another worker gets
and costs (issue 20).

    python3 -m bench.workers              # K = 200 steady, rounds fan-out, single, single, fan-out
    python3 -m bench.workers --smoke      # a few seconds; tests/bench/test_workers.py runs this
    python3 -m bench.workers --baseline /tmp/before   # the single-socket rounds on another checkout

Two uvicorn servers (one worker each) share a PostgreSQL database and a Redis database of this
benchmark's own (made anew, dropped at the end), against the fake provider (stamped chunks).

- fan-out: K turns with steady arrivals (`bench.measure.load`); turn i is started by a socket
  on worker i % 2 and watched by a second socket on the same conversation on the other worker,
  opened before the turn starts, so it must get all of it: the starter's frames, same `seq`,
  same text. Counts lost, reordered, duplicated and differing events; latency per chunk from
  the provider's send stamp to starters and to watchers, and the relay's own hop (a watcher's
  receive time minus its starter's, same frame); both servers' CPU per chunk delivered to any socket.
- single: the same K turns on a third server with one socket each, no watcher and no Redis, on
  a database of its own on the same PostgreSQL server, so only the fan-out differs
  (`bench.layer.server_round`); with --baseline, that server runs another checkout (today's code).

A watcher that lags is waited for (while it still receives), so `lost` counts events that never
came. The JSON keeps a few anomalies of each round and what each server logged, counted.

The rounds alternate (fan-out, single, single, fan-out, ...) so that this VM's drift falls on
both. Prints each round, the medians, fan-out over single CPU per delivered chunk and the
issue's targets, and writes JSON (bench/results/workers.json unless --out).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import psycopg
import redis
from psycopg import sql

from bench.fanout import COUNTS, Socket, compare, drain, sockets_open, ws_url
from bench.layer import server_round, summarize
from bench.measure import cpu_seconds, load, results_write
from bench.run import server_env, start_fake
from tests.servers import PROJECT, Server, servers_start

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")
ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def redis_cpu(client: redis.Redis) -> float:
    """The Redis server's CPU seconds: every client of it, this benchmark's relay and any other."""
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def fanout_round(
    pair: tuple[Server, Server], k: int, span: float, tag: str, redis_client: redis.Redis
) -> dict[str, Any]:
    conversations = [f"fan-{tag}{index}" for index in range(k)]
    starters = [Socket(ws_url(pair[i % 2], c)) for i, c in enumerate(conversations)]
    watchers = [Socket(ws_url(pair[(i + 1) % 2], c)) for i, c in enumerate(conversations)]
    try:
        await sockets_open(starters + watchers)
        # A socket joins its conversation after its `connected` frame, and the other worker's
        # relay adds the conversation to its blocking read within 250 ms: give both time, so that
        # every watcher watches before its first turn starts.
        await asyncio.sleep(1.0)
        pids = [server.process.pid for server in pair]
        cpu_before, redis_before = sum(map(cpu_seconds, pids)), redis_cpu(redis_client)
        turns = await load(k, arrival="steady", span=span, turn=lambda i: starters[i].turn())
        drained = await drain(starters, watchers)
        cpu, redis_used = sum(map(cpu_seconds, pids)) - cpu_before, redis_cpu(redis_client) - redis_before
    finally:
        await asyncio.gather(*(socket.close() for socket in starters + watchers), return_exceptions=True)
    result = {**starter_figures(summarize(turns)), **compare(starters, watchers), "drain_s": round(drained, 1)}
    delivered = max(result["delivered_chunks"], 1)
    result["cpu_us_per_delivered_chunk"] = round(cpu / delivered * 1e6, 1)
    result["redis_cpu_us_per_delivered_chunk"] = round(redis_used / delivered * 1e6, 1)
    return result


async def single_round(server: Server, k: int, span: float, tag: str) -> dict[str, Any]:
    result = await server_round(server.process.pid, server.port, k, "steady", span, tag=tag)
    return {
        **starter_figures(result),
        "delivered_chunks": result["chunks"],
        "cpu_us_per_delivered_chunk": result["cpu_us_per_chunk"],
    }


def starter_figures(summary: dict[str, Any]) -> dict[str, Any]:
    """`bench.layer.summarize`'s figures of the sockets that started the turns."""
    keys = ("ttft_p50_ms", "ttft_p99_ms", "chunk_p50_ms", "chunk_p99_ms")
    return {"turns": summary["turns"], "failed": summary["failed"], **{f"starter_{key}": summary[key] for key in keys}}


def database_create(admin_url: str, name: str) -> str:
    """A PostgreSQL database of this benchmark's own, new: no rows of an earlier run."""
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return urlsplit(admin_url)._replace(path=f"/{name}").geturl()


def database_drop(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def log_summary(lines: list[str]) -> dict[str, int]:
    """Each distinct warning or error a server logged (LOG_LEVEL=WARNING), without its timestamp
    and with ids masked, and each traceback's exception line, with how often."""
    counts: Counter[str] = Counter()
    for line in lines:
        if TIMESTAMP.match(line):
            counts[ID.sub("<id>", TIMESTAMP.sub("", line))] += 1
        elif line and not line[0].isspace() and not line.startswith(("Traceback", "The above", "During handling")):
            counts[ID.sub("<id>", line)] += 1
    return dict(counts.most_common())


async def run(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    tmp = Path(tempfile.mkdtemp(prefix="dreamytin-workers-"))
    (tmp / "ws").mkdir()
    span = args.ttft + args.chunks / args.rate  # one reply's length
    redis_url = urlsplit(args.redis)._replace(path=f"/{args.redis_db}").geturl()
    redis_client = redis.Redis.from_url(redis_url)
    redis_client.flushdb()  # no turn log or presence of an earlier run
    databases = [args.database, f"{args.database}_single"]
    fake, url = start_fake(tmp, args.chunks, 1 / args.rate, args.ttft)
    servers: list[Server] = []
    rounds: list[dict[str, Any]] = []
    try:
        urls = [database_create(args.postgres, name) for name in databases]
        with mock.patch.dict(os.environ, {"BENCH_DATABASE_URL": urls[0]}):
            env = server_env(tmp, url)  # migrates our database; REDIS_URL is left out
        # The single-socket server has a database of its own on the same PostgreSQL server: it is
        # no worker of the pair (no Redis), and on theirs its reaper would end their turns as
        # interrupted whenever a starved worker's lease lapsed. Its schema is its checkout's.
        single_env, single_checkout = {**env, "DATABASE_URL": urls[1]}, args.baseline or PROJECT
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=single_checkout, env=single_env, check=True)
        relay_env = {**env, "REDIS_URL": redis_url}
        specs = [
            (relay_env, tmp / "worker-a.log", PROJECT),
            (relay_env, tmp / "worker-b.log", PROJECT),
            (single_env, tmp / "single.log", single_checkout),
        ]
        servers = servers_start(
            [partial(Server, "uvicorn", env, log, checkout, start_timeout=180) for env, log, checkout in specs]
        )
        pair, single = (servers[0], servers[1]), servers[2]
        # Warm both set-ups first (the relay starts on first use, the pools fill): first-use
        # costs are not what we compare. Side by side, with starts spread over a second.
        warm = min(args.k, 20)
        await asyncio.gather(
            fanout_round(pair, warm, 1.0, "warm-", redis_client), single_round(single, warm, 1.0, "warm-")
        )
        for index in range(args.pairs):
            for kind in ("fanout", "single") if index % 2 == 0 else ("single", "fanout"):
                tag = f"r{index}-"
                started = time.perf_counter()
                if kind == "fanout":
                    result = await fanout_round(pair, args.k, span, tag, redis_client)
                else:
                    result = await single_round(single, args.k, span, tag)
                rounds.append({"round": len(rounds) + 1, "kind": kind, **result})
                print(f"round {len(rounds)} {kind}: {time.perf_counter() - started:.0f} s", flush=True)
    finally:
        for server in servers:
            server.stop()
        fake.terminate()
        fake.wait(10)
        for name in databases:
            database_drop(args.postgres, name)
        redis_client.flushdb()
    logged = {log.stem: log_summary(log.read_text().splitlines()) for log in sorted(tmp.glob("*.log"))}
    shutil.rmtree(tmp)  # only after a good run: a failed one leaves its server logs there
    return rounds, logged


def report_make(
    args: argparse.Namespace, rounds: list[dict[str, Any]], logged: dict[str, dict[str, int]], load_before: float
) -> dict[str, Any]:
    fanout = [r for r in rounds if r["kind"] == "fanout"]
    single = [r for r in rounds if r["kind"] == "single"]

    def median(group: list[dict[str, Any]], key: str) -> float | None:
        values = [r[key] for r in group if r.get(key) is not None]
        return round(statistics.median(values), 2) if values else None

    medians = {
        kind: {
            key: median(group, key)
            for key, value in group[0].items()
            if key != "round" and isinstance(value, int | float | None)
        }
        for kind, group in (("fanout", fanout), ("single", single))
    }
    totals = {key: sum(r[key] for r in fanout) for key in ("failed", *COUNTS)}
    totals["failed_single"] = sum(r["failed"] for r in single)
    ratio = medians["fanout"]["cpu_us_per_delivered_chunk"] / medians["single"]["cpu_us_per_delivered_chunk"]
    targets = [
        ("0 lost events", totals["lost"], 0),
        ("0 reordered events", totals["reordered"], 0),
        ("provider-to-watcher p50 <= 25 ms", medians["fanout"]["watcher_chunk_p50_ms"], 25),
        ("provider-to-watcher p99 <= 150 ms", medians["fanout"]["watcher_chunk_p99_ms"], 150),
        ("CPU per delivered chunk <= 1.5x single", round(ratio, 2), 1.5),
    ]
    return {
        "config": {
            "k": args.k,
            "chunks": args.chunks,
            "rate_per_s": args.rate,
            "ttft_s": args.ttft,
            "pairs": args.pairs,
            "cpus": os.cpu_count(),
            "loadavg_1m_before": load_before,
            "database": f"postgresql: {args.database} (the pair), {args.database}_single",
            "single_checkout": str(args.baseline or PROJECT),
        },
        "rounds": rounds,
        "median": medians,
        "totals": totals,
        "fanout_over_single_cpu": round(ratio, 3),
        "server_log": logged,
        "targets": [
            {"target": name, "value": value, "limit": limit, "pass": value is not None and value <= limit}
            for name, value, limit in targets
        ],
    }


COLUMNS = (
    ("turns", "turns"), ("failed", "fail"), ("delivered_chunks", "delivered"),
    ("cpu_us_per_delivered_chunk", "cpu us/ch"), ("redis_cpu_us_per_delivered_chunk", "redis us"),
    ("starter_ttft_p50_ms", "ttft50"), ("starter_chunk_p50_ms", "start50"), ("starter_chunk_p99_ms", "start99"),
    ("watcher_chunk_p50_ms", "watch50"), ("watcher_chunk_p99_ms", "watch99"), ("hop_p50_ms", "hop50"),
    ("hop_p99_ms", "hop99"), ("lost", "lost"), ("lost_gaps", "gaps"), ("reordered", "reord"),
    ("duplicated", "dup"), ("differing_turns", "differ"), ("drain_s", "drain s"),
)  # fmt: skip


def print_report(report: dict[str, Any]) -> None:
    print(f"config: {report['config']}")
    print("latencies in ms (provider stamp to client receive, per chunk, measured turns); hop: watcher minus starter")
    print(f"  {'round':<7}{'kind':<8}" + "".join(f"{title:>11}" for _, title in COLUMNS))
    for row in report["rounds"]:
        print(f"  {row['round']:<7}{row['kind']:<8}" + "".join(f"{row.get(key, '-')!s:>11}" for key, _ in COLUMNS))
    for kind in ("fanout", "single"):
        row = report["median"][kind]
        print(f"  {'median':<7}{kind:<8}" + "".join(f"{row.get(key, '-')!s:>11}" for key, _ in COLUMNS))
    totals = report["totals"]
    print(f"fan-out totals: {totals}")
    print(f"CPU per delivered chunk, fan-out over single: {report['fanout_over_single_cpu']}x")
    for name, logged in report["server_log"].items():
        for line, count in list(logged.items())[:6]:
            print(f"{name} logged {count}x: {line[:150]}")
    examples = [example for row in report["rounds"] for example in row.get("examples", [])]
    if examples:
        print(f"first anomaly (more under rounds[].examples in the JSON): {examples[0]}")
    print("targets:")
    for target in report["targets"]:
        verdict = "PASS" if target["pass"] else "FAIL"
        print(f"  {target['target']:<42}{target['value']!s:>10}  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=200, help="turns (conversations) per round")
    parser.add_argument("--chunks", type=int, default=200, help="chunks per reply")
    parser.add_argument("--rate", type=float, default=20.0, help="chunks per second per stream")
    parser.add_argument("--ttft", type=float, default=0.2, help="fake time to first token, seconds")
    parser.add_argument("--pairs", type=int, default=2, help="pairs of rounds, alternated: 2 is A B B A")
    # The server of DATABASE_URL when it is PostgreSQL; its database need not exist yet.
    postgres = os.environ.get("DATABASE_URL", "")
    postgres = postgres if postgres.startswith("postgres") else "postgres://postgres@127.0.0.1:5432/"
    parser.add_argument(
        "--postgres",
        default=urlsplit(postgres)._replace(path="/postgres").geturl(),
        help="where to create the benchmark's database: a database of that PostgreSQL server to connect to",
    )
    parser.add_argument("--database", default="bench_workers", help="the database created, and dropped at the end")
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    parser.add_argument("--redis-db", type=int, default=13, help="the Redis database used, emptied first and last")
    parser.add_argument("--baseline", type=Path, help="run the single-socket rounds on this checkout (today's code)")
    parser.add_argument("--smoke", action="store_true", help="tiny run that checks the benchmark works")
    parser.add_argument("--out", default=str(PROJECT / "bench" / "results" / "workers.json"))
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    if args.smoke:
        args.k, args.chunks, args.rate, args.ttft = 4, 5, 50.0, 0.05
    if args.baseline:
        args.baseline = args.baseline.resolve()
    load_before = os.getloadavg()[0]
    rounds, logged = asyncio.run(run(args))
    report = report_make(args, rounds, logged, load_before)
    print_report(report)
    results_write(args.out, report)


if __name__ == "__main__":
    main()
