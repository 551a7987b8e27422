"""A running turn's lease: its heartbeat, when it lapses, who may claim it, and the events that
close a turn.

A running turn renews its lease with every heartbeat (`HEARTBEAT_SECONDS`), the same write that
saves what its journal holds; one not renewed for `LEASE_STALE_AFTER` (chat/models.py, which
the selectors' queries share) belongs to a process that is gone. Every process checks every
`REAP_EVERY_SECONDS`; the first to claim a lapsed turn rebuilds its journal from the event log
(what the sockets saw, which its dead worker may not have written yet), writes it, and sends
the sockets still watching `error` (code `interrupted`, retryable) and `stream_end`. With these
periods a dead worker's turn is ended at most 14 s after it died, and a live worker may miss
three beats.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.utils import timezone

from chat.models import LEASE_STALE_AFTER, Turn, TurnStatus
from chat.protocol import ErrorEvent, FinalResponseStart, FinishReason, StreamEnd, TurnEvent
from chat.providers import TurnFailure
from chat.store import selectors, services
from chat.store.db import db_async
from chat.turn.journal import journal_from_frames

logger = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 3.0
REAP_EVERY_SECONDS = 2.0
INTERRUPTED = TurnFailure(code="interrupted", message=services.INTERRUPTED_ERROR, retryable=True)


class Lease:
    """The heartbeat of a turn running in this process: every beat writes its journal
    (`flush`, which renews the lease); `on_lost` is called once a beat finds the lease lost."""

    def __init__(self, flush: Callable[[], Awaitable[bool]], on_lost: Callable[[], None]) -> None:
        self.flush = flush
        self.on_lost = on_lost
        self.lost = False
        self.beat: asyncio.Task[None] | None = None  # the latest write
        self.task = asyncio.create_task(self._beat_forever())

    async def stop(self) -> None:
        """Stop beating; a beat still writing goes first: the end is the turn's last write."""
        self.task.cancel()
        await asyncio.gather(self.task, *([self.beat] if self.beat else []), return_exceptions=True)

    async def _beat_forever(self) -> None:
        loop = asyncio.get_running_loop()
        tick = 0
        while True:
            # On the process's ticks, not the turn's own: every running turn beats at once, and
            # their flushes share one transaction (`services.aturn_flush`). The first beat
            # comes sooner than a period after the start, never later; a slow write skips ticks.
            tick = max(tick + 1, int(loop.time() // HEARTBEAT_SECONDS) + 1)
            await asyncio.sleep(tick * HEARTBEAT_SECONDS - loop.time())
            self.beat = asyncio.create_task(self._beat())
            await asyncio.shield(self.beat)  # cancelling the heartbeat must not cut a write short

    async def _beat(self) -> None:
        try:
            if not await self.flush():
                self.lose()
        except Exception:
            # The turn goes on and the next flush writes it all; missed beats only matter once
            # they outlast the lease (another worker then marks the turn interrupted).
            logger.exception("heartbeat failed", extra={"event": "heartbeat_failed"})

    def lose(self) -> None:
        """The lease lapsed (this process was too slow to renew it) and another process ended
        the turn as orphaned."""
        if not self.lost:
            self.lost = True
            self.on_lost()


def closing_events(
    finish: FinishReason, usage: dict[str, Any], failure: TurnFailure | None, *, shown_anything: bool
) -> list[TurnEvent]:
    """A turn's last events: for a failure, its error (in an entry of its own when text or a
    tool was shown: PROTOCOL.md, "Errors after output"), then `stream_end`."""
    events: list[TurnEvent] = []
    if failure is not None:
        if shown_anything:
            events.append(FinalResponseStart())
        events.append(
            ErrorEvent(
                error=failure.message, code=failure.code, retryable=failure.retryable, retry_after=failure.retry_after
            )
        )
    events.append(StreamEnd(finish_reason=finish, usage=usage))
    return events


def turns_orphaned() -> list[Turn]:
    """Running turns whose lease lapsed: their worker died."""
    stale = Turn.objects.filter(status=TurnStatus.STREAMING, heartbeat_at__lt=timezone.now() - LEASE_STALE_AFTER)
    return list(stale.only("id", "conversation_id", "model"))


def turn_claim_orphaned(*, turn_id: Any) -> bool:
    """Take over the lease of a turn whose lease lapsed (its process died), to end it; False
    if it was renewed or another process took it first."""
    stale = Turn.objects.filter(
        id=turn_id, status=TurnStatus.STREAMING, heartbeat_at__lt=timezone.now() - LEASE_STALE_AFTER
    )
    return bool(stale.update(heartbeat_at=timezone.now()))


aturns_orphaned = db_async(turns_orphaned)
aturn_claim_orphaned = db_async(turn_claim_orphaned)
# The frames a turn's sockets were sent, and a way to send its closing events to them.
Frames = Callable[[str, str], Awaitable[list[str]]]
Close = Callable[[Turn, int, list[TurnEvent]], None]


async def turns_reap(*, runs_here: Callable[[str], bool], frames: Frames, close: Close) -> int:
    """End this deployment's orphaned turns; how many this process ended."""
    reaped = 0
    for turn in await aturns_orphaned():
        if runs_here(turn.conversation_id):
            continue  # this process runs it: its heartbeat is late, not gone
        if await aturn_claim_orphaned(turn_id=turn.id):
            reaped += await _interrupt(turn, frames, close)
    return reaped


async def _interrupt(turn: Turn, frames: Frames, close: Close) -> int:
    sent = await frames(turn.conversation_id, str(turn.id))
    journal = journal_from_frames(turn_id=turn.id, conversation_id=turn.conversation_id, frames=sent)
    ended = journal.ended()
    if ended is not None:
        # Its worker sent `stream_end` but could not write the end: write it, send nothing.
        return int(await journal.flush(ended))
    interrupted = services.TurnEnd.of("error", error_code=INTERRUPTED.code, error=INTERRUPTED.message)
    if not await journal.flush(interrupted):
        return 0  # its worker was alive after all, and ended it meanwhile
    logger.warning("turn %s interrupted: its worker stopped", turn.id, extra={"event": "turn_interrupted"})
    if not sent and not await selectors.aturn_latest(turn_id=turn.id):
        return 1  # a newer turn of the conversation holds its log and its sockets now
    usage = await selectors.aturn_usage(turn_id=turn.id)
    close(turn, len(sent), closing_events("error", usage, INTERRUPTED, shown_anything=journal.shown_anything()))
    return 1


async def reap_forever(reap: Callable[[], Awaitable[int]]) -> None:
    while True:
        await asyncio.sleep(REAP_EVERY_SECONDS)
        try:
            await reap()
        except Exception:
            logger.exception("could not check for interrupted turns", extra={"event": "reap_failed"})
