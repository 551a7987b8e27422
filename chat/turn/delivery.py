"""Which v1 socket of a page shows a turn (PROTOCOL.md, "Two kinds of socket").

The existing frontend may hold several sockets on one conversation, all feeding one handler
that appends every text delta to the last message, so each event must reach that page once.
A page is its client: the same user, address, Origin and User-Agent. Of a client's v1 sockets
on a conversation, one delivers each turn: the socket that sent it while it is open, else one
other. The others stand by; when the deliverer closes mid-turn it hands over how far it got,
and a standby goes on from there. A socket that joins a running turn shortly after its
client's `GET /conversations/<id>` starts after what that GET showed (`live.seq`), however
late it joined. v2 sockets take no part: each is sent every turn.

Who delivers is a claim per turn and client, kept in Redis when `REDIS_URL` is set (a page's
sockets may reach different workers), else in this process.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import redis
from redis import asyncio as aioredis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)
SEEN_SECONDS = 5.0  # how long after a client's GET a joining socket starts where the GET stopped
CLAIM_SECONDS = 12.0  # a deliverer's claim lapses unless renewed (its worker died with it)
CLAIM_KEPT_SECONDS = 300  # a claim's record outlives its turn by this much at most


Announce = Callable[[str], Awaitable[None]]  # tells every worker a conversation's deliverer left


def client_key(*, user_id: int | None, address: str, origin: str, user_agent: str) -> str:
    """The page a socket or request comes from, as far as the server can tell."""
    raw = f"{user_id}\x00{address}\x00{origin}\x00{user_agent}"
    return hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


@dataclass(frozen=True)
class Claim:
    """What `claim` found: whether this socket now delivers the turn, and after which seq."""

    won: bool
    after: int = 0


class Claims(Protocol):
    lapses: bool  # whether a deliverer can vanish without handing over (its worker died)

    async def claim(
        self, *, conversation_id: str, turn_id: str, client: str, socket_id: str, joined_at: int, forced: bool = False
    ) -> Claim: ...

    async def release(self, *, conversation_id: str, turn_id: str, client: str, socket_id: str, sent: int) -> None: ...

    def renew(self, *, conversation_id: str, turn_id: str, client: str, socket_id: str, sent: int) -> None: ...

    def forget(self, *, conversation_id: str, turn_id: str, client: str, socket_id: str) -> None: ...


def _start(fresh: bool, handed: int, joined_at: int, seen: int | None) -> int:
    """Where a new deliverer starts: after what its client's recent GET showed, else where it
    joined (0 when it was there before the turn began), and never before what the last
    deliverer handed over (a standby takes over where the deliverer stopped; a socket that
    joins later starts from then on, as a v1 socket always did)."""
    start = seen if seen is not None else joined_at
    return start if fresh else max(handed, start)


@dataclass
class _Held:
    holder: str  # the socket that delivers; "" once it left
    sent: int  # what it had sent when it left (or last said so)
    until: float = field(default_factory=lambda: time.monotonic() + CLAIM_KEPT_SECONDS)


class LocalClaims:
    """One process: claims and recent GETs in memory."""

    lapses = False

    def __init__(self) -> None:
        self.held: dict[tuple[str, str, str], _Held] = {}
        self.recent: dict[tuple[str, str], tuple[str, int, float]] = {}  # (conversation, client) -> GET

    async def claim(
        self, *, conversation_id: str, turn_id: str, client: str, socket_id: str, joined_at: int, forced: bool = False
    ) -> Claim:
        key = (conversation_id, turn_id, client)
        held = self.held.get(key)
        if forced or held is None:
            self._forget_old()
            self.held[key] = _Held(socket_id, 0)
            return Claim(
                True, 0 if forced else _start(True, 0, joined_at, self._seen(conversation_id, client, turn_id))
            )
        if held.holder == socket_id:
            return Claim(True, held.sent)
        if held.holder:
            return Claim(False)
        held.holder = socket_id
        return Claim(True, _start(False, held.sent, joined_at, self._seen(conversation_id, client, turn_id)))

    async def release(self, *, conversation_id: str, turn_id: str, client: str, socket_id: str, sent: int) -> None:
        held = self.held.get((conversation_id, turn_id, client))
        if held is not None and held.holder == socket_id:
            held.holder, held.sent = "", sent

    def renew(self, *, conversation_id: str, turn_id: str, client: str, socket_id: str, sent: int) -> None:
        """Nothing to renew: a claim in memory dies with its process, and with its sockets."""

    def forget(self, *, conversation_id: str, turn_id: str, client: str, socket_id: str) -> None:
        self.held.pop((conversation_id, turn_id, client), None)

    def seen_record(self, *, conversation_id: str, client: str, turn_id: str, seq: int) -> None:
        """A client's GET showed `turn_id` up to `seq` (from the view's thread)."""
        self.recent[(conversation_id, client)] = (turn_id, seq, time.monotonic() + SEEN_SECONDS)

    def _seen(self, conversation_id: str, client: str, turn_id: str) -> int | None:
        recent = self.recent.get((conversation_id, client))
        if recent is None or recent[0] != turn_id or recent[2] < time.monotonic():
            return None
        return recent[1]

    def _forget_old(self) -> None:
        now = time.monotonic()
        if len(self.held) > 256:
            self.held = {key: held for key, held in self.held.items() if held.until > now}
        if len(self.recent) > 256:
            self.recent = {key: recent for key, recent in self.recent.items() if recent[2] > now}


# KEYS[1]: the claim; ARGV: socket, now, lapse time, forced. Returns {fresh, handed} when the
# socket now holds the claim, nil when another socket does. A holder whose `until` passed died
# with its worker: its claim is taken over from what it last said it had sent.
_CLAIM = """
local holder = redis.call('HGET', KEYS[1], 'holder')
local sent = tonumber(redis.call('HGET', KEYS[1], 'sent') or '0')
local lapses = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if ARGV[4] == '1' or not holder then
  redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'sent', 0, 'until', ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return {1, 0}
end
if holder == ARGV[1] then
  return {0, sent}
end
if holder ~= '' and lapses > tonumber(ARGV[2]) then
  return nil
end
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'until', ARGV[3])
return {0, sent}
"""
# KEYS[1]: the claim; ARGV: socket, sent, and '' to hand it over or a lapse time to renew it.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return 0 end
if ARGV[3] == '' then
  redis.call('HSET', KEYS[1], 'holder', '', 'sent', ARGV[2])
else
  redis.call('HSET', KEYS[1], 'sent', ARGV[2], 'until', ARGV[3])
end
return 1
"""


class RedisClaims:
    """Several workers: claims in Redis; a handover is announced on the relay's control channel
    (`released`), so a standby socket on any worker takes over at once."""

    lapses = True

    def __init__(self, client: aioredis.Redis, announce: Announce) -> None:
        self.client = client
        self.announce = announce
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self.renewals: dict[tuple[str, str, str, str], int] = {}  # the claims this process holds

    async def claim(
        self, *, conversation_id: str, turn_id: str, client: str, socket_id: str, joined_at: int, forced: bool = False
    ) -> Claim:
        now = time.time()
        try:
            answer = await self._claim(
                keys=[_claim_key(conversation_id, turn_id, client)],
                args=[socket_id, now, now + CLAIM_SECONDS, int(forced), CLAIM_KEPT_SECONDS],
            )
        except (RedisError, OSError):
            # Unsure who delivers: deliver, since a duplicate shows, but a gap loses text for good.
            logger.warning("could not claim a turn's delivery", exc_info=True)
            return Claim(True, joined_at)
        if answer is None:
            return Claim(False)
        fresh, handed = int(answer[0]), int(answer[1])
        self.renewals[(conversation_id, turn_id, client, socket_id)] = handed
        if forced:
            return Claim(True, 0)
        seen = await self._seen(conversation_id, client, turn_id)
        return Claim(True, _start(bool(fresh), handed, joined_at, seen))

    async def release(self, *, conversation_id: str, turn_id: str, client: str, socket_id: str, sent: int) -> None:
        self.renewals.pop((conversation_id, turn_id, client, socket_id), None)
        try:
            await self._release(keys=[_claim_key(conversation_id, turn_id, client)], args=[socket_id, sent, ""])
            await self.announce(conversation_id)
        except (RedisError, OSError):
            logger.warning("could not hand over a turn's delivery", exc_info=True)

    def renew(self, *, conversation_id: str, turn_id: str, client: str, socket_id: str, sent: int) -> None:
        self.renewals[(conversation_id, turn_id, client, socket_id)] = sent

    async def renew_all(self) -> None:
        """Renew every claim this process holds (the relay's presence loop calls this)."""
        if not self.renewals:
            return
        until = time.time() + CLAIM_SECONDS
        pipe = self.client.pipeline(transaction=False)
        for (conversation_id, turn_id, client, socket_id), sent in self.renewals.items():
            await self._release(
                keys=[_claim_key(conversation_id, turn_id, client)], args=[socket_id, sent, until], client=pipe
            )
        results = await pipe.execute()
        for key, held in zip(list(self.renewals), results, strict=False):
            if not held:
                self.renewals.pop(key, None)

    def forget(self, *, conversation_id: str, turn_id: str, client: str, socket_id: str) -> None:
        """The turn ended and its deliverer sent all of it: nothing left to renew."""
        self.renewals.pop((conversation_id, turn_id, client, socket_id), None)

    async def _seen(self, conversation_id: str, client: str, turn_id: str) -> int | None:
        try:
            value = await self.client.get(_seen_key(conversation_id, client))
        except (RedisError, OSError):
            return None
        if value is None:
            return None
        seen_turn, _, seq = value.decode().partition(" ")
        return int(seq) if seen_turn == turn_id else None


def _claim_key(conversation_id: str, turn_id: str, client: str) -> str:
    return f"dreamytin:deliver:{conversation_id}:{turn_id}:{client}"


def _seen_key(conversation_id: str, client: str) -> str:
    return f"dreamytin:seen:{conversation_id}:{client}"


def seen_record_redis(sync_client: redis.Redis, *, conversation_id: str, client: str, turn_id: str, seq: int) -> None:
    """A client's GET showed `turn_id` up to `seq`, for a socket on any worker (blocking: from
    the view's thread)."""
    try:
        sync_client.set(_seen_key(conversation_id, client), f"{turn_id} {seq}", px=int(SEEN_SECONDS * 1000))
    except (RedisError, OSError):
        logger.warning("could not record what a GET showed", exc_info=True)
