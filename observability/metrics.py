"""The Prometheus series (docs/observability.md), and the calls that feed them.

With `PROMETHEUS_MULTIPROC_DIR` set, prometheus_client keeps each process's values in files in
that folder and `/metrics` adds them up, so every uvicorn worker answers the same totals.
Gauges then count only live processes (`livesum`). Nothing here runs per streamed chunk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from django.conf import settings
from prometheus_client import Counter, Gauge, Histogram

PREFIX = "dreamytin"
# Seconds to the first token: a local model answers in tenths, a busy hosted one in tens.
FIRST_TOKEN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0)
TURN_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

turns = Counter(f"{PREFIX}_turns", "Turns ended, by model and finish reason.", ["model", "finish_reason"])
first_token = Histogram(
    f"{PREFIX}_turn_first_token_seconds",
    "Seconds from a turn's start to its first output (text or tool call), queueing included.",
    ["model"],
    buckets=FIRST_TOKEN_BUCKETS,
)
turn_duration = Histogram(
    f"{PREFIX}_turn_duration_seconds", "Seconds from a turn's start to its end.", ["model"], buckets=TURN_BUCKETS
)
tokens = Counter(
    f"{PREFIX}_tokens",
    "Tokens of model requests; kind input (cached included), cached_input, output, reasoning.",
    ["model", "kind"],
)
cost = Counter(f"{PREFIX}_cost_usd", "US dollars of model requests, at the catalog's prices.", ["model"])
errors = Counter(f"{PREFIX}_errors", "Errors sent to clients, by code (turn failures and refused frames).", ["code"])
tool_calls = Counter(f"{PREFIX}_tool_calls", "Tool calls, by tool and outcome.", ["tool", "ok"])
sockets_open = Gauge(f"{PREFIX}_sockets_open", "WebSockets open.", multiprocess_mode="livesum")
turns_running = Gauge(f"{PREFIX}_turns_running", "Turns running in this deployment.", multiprocess_mode="livesum")
relay_lag = Histogram(
    f"{PREFIX}_relay_lag_seconds",
    "Seconds from a turn event's append to Redis to its read by another worker.",
    buckets=LAG_BUCKETS,
)
local_waiting = Gauge(f"{PREFIX}_local_model_waiting", "Turns queued for the local model.", multiprocess_mode="livesum")
local_wait = Histogram(
    f"{PREFIX}_local_model_wait_seconds",
    "Seconds a turn waited for the local model (0 when it was free).",
    buckets=FIRST_TOKEN_BUCKETS,
)


def socket_opened() -> None:
    if settings.METRICS:
        sockets_open.inc()


def socket_closed() -> None:
    if settings.METRICS:
        sockets_open.dec()


def error_counted(code: str) -> None:
    if settings.METRICS:
        errors.labels(code).inc()


def relay_lag_observe(stream_id: bytes, now_ms: float) -> None:
    """An entry read from another worker's turn: a stream id is `<milliseconds>-<n>`, stamped by
    Redis as it appended the entry."""
    if settings.METRICS:
        appended_ms = int(stream_id.split(b"-", 1)[0])
        relay_lag.observe(max(now_ms - appended_ms, 0) / 1000)


@asynccontextmanager
async def local_model_held(lock: asyncio.Lock) -> AsyncIterator[None]:
    """Hold the local model's `lock` for a turn, counting the turns queued for it and how long
    they waited (a turn cancelled while queued leaves the count too)."""
    started = time.perf_counter()
    queued = settings.METRICS and lock.locked()
    if queued:
        local_waiting.inc()
    try:
        await lock.acquire()
    finally:
        if queued:
            local_waiting.dec()
    try:
        if settings.METRICS:
            local_wait.observe(time.perf_counter() - started)
        yield
    finally:
        lock.release()
