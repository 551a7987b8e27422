"""Counters for rate limits and open connections: in Redis when REDIS_URL is set (one count
for every worker), else in this process.

Rate limits are fixed windows: a key per (limit, who, window) counts hits and expires with
its window. Open connections are a sorted set per address whose members expire: each process
refreshes the members it holds, so the sockets of a worker that crashed stop counting within
CONNECTION_TTL instead of filling the address's quota for good.

If Redis fails, limits are not enforced for that call (logged): a limit must not take the
chat down with it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
import weakref
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from dreamytin.config import Rate

logger = logging.getLogger(__name__)
PREFIX = "dreamytin:limit:"
CONNECTION_TTL = 90.0
REFRESH_EVERY = CONNECTION_TTL / 3
_LOCAL_COUNTERS = 100_000  # bound on in-process counters: one per (limit, who) seen


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: float = 0.0  # seconds until the window that refused ends


# -- this process's counters and Redis clients ---------------------------------------------


class Counters:
    """This process's share of the limits, held by the runtime (`chat.runtime`): a Redis client
    per event loop (a connection pool belongs to the loop that made it), the in-process counters
    used without Redis, and the open sockets' members this process keeps alive."""

    def __init__(self) -> None:
        self.clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()
        self.windows: dict[tuple[str, str], tuple[int, int]] = {}  # (limit, who) -> (window's end, count)
        self.local_open: defaultdict[str, int] = defaultdict(int)
        self.held: dict[str, set[str]] = {}  # Redis key -> members this process holds
        self.refreshers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
            weakref.WeakKeyDictionary()
        )

    def redis(self) -> aioredis.Redis | None:
        if not settings.REDIS_URL:
            return None
        loop = asyncio.get_running_loop()
        client = self.clients.get(loop)
        if client is None:
            client = self.clients[loop] = aioredis.from_url(
                settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
            )
        return client

    async def aclose(self) -> None:
        """At shutdown: stop this loop's refresher and close its client."""
        loop = asyncio.get_running_loop()
        refresher = self.refreshers.pop(loop, None)
        if refresher is not None:
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)
        client = self.clients.pop(loop, None)
        if client is not None:
            await client.aclose()


def _counters() -> Counters:
    from chat.runtime import runtime  # the runtime's module imports this app's limits lazily too

    return runtime().limits


# -- rate limits ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    now: float
    index: int  # which window of `rate.seconds` since the epoch
    end: float
    retry_after: float  # whole seconds until it ends, at least 1

    @classmethod
    def current(cls, rate: Rate) -> _Window:
        now = time.time()
        index = int(now // rate.seconds)
        end = (index + 1) * rate.seconds
        return cls(now, index, end, max(1.0, math.ceil(end - now)))


async def rate_hit(name: str, who: str, rate: Rate | None) -> Verdict:
    """Count one event of `who` against `rate`; refused once the window's count passes it."""
    if rate is None:
        return Verdict(True)
    window = _Window.current(rate)
    counters = _counters()
    client = counters.redis()
    if client is None:
        if len(counters.windows) >= _LOCAL_COUNTERS:
            # Only ended windows go: a live window's count must not be reset by a flood of
            # other callers.
            for stale in [k for k, (ends, _count) in counters.windows.items() if ends <= window.now]:
                del counters.windows[stale]
        ends, count = counters.windows.get((name, who), (window.end, 0))
        count = count + 1 if ends == window.end else 1
        counters.windows[(name, who)] = (window.end, count)
    else:
        key = f"{PREFIX}{name}:{who}:{window.index}"
        try:
            async with client.pipeline(transaction=True) as pipe:
                count, _ = await pipe.incr(key).expire(key, rate.seconds + 1).execute()
        except (RedisError, OSError) as exc:
            logger.warning("rate limit not checked: %r", exc, extra={"event": "limit_unavailable"})
            return Verdict(True)
    return Verdict(count <= rate.count, window.retry_after)


async def rate_reached(name: str, who: str, rate: Rate) -> Verdict:
    """Whether `who` already had `rate.count` events in this window, without counting one."""
    window = _Window.current(rate)
    counters = _counters()
    client = counters.redis()
    if client is None:
        ends, count = counters.windows.get((name, who), (0, 0))
        count = count if ends == window.end else 0
    else:
        try:
            count = int(await client.get(f"{PREFIX}{name}:{who}:{window.index}") or 0)
        except (RedisError, OSError) as exc:
            logger.warning("rate limit not checked: %r", exc, extra={"event": "limit_unavailable"})
            return Verdict(True)
    return Verdict(count < rate.count, window.retry_after)


# -- open connections per address ------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    key: str
    member: str | None  # None: counted in this process


async def connection_acquire(address: str, limit: int) -> Slot | None:
    """A slot for one more socket from `address`, or None when it already has `limit` open."""
    key = f"{PREFIX}conn:{address}"
    counters = _counters()
    client = counters.redis()
    if client is None:
        if counters.local_open[key] >= limit:
            return None
        counters.local_open[key] += 1
        return Slot(key, None)
    member, now = uuid.uuid4().hex, time.time()
    try:
        async with client.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", now).zadd(key, {member: now + CONNECTION_TTL})
            _, _, count, _ = await pipe.zcard(key).expire(key, int(CONNECTION_TTL) + 1).execute()
        if count > limit:
            await client.zrem(key, member)
            return None
    except (RedisError, OSError) as exc:
        logger.warning("connection limit not checked: %r", exc, extra={"event": "limit_unavailable"})
        counters.local_open[key] += 1
        return Slot(key, None)
    counters.held.setdefault(key, set()).add(member)
    _refresher_start(counters, client)
    return Slot(key, member)


async def connection_release(slot: Slot) -> None:
    counters = _counters()
    if slot.member is None:
        counters.local_open[slot.key] -= 1
        if counters.local_open[slot.key] <= 0:
            del counters.local_open[slot.key]
        return
    members = counters.held.get(slot.key, set())
    members.discard(slot.member)
    if not members:
        counters.held.pop(slot.key, None)
    client = counters.redis()
    if client is not None:
        try:
            await client.zrem(slot.key, slot.member)
        except (RedisError, OSError) as exc:  # it expires on its own
            logger.warning("connection slot not released: %r", exc, extra={"event": "limit_unavailable"})


def _refresher_start(counters: Counters, client: aioredis.Redis) -> None:
    loop = asyncio.get_running_loop()
    task = counters.refreshers.get(loop)
    if task is None or task.done():
        counters.refreshers[loop] = loop.create_task(_refresh_forever(counters, client))


async def _refresh_forever(counters: Counters, client: aioredis.Redis) -> None:
    """Keep this process's open sockets counted: push their expiry forward."""
    while counters.held:
        await asyncio.sleep(REFRESH_EVERY)
        expiry = time.time() + CONNECTION_TTL
        try:
            async with client.pipeline(transaction=False) as pipe:
                for key, members in list(counters.held.items()):
                    if members:
                        pipe.zadd(key, dict.fromkeys(members, expiry)).expire(key, int(CONNECTION_TTL) + 1)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            logger.warning("open sockets not refreshed: %r", exc, extra={"event": "limit_unavailable"})


# -- frames of one socket ---------------------------------------------------------------------


class FrameRate:
    """RATE_LIMIT_FRAMES for one socket, counted in the socket's own task (no lock, no I/O).

    `hit` answers "ok", "refuse" (the first frame over the limit in a window: the client is
    told once) or "drop" (the rest of that window: answering each would be a flood of our own);
    past CLOSE_FACTOR times the limit in one window, "close"."""

    CLOSE_FACTOR = 10

    def __init__(self, rate: Rate | None) -> None:
        self.rate = rate
        self.window = -1
        self.count = 0

    def hit(self, now: float) -> tuple[str, float]:
        if self.rate is None:
            return "ok", 0.0
        window = int(now // self.rate.seconds)
        if window != self.window:
            self.window, self.count = window, 0
        self.count += 1
        retry_after = max(0.1, (window + 1) * self.rate.seconds - now)
        if self.count <= self.rate.count:
            return "ok", 0.0
        if self.count > self.rate.count * self.CLOSE_FACTOR:
            return "close", retry_after
        return ("refuse" if self.count == self.rate.count + 1 else "drop"), retry_after
