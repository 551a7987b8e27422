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
from chat.runtime import Runtime
from chat.turn.fanout import ConversationFeed
from chat.turn.relay import Relay, frame_send
from chat.turn.runner import StopReason, TurnPlan, TurnRun
from chat.wire import TurnFrames

logger = logging.getLogger(__name__)


class RunningTurn:
    """A turn of this process: its run, the feed its frames go to, and its detach grace."""

    def __init__(
        self, plan: TurnPlan, feed: ConversationFeed, relay: Relay | None, *, background: bool = False
    ) -> None:
        self.plan = plan
        self.background = background  # started with `"background": true`: nobody need watch it
        self.feed = feed
        self.relay = relay
        self.turn_id = str(plan.turn_id)
        self.frames = TurnFrames(model=plan.model.id, conversation_id=plan.conversation_id, message_id=self.turn_id)
        if plan.resume is not None:  # paused for tool approval: its seq goes on
            self.frames.seq = len(plan.resume.frames)
            feed.turn_continue(self.turn_id, plan.resume.frames)
        self.grace: asyncio.Task[None] | None = None
        self.run = TurnRun(plan, self.emit, self)

    @property
    def task(self) -> asyncio.Task[None]:
        return self.run.task

    def emit(self, event: TurnEvent) -> None:
        frame = self.frames.encode(event)
        frame_send(self.feed, self.relay, self.turn_id, self.frames.seq, frame, end=isinstance(event, StreamEnd))

    # The outlet of a pause for tool approval (chat/turn/approval.py): frames encoded before
    # they are stored, and sent after.

    def sent(self) -> list[str]:
        log = self.feed.log
        return list(log.frames) if log is not None and log.turn_id == self.turn_id else []

    def encode(self, event: TurnEvent) -> tuple[int, str]:
        frame = self.frames.encode(event)
        return self.frames.seq, frame

    def send(self, seq: int, frame: str) -> None:
        frame_send(self.feed, self.relay, self.turn_id, seq, frame, end=False)

    def rewind(self, count: int) -> None:
        self.frames.seq -= count

    async def cancel(self) -> None:
        """Stop the turn; it records the cancel and sends `stream_end` before this returns."""
        self.run.stop(StopReason.CANCEL)
        await asyncio.gather(self.task, return_exceptions=True)

    async def detached_check(self) -> None:
        """The last socket here left (or one elsewhere did): start the grace period if no
        socket anywhere watches the conversation (never for a background turn)."""
        if self.background or self.feed.watchers or self.task.done():
            return
        if self.relay is not None and await self.relay.watched_elsewhere(self.plan.conversation_id):
            return
        grace = settings.TURN_DETACH_GRACE
        if grace <= 0:
            if not self.feed.watchers:  # none joined while Redis answered
                self.run.stop(StopReason.CANCEL)
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
                self.run.stop(StopReason.CANCEL)
                break
        self.grace = None


def turn_launch(state: Runtime, plan: TurnPlan, *, background: bool = False) -> RunningTurn:
    """Run `plan` in this process, for every socket on its conversation."""
    feed = state.feeds.get(plan.conversation_id)
    feed.local = True
    feed.on_leave = lambda conversation_id: turn_left(state, conversation_id)
    relay = state.relay()
    turn = state.turns[plan.conversation_id] = RunningTurn(plan, feed, relay, background=background)
    if relay is not None and "cancel" not in relay.control_handlers:
        relay.on_control("cancel", lambda conversation_id: turn_stop(state, conversation_id))
        relay.on_control("left", lambda conversation_id: turn_left(state, conversation_id))
        relay.on_control("joined", lambda conversation_id: turn_joined(state, conversation_id))

    def ended(_: asyncio.Task[None]) -> None:
        if state.turns.get(plan.conversation_id) is turn:
            del state.turns[plan.conversation_id]
        feed.local = False
        if turn.grace is not None:
            turn.grace.cancel()

    turn.task.add_done_callback(ended)
    if not feed.watchers:  # started with no socket watching (a socket that left at once)
        turn_left(state, plan.conversation_id)
    return turn


def turn_left(state: Runtime, conversation_id: str) -> None:
    turn = state.turns.get(conversation_id)
    if turn is not None:
        state.spawn(turn.detached_check())


def turn_joined(state: Runtime, conversation_id: str) -> None:
    turn = state.turns.get(conversation_id)
    if turn is not None:
        turn.attached()


def turn_stop(state: Runtime, conversation_id: str, reason: StopReason = StopReason.CANCEL) -> None:
    turn = state.turns.get(conversation_id)
    if turn is not None:
        turn.run.stop(reason)


async def turns_drain(state: Runtime) -> None:
    """A stopping worker: let its turns finish for up to `TURN_DRAIN_SECONDS` (their sockets
    reconnect to other workers, which show them through the relay); end the rest as
    `interrupted`, and send what the relay holds."""
    turns = list(state.turns.values())
    if not turns:
        return
    logger.info("draining %s turns", len(turns), extra={"event": "turns_drain"})
    await asyncio.wait([turn.task for turn in turns], timeout=settings.TURN_DRAIN_SECONDS)
    # Those still running end now as `interrupted`, while this process can still say so.
    for turn in turns:
        turn.run.stop(StopReason.INTERRUPT)
    await asyncio.gather(*(turn.task for turn in turns), return_exceptions=True)
    relay = state.relay()
    if relay is not None:
        await relay.flush()


def turn_close(
    state: Runtime, conversation_id: str, turn_id: str, model: str, sent: int, events: list[TurnEvent]
) -> None:
    """Send a turn that runs nowhere its closing `events`, after the `sent` it had."""
    encoder = TurnFrames(model=model, conversation_id=conversation_id, message_id=turn_id)
    encoder.seq = sent
    feed, relay = state.feeds.get(conversation_id), state.relay()
    for event in events:
        frame = encoder.encode(event)
        frame_send(feed, relay, turn_id, encoder.seq, frame, end=isinstance(event, StreamEnd))
