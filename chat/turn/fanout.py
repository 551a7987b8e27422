"""Fan-out: a conversation's turn events as every socket receives them, in this process.

Each process keeps, per conversation it serves, the frames of the latest turn (`TurnLog`: the
one in progress, or the last one for `RESUME_WINDOW_SECONDS`) and the sockets that watch it.
A turn running here appends its frames directly; a turn running on another worker reaches this
log through the Redis relay (chat/turn/relay.py), which appends the same frames, same `seq`.
Each socket sends from the log at its own pace, so a slow socket never holds up the turn or the
other sockets, and a `resume` is a replay from the same list. The feeds live in the process's
runtime (chat/runtime.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from chat.turn.delivery import CLAIM_SECONDS, Claims
from chat.wire import json_encode, timestamp_now

logger = logging.getLogger(__name__)
RESUME_WINDOW_SECONDS = 300  # how long a turn that ended can still be resumed
Send = Callable[[str], Awaitable[None]]


class TurnLog:
    """The frames of one turn: `frames[i]` is the event with `seq` i + 1."""

    __slots__ = ("ended", "frames", "turn_id")

    def __init__(self, turn_id: str) -> None:
        self.turn_id = turn_id
        self.frames: list[str] = []
        self.ended = False


class ConversationFeed:
    def __init__(self, conversation_id: str, feeds: Feeds) -> None:
        self.conversation_id = conversation_id
        self.feeds = feeds
        self.log: TurnLog | None = None
        self.earlier: deque[str] = deque(maxlen=8)  # the turns the log held before this one
        self.watchers: set[Watcher] = set()
        self.local = False  # a turn of this process is writing the log (the relay need not read it)
        self.joining = 0  # sockets on their way in (waiting for Redis)
        self.stream_id = "0-0"  # the relay's place in the conversation's Redis stream
        self.on_leave: Callable[[str], None] | None = None  # set by the live turn that runs here

    def append(self, turn_id: str, seq: int, frame: str, *, end: bool = False) -> bool:
        """Add the event `seq` of `turn_id`; False for one the log has (a relay reading back
        what this process wrote) or cannot place."""
        log = self.log
        if log is None or log.turn_id != turn_id:
            if seq != 1:
                return False  # the middle of a turn this log never saw begin
            if turn_id in self.earlier:
                # A turn this log moved past: the relay reading back late what this process
                # wrote for it. Taken, it would replace the running turn's log and be sent again.
                return False
            if log is not None:
                self.earlier.append(log.turn_id)
            self.log = log = TurnLog(turn_id)
        if seq != len(log.frames) + 1:
            return False
        log.frames.append(frame)
        log.ended = end
        for watcher in self.watchers:
            watcher.wake.set()
        if end:
            self.feeds.drop_later(self)
        return True

    def turn_continue(self, turn_id: str, frames: list[str]) -> None:
        """A turn paused for tool approval goes on in this process, which may never have seen
        its frames (or have forgotten them): its log is what was sent before the pause, and the
        sockets watching now go on from there."""
        log = self.log
        if log is not None and log.turn_id == turn_id and len(log.frames) == len(frames):
            return
        if log is not None and log.turn_id != turn_id:
            self.earlier.append(log.turn_id)
        self.log = log = TurnLog(turn_id)
        log.frames = list(frames)
        for watcher in self.watchers:
            watcher.log, watcher.sent, watcher.delivering = log, len(frames), None

    def live(self) -> bool:
        return self.log is not None and not self.log.ended

    def idle(self) -> bool:
        """Nothing holds it: no socket, none joining, no turn running or being written here."""
        return not self.watchers and not self.joining and not self.local and not self.live()


class Feeds:
    """The conversations this process serves, each with its feed."""

    def __init__(self) -> None:
        self._feeds: dict[str, ConversationFeed] = {}
        self.closing: set[asyncio.Task[None]] = set()

    def get(self, conversation_id: str) -> ConversationFeed:
        feed = self._feeds.get(conversation_id)
        if feed is None:
            feed = self._feeds[conversation_id] = ConversationFeed(conversation_id, self)
        return feed

    def find(self, conversation_id: str) -> ConversationFeed | None:
        return self._feeds.get(conversation_id)

    def forget(self, conversation_id: str) -> None:
        """The conversation was deleted: drop its log (a socket that takes its id next must not
        resume its last turn) and close its sockets."""
        feed = self._feeds.pop(conversation_id, None)
        if feed is None:
            return
        feed.log = None
        for watcher in list(feed.watchers):
            if watcher.gone is not None:
                closing = asyncio.create_task(watcher.gone())
                self.closing.add(closing)  # held until done: the loop keeps only a weak reference
                closing.add_done_callback(self.closing.discard)

    def standbys_wake(self, conversation_id: str) -> None:
        """A v1 deliverer of the conversation left, on some worker: its page's standbys ask again."""
        feed = self._feeds.get(conversation_id)
        for watcher in feed.watchers if feed is not None else ():
            watcher.standby_wake()

    def watched(self) -> list[ConversationFeed]:
        return [feed for feed in self._feeds.values() if feed.watchers]

    def drop_later(self, feed: ConversationFeed) -> None:
        """Forget an idle conversation's log once it can no longer be resumed."""

        def drop() -> None:
            if self._feeds.get(feed.conversation_id) is feed and feed.idle():
                del self._feeds[feed.conversation_id]

        try:
            asyncio.get_running_loop().call_later(RESUME_WINDOW_SECONDS, drop)
        except RuntimeError:  # no loop (a synchronous caller): the next watcher's leave schedules it
            pass


@dataclass(frozen=True)
class Page:
    """A v1 socket's page (chat/turn/delivery.py): its client, and where it is kept which
    socket of the page delivers a turn."""

    client: str
    claims: Claims


class Watcher:
    """One socket on a conversation: the turn it follows, how far it was sent, and the task
    that sends the rest. It joins from now on: the events of a turn in progress after this
    moment, and every event of the turns that start later. A v1 socket (`page` set) sends a
    turn only while it is its page's deliverer."""

    def __init__(
        self,
        feed: ConversationFeed,
        send: Send,
        *,
        resume_after: int | None = None,
        page: Page | None = None,
        gone: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.feed = feed
        self.send = send
        self.gone = gone  # closes the socket: its conversation was deleted
        self.page = page
        self.socket_id = uuid.uuid4().hex
        self.log = feed.log
        self.sent = len(feed.log.frames) if feed.log is not None else 0
        self.joined = (self.log, self.sent)  # where it came in: a v1 socket's first claim starts there
        self.delivering: bool | None = None  # a v1 socket's part in `self.log`; None: not asked yet
        self.recheck = False  # a standby asks again: the deliverer left, or its claim may have lapsed
        # A socket that connects with its last seq resumes before it is sent anything live.
        self.resume_after = resume_after
        self.wake = asyncio.Event()
        if resume_after is not None or (page is not None and feed.live()):
            self.wake.set()  # a v1 socket claims a turn in progress at once: it may owe a gap
        feed.watchers.add(self)
        self.task = asyncio.create_task(self._run(), name=f"watch {feed.conversation_id}")

    def resume(self, after_seq: int) -> None:
        """Send the current (or last) turn's events after `after_seq`, then `resume_end`."""
        self.resume_after = after_seq
        self.wake.set()

    def standby_wake(self) -> None:
        if self.page is not None and self.delivering is False:
            self.recheck = True
            self.wake.set()

    async def close(self) -> None:
        self.feed.watchers.discard(self)
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        if not self.feed.watchers:
            if self.feed.on_leave is not None:
                self.feed.on_leave(self.feed.conversation_id)
            self.feed.feeds.drop_later(self.feed)

    async def hand_over(self) -> None:
        """A v1 deliverer left (or became v2) mid-turn: another socket of its page goes on from
        what it sent."""
        page, log = self.page, self.log
        if page is None or not self.delivering or log is None or (log.ended and self.sent >= len(log.frames)):
            return
        self.delivering = None
        await page.claims.release(
            conversation_id=self.feed.conversation_id,
            turn_id=log.turn_id,
            client=page.client,
            socket_id=self.socket_id,
            sent=self.sent,
        )
        for watcher in self.feed.watchers:
            watcher.standby_wake()

    async def _run(self) -> None:
        while True:
            if self.delivering is False and self.page is not None and self.page.claims.lapses and self.feed.live():
                try:  # a deliverer whose worker died never hands over: its claim lapses
                    await asyncio.wait_for(self.wake.wait(), CLAIM_SECONDS / 2)
                except TimeoutError:
                    self.recheck = True
            else:
                await self.wake.wait()
            self.wake.clear()
            try:
                await self._send_pending()
            except Exception:  # the socket is gone; its consumer's disconnect closes this watcher
                logger.debug("a watcher's send failed", exc_info=True)
                return

    async def _send_pending(self) -> None:
        if self.resume_after is not None:
            after, self.resume_after = self.resume_after, None
            self.log = self.feed.log
            # Past `after` even when this log lags behind it: what follows is sent once it comes.
            self.sent = after if self.log is not None else 0
            await self._send_log()
            await self.send(_resume_end(self.log))
        while True:
            if await self._delivers():
                await self._send_log()
            if self.feed.log is self.log:
                return
            self.log, self.sent, self.delivering = self.feed.log, 0, None  # a newer turn began: all of it

    async def _delivers(self) -> bool:
        """Whether this socket sends `self.log`: every v2 socket does; of a page's v1 sockets,
        the one holding the turn's claim, which starts where the claim says."""
        log, page = self.log, self.page
        if page is None or log is None or self.delivering:
            return True
        if self.delivering is False and not self.recheck:
            return False
        if log.ended and self.sent >= len(log.frames):
            return False  # it joined after the turn: nothing of it to send
        self.recheck = False
        claim = await page.claims.claim(
            conversation_id=self.feed.conversation_id,
            turn_id=log.turn_id,
            client=page.client,
            socket_id=self.socket_id,
            joined_at=self.joined[1] if self.joined[0] is log else 0,
        )
        self.delivering = claim.won
        if claim.won:
            self.sent = claim.after
        return claim.won

    async def _send_log(self) -> None:
        log = self.log
        while log is not None and self.sent < len(log.frames):
            frame = log.frames[self.sent]
            self.sent += 1
            await self.send(frame)
        page = self.page
        if page is None or log is None or not self.delivering:
            return
        where = {"conversation_id": self.feed.conversation_id, "turn_id": log.turn_id, "client": page.client}
        if log.ended and self.sent >= len(log.frames):
            page.claims.forget(**where, socket_id=self.socket_id)
        elif page.claims.lapses:  # how far it got, for whoever takes over if its worker dies
            page.claims.renew(**where, socket_id=self.socket_id, sent=self.sent)


def _resume_end(log: TurnLog | None) -> str:
    payload: dict[str, Any] = {
        "type": "resume_end",
        "message_id": log.turn_id if log is not None else None,
        "live": log is not None and not log.ended,
        "timestamp": timestamp_now(),
    }
    if log is not None:
        payload["seq"] = len(log.frames)
    return json_encode(payload)
