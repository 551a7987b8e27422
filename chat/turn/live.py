"""The turns running in this process, owned by their conversation rather than by a socket.

A turn runs to its end or its cancel whether or not the socket that started it stays. When the
conversation's last socket (on any worker) leaves, the turn goes on for `TURN_DETACH_GRACE`
seconds, then is cancelled, so an abandoned reply stops costing money; with 0 it is cancelled at
once. A cancel frame on any worker reaches the turn through the relay's control channel.
"""

from __future__ import annotations

import asyncio
import logging

from django.conf import settings

from chat.protocol import StreamEnd, TurnEvent
from chat.turn.log import ConversationFeed, Send, Watcher, feed_get
from chat.turn.relay import relay_get, watch_begin, watch_end
from chat.turn.runner import TurnPlan, turn_run
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
        self.task = asyncio.create_task(turn_run(plan, self.emit), name=f"turn {self.turn_id}")

    def emit(self, event: TurnEvent) -> None:
        frame = self.frames.encode(event)
        end = isinstance(event, StreamEnd)
        self.feed.append(self.turn_id, self.frames.seq, frame, end=end)
        if self.relay is not None:
            self.relay.publish(self.feed, self.turn_id, self.frames.seq, frame, end=end)

    async def cancel(self) -> None:
        """Stop the turn; it records the cancel and sends `stream_end` before this returns."""
        self.task.cancel()
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
            self.task.cancel()
        elif self.grace is None:
            self.grace = asyncio.create_task(self._grace(grace))

    def attached(self) -> None:
        if self.grace is not None:
            self.grace.cancel()
            self.grace = None

    async def _grace(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.grace = None
        if self.feed.watchers:
            return
        if self.relay is not None and await self.relay.watched_elsewhere(self.plan.conversation_id):
            return
        logger.info("cancelling turn %s: no socket for %s s", self.turn_id, seconds, extra={"event": "turn_abandoned"})
        self.task.cancel()


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
        await relay.control_send("cancel", conversation_id)


async def watch(conversation_id: str, send: Send) -> Watcher:
    """A socket joins its conversation: it receives its turns' events from now on."""
    feed = feed_get(conversation_id)
    await watch_begin(feed)
    watcher = Watcher(feed, send)
    turn = _live.get(conversation_id)
    if turn is not None:
        turn.attached()
    return watcher


async def unwatch(watcher: Watcher) -> None:
    await watcher.close()
    await watch_end(watcher.feed.conversation_id)


def _left(conversation_id: str) -> None:
    turn = _live.get(conversation_id)
    if turn is not None:
        task = asyncio.create_task(turn.detached_check())
        _background.add(task)
        task.add_done_callback(_background.discard)


def _joined(conversation_id: str) -> None:
    turn = _live.get(conversation_id)
    if turn is not None:
        turn.attached()


def _cancelled(conversation_id: str) -> None:
    turn = _live.get(conversation_id)
    if turn is not None:
        turn.task.cancel()


_background: set[asyncio.Task[None]] = set()


def _control_handlers() -> None:
    relay = relay_get()
    if relay is not None and not relay.control_handlers:
        relay.on_control("cancel", _cancelled)
        relay.on_control("left", _left)
        relay.on_control("joined", _joined)


async def turns_drain() -> None:
    """A stopping worker: let its turns finish for up to `TURN_DRAIN_SECONDS` (their sockets
    reconnect to other workers, which show them through the relay). A turn still running past
    it is left to the reaper, which marks it interrupted."""
    tasks = [turn.task for turn in _live.values()]
    if tasks:
        logger.info("draining %s turns", len(tasks), extra={"event": "turns_drain"})
        await asyncio.wait(tasks, timeout=settings.TURN_DRAIN_SECONDS)


async def turns_cancel_all() -> None:
    """Cancel every turn of this process (a test's end; a worker's shutdown marks them
    interrupted instead, through its missed lease)."""
    await asyncio.gather(*(turn.cancel() for turn in list(_live.values())), return_exceptions=True)
