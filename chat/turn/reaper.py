"""Turns whose worker died (kill -9, out of memory, a deploy): found by their lapsed lease and
ended as `interrupted`, with what their sockets were shown kept.

A running turn renews its lease with every heartbeat (`HEARTBEAT_SECONDS`); one not renewed for
`STALE_AFTER` belongs to a process that is gone. Every process checks every
`REAP_EVERY_SECONDS`; the first to claim a turn rebuilds its journal from the event log (what
the sockets saw, which its dead worker may not have written yet), writes it, and sends the
sockets still watching `error` (code `interrupted`, retryable) and `stream_end`.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

from chat.models import TurnStatus
from chat.protocol import ErrorEvent, FinalResponseStart, StreamEnd
from chat.store import selectors, services
from chat.turn.journal import journal_from_frames
from chat.turn.live import turn_live
from chat.turn.log import feed_get
from chat.turn.relay import frame_send, relay_get, turn_frames
from chat.wire import TurnFrames

logger = logging.getLogger(__name__)
REAP_EVERY_SECONDS = 2.0


async def turns_reap() -> int:
    """End this deployment's orphaned turns; how many this process ended."""
    reaped = 0
    for turn in await selectors.aturns_orphaned():
        if turn_live(turn.conversation_id) is not None:
            continue  # this process runs it: its heartbeat is late, not gone
        if await services.aturn_claim_orphaned(turn_id=turn.id):
            reaped += await _interrupt(turn.id, turn.conversation_id, turn.model)
    return reaped


async def _interrupt(turn_id: object, conversation_id: str, model: str) -> int:
    message_id = str(turn_id)
    # The stream, not this process's log, which stops following a conversation nobody here watches.
    frames = await asyncio.to_thread(turn_frames, conversation_id, message_id, local=False)
    journal = journal_from_frames(turn_id=turn_id, conversation_id=conversation_id, frames=frames)
    ended = journal.ended()
    if ended is not None:
        # Its worker sent `stream_end` but could not write the end: write it, send nothing.
        return int(await journal.flush(ended))
    interrupted = services.TurnEnd(
        TurnStatus.INTERRUPTED, "error", error_code="interrupted", error=services.INTERRUPTED_ERROR
    )
    if not await journal.flush(interrupted):
        return 0  # its worker was alive after all, and ended it meanwhile
    logger.warning("turn %s interrupted: its worker stopped", message_id, extra={"event": "turn_interrupted"})
    if not frames and not await selectors.aturn_latest(turn_id=turn_id):
        return 1  # a newer turn of the conversation holds its log and its sockets now
    encoder = TurnFrames(model=model, conversation_id=conversation_id, message_id=message_id)
    encoder.seq = len(frames)
    closing = [
        *([FinalResponseStart()] if journal.shown_anything() else []),
        ErrorEvent(error=services.INTERRUPTED_ERROR, code="interrupted", retryable=True),
        StreamEnd(finish_reason="error", usage=await selectors.aturn_usage(turn_id=turn_id)),
    ]
    feed, relay = feed_get(conversation_id), relay_get()
    for event in closing:
        frame = encoder.encode(event)
        frame_send(feed, relay, message_id, encoder.seq, frame, end=isinstance(event, StreamEnd))
    return 1


async def _reap_forever() -> None:
    while True:
        await asyncio.sleep(REAP_EVERY_SECONDS)
        try:
            await turns_reap()
        except Exception:
            logger.exception("could not check for interrupted turns", extra={"event": "reap_failed"})


_reapers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = weakref.WeakKeyDictionary()


def reaper_start() -> None:
    """Start this event loop's periodic check, once (at the server's start)."""
    loop = asyncio.get_running_loop()
    if loop not in _reapers:
        _reapers[loop] = loop.create_task(_reap_forever(), name="turn reaper")
