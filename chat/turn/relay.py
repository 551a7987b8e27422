"""Turn events across worker processes, through Redis (only when `REDIS_URL` is set).

- The event log: a Redis Stream per conversation holds its latest turn's frames (entries
  `turn`, `seq`, `frame`, and `end` on the last), trimmed when the next turn starts (not
  deleted: a deleted stream's ids start again, and a reader's place would be past them) and
  expiring `RESUME_WINDOW_SECONDS` after its last write. The worker running a turn appends in batches
  (one pipeline every few milliseconds for all its turns, never a round trip per token), and
  each worker reads, with one blocking `XREAD` over every conversation its sockets watch, the
  turns that run elsewhere into its own log (chat/turn/fanout.py), which its sockets send from.
- Control: `cancel` from any worker, and who watches (`left` and `joined`, so the worker running
  a turn can tell when its last socket anywhere has gone) on one pub/sub channel, with each
  worker's presence per conversation in a hash whose entries expire unless refreshed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from chat.turn.delivery import CLAIM_SECONDS, RedisClaims
from chat.turn.fanout import RESUME_WINDOW_SECONDS, ConversationFeed, Feeds
from observability.metrics import relay_lag_observe

logger = logging.getLogger(__name__)
WORKER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
CONTROL_CHANNEL = "dreamytin:turn-control"
BATCH_SECONDS = 0.005  # how long a batch gathers frames before it is sent
READ_BLOCK_MS = 250  # a newly watched conversation is read from at most this late (it caught up first)
PRESENCE_SECONDS = 30  # a worker's presence on a conversation lapses unless refreshed
STREAM_MAX_ENTRIES = 100_000  # a bound on one turn's log, far past any reply
PENDING_MAX = 200_000  # frames held while Redis is unreachable; older ones go first
POOL_CONNECTIONS = 20
# When a turn starts, its conversation's log keeps only the last minute of the turn before: a
# reader on another worker still reading that turn's end gets it.
PREVIOUS_TURN_KEPT_MS = 60_000


def log_key(conversation_id: str) -> str:
    return f"dreamytin:turn-log:{conversation_id}"


def _presence_key(conversation_id: str) -> str:
    return f"dreamytin:watchers:{conversation_id}"


@dataclass(slots=True)
class _Pending:
    feed: ConversationFeed
    turn_id: str
    seq: int
    frame: str
    end: bool


class Relay:
    """This process's side of the relay, on one event loop."""

    def __init__(self, url: str, feeds: Feeds) -> None:
        self.feeds = feeds
        # A burst of sockets waits for a connection rather than failing past the pool's size.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=POOL_CONNECTIONS, timeout=5, socket_connect_timeout=2, socket_timeout=5
        )
        self.client = aioredis.Redis(connection_pool=pool, health_check_interval=30)
        # Its own connection: a blocking XREAD holds it, and a large reply may take a while to read.
        self.reader = aioredis.from_url(url, socket_connect_timeout=2, socket_timeout=30)
        self.pending: list[_Pending] = []
        self.flushing = asyncio.Event()
        self.control_handlers: dict[str, Callable[[str], None]] = {}
        self.claims = RedisClaims(
            self.client, announce=lambda conversation_id: self.control_send("released", conversation_id)
        )
        self.on_control("released", feeds.standbys_wake)
        self.tasks = [
            asyncio.create_task(self._write_forever(), name="relay write"),
            asyncio.create_task(self._read_forever(), name="relay read"),
            asyncio.create_task(self._control_forever(), name="relay control"),
            asyncio.create_task(self._presence_forever(), name="relay presence"),
            asyncio.create_task(self._claims_forever(), name="relay claims"),
        ]
        for task in self.tasks:
            task.add_done_callback(_died)

    async def close(self) -> None:
        await self.flush()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.aclose()
        await self.reader.aclose()

    # Writing a turn that runs here.

    def publish(self, feed: ConversationFeed, turn_id: str, seq: int, frame: str, *, end: bool) -> None:
        self.pending.append(_Pending(feed, turn_id, seq, frame, end))
        if len(self.pending) > PENDING_MAX:
            del self.pending[: len(self.pending) - PENDING_MAX]
        self.flushing.set()

    async def flush(self) -> None:
        """Write what is pending now (a stopping process)."""
        batch, self.pending = self.pending, []
        if batch:
            try:
                await self._write(batch)
            except (RedisError, OSError):
                logger.warning("could not write turn events to Redis", exc_info=True)

    async def _write_forever(self) -> None:
        while True:
            await self.flushing.wait()
            await asyncio.sleep(BATCH_SECONDS)
            self.flushing.clear()
            batch, self.pending = self.pending, []
            try:
                await self._write(batch)
            except (RedisError, OSError):
                # Watchers on other workers wait for these; the turn goes on. Try again soon.
                logger.warning("could not write turn events to Redis", exc_info=True, extra={"event": "relay_write"})
                self.pending[:0] = batch
                await asyncio.sleep(0.5)
                self.flushing.set()

    async def _write(self, batch: list[_Pending]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for item in batch:
            key = log_key(item.feed.conversation_id)
            if item.seq == 1:
                pipe.xtrim(key, minid=f"{int(time.time() * 1000) - PREVIOUS_TURN_KEPT_MS}-0")
            fields = {"turn": item.turn_id, "seq": item.seq, "frame": item.frame}
            if item.end:
                fields["end"] = 1
            pipe.xadd(key, fields, maxlen=STREAM_MAX_ENTRIES, approximate=True)
            pipe.expire(key, RESUME_WINDOW_SECONDS)
        results = await pipe.execute()
        # XADD answers with the entry's id (the others with numbers): the relay's reader need
        # not read back what a turn of this process wrote.
        ids = [value for value in results if isinstance(value, bytes)]
        for item, stream_id in zip(batch, ids, strict=False):
            if item.feed.local:
                _advance(item.feed, stream_id)

    # Reading turns that run elsewhere.

    async def catch_up(self, feed: ConversationFeed) -> None:
        """Read what the conversation's stream holds past this process's log, before a new
        socket joins it (and before a resume replays it)."""
        try:
            entries = await self.client.xrange(log_key(feed.conversation_id), min=f"({feed.stream_id}")
        except (RedisError, OSError):
            logger.warning("could not read a turn's events from Redis", exc_info=True)
            return
        _entries_append(feed, entries)

    async def _read_forever(self) -> None:
        while True:
            followed = {log_key(feed.conversation_id): feed for feed in self.feeds.watched() if not feed.local}
            if not followed:
                await asyncio.sleep(READ_BLOCK_MS / 1000)
                continue
            try:
                answer = await self.reader.xread(
                    {key: feed.stream_id for key, feed in followed.items()}, block=READ_BLOCK_MS, count=1000
                )
            except (RedisError, OSError):
                logger.warning("could not read turn events from Redis", exc_info=True, extra={"event": "relay_read"})
                await asyncio.sleep(0.5)
                continue
            for key, entries in answer or []:
                relay_lag_observe(entries[0][0], time.time() * 1000)  # its oldest entry
                feed = followed.get(key.decode())
                if feed is not None:
                    _entries_append(feed, entries)

    # Control and presence.

    def on_control(self, op: str, handler: Callable[[str], None]) -> None:
        self.control_handlers[op] = handler

    async def control_send(self, op: str, conversation_id: str) -> None:
        message = json.dumps({"op": op, "conversation_id": conversation_id, "worker": WORKER})
        await self.client.publish(CONTROL_CHANNEL, message)

    async def _control_forever(self) -> None:
        while True:
            try:
                async with self.client.pubsub() as pubsub:
                    await pubsub.subscribe(CONTROL_CHANNEL)
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._control(json.loads(message["data"]))
            except (RedisError, OSError):
                logger.warning("lost the turn control channel", exc_info=True, extra={"event": "relay_control"})
                await asyncio.sleep(0.5)

    def _control(self, message: dict[str, Any]) -> None:
        handler = self.control_handlers.get(message.get("op", ""))
        if handler is not None and message.get("worker") != WORKER:
            handler(message["conversation_id"])

    async def presence(self, conversation_id: str, *, present: bool) -> None:
        """This worker has (or no longer has) sockets on the conversation."""
        key = _presence_key(conversation_id)
        op = "joined" if present else "left"
        message = json.dumps({"op": op, "conversation_id": conversation_id, "worker": WORKER})
        pipe = self.client.pipeline(transaction=False)  # one round trip
        if present:
            pipe.hset(key, WORKER, time.time() + PRESENCE_SECONDS)
            pipe.expire(key, PRESENCE_SECONDS)
        else:
            pipe.hdel(key, WORKER)
        pipe.publish(CONTROL_CHANNEL, message)
        try:
            await pipe.execute()
        except (RedisError, OSError):
            logger.warning("could not record who watches a conversation", exc_info=True)

    async def watched_elsewhere(self, conversation_id: str) -> bool:
        try:
            entries = await self.client.hgetall(_presence_key(conversation_id))
        except (RedisError, OSError):
            return True  # unsure: do not stop a reply someone may be reading
        now = time.time()
        return any(worker.decode() != WORKER and float(until) > now for worker, until in entries.items())

    async def _presence_forever(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_SECONDS / 3)
            for feed in self.feeds.watched():
                key = _presence_key(feed.conversation_id)
                try:
                    await self.client.hset(key, WORKER, time.time() + PRESENCE_SECONDS)
                    await self.client.expire(key, PRESENCE_SECONDS)
                except (RedisError, OSError):
                    logger.warning("could not refresh presence", exc_info=True)
                    break

    async def _claims_forever(self) -> None:
        """Renew the claims of this process's v1 deliverers (chat/turn/delivery.py)."""
        while True:
            await asyncio.sleep(CLAIM_SECONDS / 3)
            try:
                await self.claims.renew_all()
            except (RedisError, OSError):
                logger.warning("could not renew the turns' deliverers", exc_info=True)


def _entries_append(feed: ConversationFeed, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
    for stream_id, fields in entries:
        if not _advance(feed, stream_id):
            continue  # read already (a catch-up and the reader overlap)
        try:
            turn, seq, frame = fields[b"turn"].decode(), int(fields[b"seq"]), fields[b"frame"].decode()
        except (KeyError, ValueError):
            logger.warning("a malformed entry in %s", log_key(feed.conversation_id))
            continue
        feed.append(turn, seq, frame, end=b"end" in fields)


def _advance(feed: ConversationFeed, stream_id: bytes) -> bool:
    """Move the feed's place in its stream forward to `stream_id`; False if it is not ahead."""
    ms, _, n = stream_id.decode().partition("-")
    old_ms, _, old_n = feed.stream_id.partition("-")
    if (int(ms), int(n or 0)) <= (int(old_ms), int(old_n or 0)):
        return False
    feed.stream_id = stream_id.decode()
    return True


def _died(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the relay's %s stopped", task.get_name(), exc_info=task.exception())


def forget_everywhere(sync_client: redis.Redis, conversation_id: str) -> None:
    """A deleted conversation (blocking): its stream emptied (trimmed, not deleted: a new
    turn's ids must follow every reader's place), and every worker told, this one included."""
    pipe = sync_client.pipeline(transaction=False)
    pipe.xtrim(log_key(conversation_id), maxlen=0)
    pipe.publish(CONTROL_CHANNEL, json.dumps({"op": "deleted", "conversation_id": conversation_id, "worker": ""}))
    try:
        pipe.execute()
    except (RedisError, OSError):
        logger.warning("could not tell the workers a conversation was deleted", exc_info=True)


def frame_send(feed: ConversationFeed, relay: Relay | None, turn_id: str, seq: int, frame: str, *, end: bool) -> None:
    """A turn's frame to every socket: this process's log, and through Redis the other workers'."""
    feed.append(turn_id, seq, frame, end=end)
    if relay is not None:
        relay.publish(feed, turn_id, seq, frame, end=end)


async def watch_begin(relay: Relay | None, feed: ConversationFeed) -> None:
    """Before a socket joins `feed`: catch up with a turn running elsewhere, and say so."""
    if relay is None:
        return
    first = not feed.watchers
    if not feed.local:
        await relay.catch_up(feed)
    if first:
        await relay.presence(feed.conversation_id, present=True)


async def catch_up(relay: Relay | None, feed: ConversationFeed) -> None:
    """Bring this process's log of a turn running elsewhere up to date with the stream."""
    if relay is not None and not feed.local:
        await relay.catch_up(feed)


async def watch_end(relay: Relay | None, feed: ConversationFeed) -> None:
    if relay is not None and not feed.watchers:
        await relay.presence(feed.conversation_id, present=False)


async def stream_continue(relay: Relay | None, feed: ConversationFeed, turn_id: str, frames: list[str]) -> None:
    """A turn paused for tool approval goes on: the conversation's stream must end with its
    frames so far, or the other workers could not place what follows. It expires
    `RESUME_WINDOW_SECONDS` after its last write, and a wait may be longer: then they are
    written again (a worker whose log has them skips them)."""
    if relay is None:
        return
    try:
        last = await relay.client.xrevrange(log_key(feed.conversation_id), count=1)
    except (RedisError, OSError):
        logger.warning("could not read a turn's events from Redis", exc_info=True)
        return
    fields = last[0][1] if last else {}
    if fields.get(b"turn", b"").decode() == turn_id and fields.get(b"seq", b"").decode() == str(len(frames)):
        return
    for seq, frame in enumerate(frames, 1):
        relay.publish(feed, turn_id, seq, frame, end=False)
