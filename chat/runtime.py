"""This process's state for serving turns, in one object (as Starlette's `app.state`): the
conversations' feeds, the turns running here, the Redis relay, the provider clients, the rate
limits' counters and the background tasks. Start-up creates it (dreamytin/startup.py), shutdown closes it; a process
with no lifespan (a test, `uvicorn --lifespan off`) creates it on first use.

Whatever holds a connection pool is kept per event loop, since a pool belongs to the loop that
made it: a test that drives the app through `async_to_sync` runs on a loop of its own.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import redis
from django.conf import settings

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from chat.local_model import LocalEngine
    from chat.turn.delivery import Claims
    from chat.turn.relay import Relay
    from chat.turn.running import RunningTurn

logger = logging.getLogger(__name__)


class Runtime:
    def __init__(self) -> None:
        # Imported here: the turn package and the limits import this module.
        from accounts.limits import Counters
        from chat.turn.delivery import LocalClaims
        from chat.turn.fanout import Feeds

        self.feeds = Feeds()
        self.local_claims = LocalClaims()  # who delivers a turn to a page, with no Redis
        self.turns: dict[str, RunningTurn] = {}  # conversation id -> its turn running here
        # One client (and connection pool) per endpoint and key, shared by every turn.
        self.openai_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, AsyncOpenAI]] = (
            weakref.WeakKeyDictionary()
        )
        self.local_clients: dict[LocalEngine, AsyncOpenAI] = {}  # in process: bound to no loop
        self._relays: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Relay] = weakref.WeakKeyDictionary()
        self._sync_redis: redis.Redis | None = None
        self.limits = Counters()  # rate limits and open sockets (accounts/limits.py)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.reaper: asyncio.Task[None] | None = None
        self.purger: asyncio.Task[None] | None = None  # RETENTION_DAYS (chat/retention.py)

    def relay_configured(self) -> bool:
        return bool(settings.REDIS_URL)

    def relay(self) -> Relay | None:
        """This loop's relay, started on first use; None without `REDIS_URL` (one process)."""
        if not self.relay_configured():
            return None
        loop = asyncio.get_running_loop()
        relay = self._relays.get(loop)
        if relay is None:
            from chat.turn.relay import Relay

            relay = self._relays[loop] = Relay(settings.REDIS_URL, self.feeds)
            relay.on_control("deleted", self.forget)
        return relay

    def forget(self, conversation_id: str) -> None:
        """A deleted conversation: stop its turn here, close its sockets, drop its log."""
        turn = self.turns.get(conversation_id)
        if turn is not None:
            turn.run.stop()
        self.feeds.forget(conversation_id)

    def loop_of(self, conversation_id: str) -> asyncio.AbstractEventLoop | None:
        """The loop serving the conversation in this process, if anything here serves it."""
        turn = self.turns.get(conversation_id)
        if turn is not None:
            return turn.task.get_loop()
        feed = self.feeds.find(conversation_id)
        return next((watcher.task.get_loop() for watcher in feed.watchers), None) if feed is not None else None

    def claims(self) -> Claims:
        """Where it is kept which of a page's v1 sockets delivers a turn."""
        relay = self.relay()
        return relay.claims if relay is not None else self.local_claims

    def sync_redis(self) -> redis.Redis:
        """A blocking client, for the reads of a synchronous view (in a thread)."""
        if self._sync_redis is None:
            self._sync_redis = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
        return self._sync_redis

    def spawn(self, work: Coroutine[Any, Any, Any], *, name: str | None = None) -> asyncio.Task[Any]:
        """Run `work` in the background, held until done (the loop keeps only a weak reference)."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """At shutdown, after the turns drained: stop the background work and close the clients."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        loop = asyncio.get_running_loop()
        relay = self._relays.pop(loop, None)
        if relay is not None:
            await relay.close()
        for client in self.openai_clients.pop(loop, {}).values():
            await client.close()
        await self.limits.aclose()
        if self._sync_redis is not None:
            self._sync_redis.close()
            self._sync_redis = None


_runtime: Runtime | None = None


def runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime()
    return _runtime
