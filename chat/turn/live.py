"""The turns running in this process, owned by their conversation rather than by a socket.

A turn runs to its end or its cancel whether or not the socket that started it stays. When the
conversation's last socket (on any worker) leaves, the turn goes on for `TURN_DETACH_GRACE`
seconds, then is cancelled, so an abandoned reply stops costing money; with 0 it is cancelled at
once. A cancel frame on any worker reaches the turn through the relay's control channel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

from chat.protocol import StreamEnd, TurnEvent
from chat.turn.log import ConversationFeed, Send, Watcher, feed_get
from chat.turn.relay import catch_up, frame_send, relay_get, watch_begin, watch_end
from chat.turn.runner import TurnPlan, TurnRun
from chat.wire import TurnFrames

logger = logging.getLogger(__name__)


class LiveTurn:
    def __init__(self, plan: TurnPlan, feed: ConversationFeed) -> None:
        self.plan = plan
        self.feed = feed
        self.turn_id = str(plan.turn_id)
        self.frames = TurnFrames(model=plan.model.id, conversation_id=plan.conversation_id, message_id=self.turn_id)
        self.relay = relay_get()
        self.grace: asyncio.Task[None] | None = None
        self.stopping = False
        self.run = TurnRun(plan, self.emit)
        self.task = asyncio.create_task(self.run.run(), name=f"turn {self.turn_id}")

    def emit(self, event: TurnEvent) -> None:
        frame = self.frames.encode(event)
        frame_send(self.feed, self.relay, self.turn_id, self.frames.seq, frame, end=isinstance(event, StreamEnd))

    def stop(self, *, interrupted: bool = False) -> None:
        """Cancel the turn, once: a second cancel would cut short its recording of the first."""
        if self.stopping or self.task.done():
            return
        self.stopping = True
        if interrupted:
            self.run.mark_interrupted()
        self.task.cancel()

    async def cancel(self) -> None:
        """Stop the turn; it records the cancel and sends `stream_end` before this returns."""
        self.stop()
        await asyncio.gather(self.task, return_exceptions=True)

    async def detached_check(self) -> None:
        """The last socket here left (or one elsewhere did): start the grace period if no
        socket anywhere watches the conversation."""
        if self.feed.watchers or self.task.done():
            return
        if self.relay is not None and await self.relay.watched_elsewhere(self.plan.conversation_id):
            return
        grace = settings.TURN_DETACH_GRACE
        if grace <= 0:
            if not self.feed.watchers:  # none joined while Redis answered
                self.stop()
        elif self.grace is None:
            self.grace = asyncio.create_task(self._grace(grace))

    def attached(self) -> None:
        if self.grace is not None:
            self.grace.cancel()
            self.grace = None

    async def _grace(self, seconds: float) -> None:
        # Until a socket joins here (`attached`) or no socket anywhere watches: a worker whose
        # socket watched it may have died without saying so (its presence lapses).
        while True:
            await asyncio.sleep(seconds)
            if self.feed.watchers:
                break
            if self.relay is None or not await self.relay.watched_elsewhere(self.plan.conversation_id):
                logger.info(
                    "cancelling turn %s: no socket for %s s", self.turn_id, seconds, extra={"event": "turn_abandoned"}
                )
                self.stop()
                break
        self.grace = None


_live: dict[str, LiveTurn] = {}


def turn_live(conversation_id: str) -> LiveTurn | None:
    return _live.get(conversation_id)


def turn_launch(plan: TurnPlan) -> LiveTurn:
    """Run `plan` in this process, for every socket on its conversation."""
    feed = feed_get(plan.conversation_id)
    feed.local = True
    feed.on_leave = _left
    turn = _live[plan.conversation_id] = LiveTurn(plan, feed)
    _control_handlers()

    def ended(_: asyncio.Task[None]) -> None:
        if _live.get(plan.conversation_id) is turn:
            del _live[plan.conversation_id]
        feed.local = False
        if turn.grace is not None:
            turn.grace.cancel()

    turn.task.add_done_callback(ended)
    if not feed.watchers:  # started with no socket watching (a socket that left at once)
        _left(plan.conversation_id)
    return turn


async def turn_cancel(conversation_id: str) -> None:
    """Cancel the conversation's turn, wherever it runs."""
    turn = _live.get(conversation_id)
    if turn is not None:
        await turn.cancel()
        return
    relay = relay_get()
    if relay is not None:
        try:
            await relay.control_send("cancel", conversation_id)
        except (RedisError, OSError):
            logger.warning("could not send a cancel to the other workers", exc_info=True)


async def watch(conversation_id: str, send: Send, *, resume_after: int | None = None) -> Watcher:
    """A socket joins its conversation: it receives its turns' events from now on, or, with
    `resume_after`, the events after that seq first, then `resume_end`."""
    feed = feed_get(conversation_id)
    feed.joining += 1
    try:
        await watch_begin(feed)
    finally:
        feed.joining -= 1
    watcher = Watcher(feed, send, resume_after=resume_after)
    turn = _live.get(conversation_id)
    if turn is not None:
        turn.attached()
    return watcher


async def resume(watcher: Watcher, after_seq: int) -> None:
    """Send the socket the turn's events after `after_seq`, up to date with the stream first."""
    await catch_up(watcher.feed)
    watcher.resume(after_seq)


async def unwatch(watcher: Watcher) -> None:
    await watcher.close()
    # Telling the other workers is Redis's round trip: the socket's close does not wait for it
    # (its connection slot is freed when the close returns).
    _in_background(watch_end(watcher.feed.conversation_id))


def _left(conversation_id: str) -> None:
    turn = _live.get(conversation_id)
    if turn is not None:
        _in_background(turn.detached_check())


def _in_background(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.create_task(work)
    _background.add(task)  # held until done: the loop keeps only a weak reference
    task.add_done_callback(_background.discard)


def _joined(conversation_id: str) -> None:
    turn = _live.get(conversation_id)
    if turn is not None:
        turn.attached()


def _cancelled(conversation_id: str) -> None:
    turn = _live.get(conversation_id)
    if turn is not None:
        turn.stop()


_background: set[asyncio.Task[None]] = set()


def _control_handlers() -> None:
    relay = relay_get()
    if relay is not None and not relay.control_handlers:
        relay.on_control("cancel", _cancelled)
        relay.on_control("left", _left)
        relay.on_control("joined", _joined)


async def turns_drain() -> None:
    """A stopping worker: let its turns finish for up to `TURN_DRAIN_SECONDS` (their sockets
    reconnect to other workers, which show them through the relay); end the rest as
    `interrupted`, and send what the relay holds."""
    turns = list(_live.values())
    if not turns:
        return
    logger.info("draining %s turns", len(turns), extra={"event": "turns_drain"})
    await asyncio.wait([turn.task for turn in turns], timeout=settings.TURN_DRAIN_SECONDS)
    # Those still running end now as `interrupted`, while this process can still say so.
    for turn in turns:
        turn.stop(interrupted=True)
    await asyncio.gather(*(turn.task for turn in turns), return_exceptions=True)
    relay = relay_get()
    if relay is not None:
        await relay.flush()


async def turns_cancel_all() -> None:
    """Cancel every turn of this process (a test's end)."""
    await asyncio.gather(*(turn.cancel() for turn in list(_live.values())), return_exceptions=True)
