"""A turn, from the user's message to `stream_end`: the one door into chat/turn/.

The consumer, the REST views and start-up call these functions and nothing else of this
package. Behind them, one module per concern:
- `runner`: drives the Agents SDK for one turn (`agent` builds what it runs, `mapping` turns
  the SDK's events into the contract's, `session` replays the conversation to the model);
- `journal`: what the turn has shown and produced and not yet written, and its one `flush()`;
- `lease`: its heartbeat, when it lapses, who claims it, and the events that close a turn;
- `running`: the turns running in this process, owned by their conversation, and their
  detach grace;
- `fanout`: every socket's view of a conversation's turn in this process, `delivery`: which of
  a page's v1 sockets shows a turn, and `relay`: the same across workers through Redis;
- `approval`: a turn that pauses for the user's approval of a tool call, and goes on (on
  whichever worker takes the answer) once answered.
This process's state for all of it is one object, `chat.runtime.runtime()`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from redis.exceptions import RedisError

from chat.catalog import catalog_get
from chat.exceptions import ModelUnavailable, UnknownModel
from chat.models import Turn
from chat.protocol import TurnEvent
from chat.runtime import Runtime, runtime
from chat.store import approvals, selectors, services
from chat.store.tree import BranchRequest
from chat.turn import lease
from chat.turn.delivery import client_key, seen_record_redis
from chat.turn.fanout import Page, Send, Watcher
from chat.turn.journal import journal_from_frames
from chat.turn.relay import catch_up, forget_everywhere, log_key, watch_begin, watch_end
from chat.turn.runner import TurnPlan
from chat.turn.running import turn_close, turn_joined, turn_launch, turns_drain
from chat.turn.waiting import approval_answer, approvals_expire, waiting_cancel
from tools.approval import approval_configured

logger = logging.getLogger(__name__)
__all__ = [
    "BranchRequest",
    "Snapshot",
    "Watcher",
    "approval_answer",
    "approvals_expire",
    "branch_check",
    "client_key",
    "conversation_forget",
    "resume",
    "snapshot",
    "turn_cancel",
    "turn_running",
    "turn_start",
    "turns_cancel_all",
    "turns_closed",
    "turns_reap",
    "turns_started",
    "turns_stopping",
    "unwatch",
    "upgrade",
    "watch",
]


async def turn_start(
    *,
    conversation_id: str,
    message: str | None,
    model_id: str | None,
    owner_id: int | None = None,
    sender: Watcher | None = None,
    admit: Callable[..., None] | None = None,
    branch: BranchRequest | None = None,
    background: bool = False,
) -> str:
    """Check the model, store the user's message, and run the turn for every socket on the
    conversation; its id (`message_id`), or a `ChatError` for a lone error (nothing started).
    `sender`: the socket that sent it, which shows it to its page while it is open. `admit(turn=,
    history=, model=, message=)` may refuse the turn inside its start's transaction (the budget:
    accounts.budget). `branch`: a `regenerate` (`message` None: that turn's user message is sent
    again) or an `edit`, on a new branch of the conversation's tree (chat/store/tree.py).
    `background`: it runs to its end with nobody watching (no detach grace)."""
    if message is None:
        assert branch is not None and branch.kind == "regenerate"
        message = await selectors.aprompt_text(conversation_id=conversation_id, message_id=branch.message_id)
    catalog = catalog_get()
    chosen = (
        model_id or await selectors.aconversation_model(conversation_id=conversation_id) or catalog.usable_default()
    )
    model = catalog.get(chosen)
    if model is None:
        raise UnknownModel(f"Unknown model {chosen!r}; GET /models lists the available ones.")
    if not model.usable:
        raise ModelUnavailable(
            f"The model {chosen!r} is not available: its provider ({model.provider}) has no API key configured."
        )
    turn, history = await services.aturn_start(
        conversation_id=conversation_id,
        model=model.id,
        user_message=message,
        owner_id=owner_id,
        admit=partial(admit, model=model, message=message) if admit is not None else None,
        branch=branch,
    )
    plan = TurnPlan(
        conversation_id=conversation_id,
        turn_id=turn.id,
        model=model,
        message=message,
        history=history,
        owner_id=owner_id,
    )
    state = runtime()
    if sender is not None and sender.page is not None:
        # Before the turn's first event can reach a socket, on any worker.
        await sender.page.claims.claim(
            conversation_id=conversation_id,
            turn_id=str(turn.id),
            client=sender.page.client,
            socket_id=sender.socket_id,
            joined_at=0,
            forced=True,
        )
    turn_launch(state, plan, background=background)
    return str(turn.id)


async def branch_check(conversation_id: str, branch: BranchRequest, *, owner_id: int | None) -> None:
    """The `ChatError` that `turn_start` would raise for `branch`'s message id, for a turn
    running on any worker, or for another user's conversation (`owner_id`), found by reads
    alone: a frame refused for it must not count against the user's turn rate limit
    (`turn_start` checks again, in its transaction)."""
    await selectors.abranch_check(conversation_id=conversation_id, branch=branch, owner_id=owner_id)


def turn_running(conversation_id: str) -> bool:
    """Whether this process runs a turn of the conversation (a turn on another worker is found
    by `turn_start`, which reads the database)."""
    return conversation_id in runtime().turns


async def turn_cancel(conversation_id: str) -> None:
    """Cancel the conversation's turn, wherever it runs, or waits for a tool approval."""
    state = runtime()
    turn = state.turns.get(conversation_id)
    if turn is not None:
        await turn.cancel()
        if not turn.run.paused:
            return
        # It paused for a tool approval as the cancel came: it waits now, so end it there.
    if approval_configured() and await waiting_cancel(state, conversation_id):
        return
    relay = state.relay()
    if relay is not None:
        try:
            await relay.control_send("cancel", conversation_id)
        except (RedisError, OSError):
            logger.warning("could not send a cancel to the other workers", exc_info=True)


async def watch(
    conversation_id: str,
    send: Send,
    *,
    resume_after: int | None = None,
    client: str | None = None,
    gone: Callable[[], Awaitable[None]] | None = None,
) -> Watcher:
    """A socket joins its conversation: it receives its turns' events from now on, or, with
    `resume_after`, the events after that seq first, then `resume_end`. `client`: a v1
    socket's page (chat/turn/delivery.py), which is shown each turn by one of its sockets.
    `gone` closes the socket when the conversation is deleted."""
    state = runtime()
    feed = state.feeds.get(conversation_id)
    feed.joining += 1
    try:
        await watch_begin(state.relay(), feed)
    finally:
        feed.joining -= 1
    page = Page(client, state.claims()) if client is not None and resume_after is None else None
    watcher = Watcher(feed, send, resume_after=resume_after, page=page, gone=gone)
    turn_joined(state, conversation_id)
    return watcher


def upgrade(watcher: Watcher) -> None:
    """The socket speaks v2 (`hello`, `resume`): from now on it is sent every turn."""
    if watcher.page is not None:
        runtime().spawn(watcher.hand_over())
        watcher.page = None


async def resume(watcher: Watcher, after_seq: int) -> None:
    """Send the socket the turn's events after `after_seq`, up to date with the stream first."""
    upgrade(watcher)
    await catch_up(runtime().relay(), watcher.feed)
    watcher.resume(after_seq)


async def unwatch(watcher: Watcher) -> None:
    await watcher.close()
    state = runtime()
    # Redis's round trips: the socket's close does not wait for them (its connection slot is
    # freed when the close returns). Another socket of its page takes over the turn it showed.
    state.spawn(watcher.hand_over())
    state.spawn(watch_end(state.relay(), watcher.feed))


@dataclass(frozen=True)
class Snapshot:
    """A running turn as its sockets were shown it, up to event `seq`."""

    turn_id: str
    seq: int
    display: list[dict[str, Any]]  # its entries as the frontend shows them


def snapshot(conversation_id: str, *, client: str | None = None) -> Snapshot | None:
    """The conversation's turn in progress, if any (a synchronous view's read, in a thread).
    `client`: the page that asked, whose v1 socket joining next starts after what it shows."""
    turn_id = selectors.turn_in_progress(conversation_id=conversation_id)
    waiting = None
    if turn_id is None and approval_configured():
        waiting = approvals.waiting_turn_frames(conversation_id=conversation_id)
    if turn_id is None and waiting is None:
        return None
    state = runtime()
    if waiting is not None:  # paused for a tool approval: what it showed is stored with it
        turn_id, frames = waiting
    else:
        assert turn_id is not None
        frames = _frames(state, conversation_id, turn_id, local=True)
    journal = journal_from_frames(turn_id=turn_id, conversation_id=conversation_id, frames=frames)
    if client is not None:
        where = {"conversation_id": conversation_id, "client": client, "turn_id": turn_id, "seq": len(frames)}
        if state.relay_configured():
            seen_record_redis(state.sync_redis(), **where)
        else:
            state.local_claims.seen_record(**where)
    return Snapshot(turn_id=turn_id, seq=len(frames), display=journal.display())


def _frames(state: Runtime, conversation_id: str, turn_id: str, *, local: bool) -> list[str]:
    """The frames of `turn_id` sent so far (blocking): this process's log if it has the turn
    (and `local`), else the Redis stream, which every worker's log follows."""
    feed = state.feeds.find(conversation_id)
    log = feed.log if feed is not None else None
    relayed = state.relay_configured()
    if log is not None and log.turn_id == turn_id and (local or not relayed):
        return list(log.frames)
    if not relayed:
        return []
    entries = state.sync_redis().xrange(log_key(conversation_id))
    return [fields[b"frame"].decode() for _, fields in entries if fields[b"turn"].decode() == turn_id]


def conversation_forget(conversation_id: str) -> None:
    """The conversation was deleted (blocking: the view's thread): on every worker, its running
    turn stops, its sockets close, and its last turn can no longer be resumed."""
    state = runtime()
    if state.relay_configured():
        forget_everywhere(state.sync_redis(), conversation_id)
        return
    loop = state.loop_of(conversation_id)
    if loop is not None:
        loop.call_soon_threadsafe(state.forget, conversation_id)
    else:  # no socket, no turn: only its log, which no task is reading
        state.forget(conversation_id)


async def turns_reap() -> int:
    """End this deployment's turns whose worker died; how many this process ended."""
    state = runtime()

    async def frames(conversation_id: str, turn_id: str) -> list[str]:
        # The stream, not this process's log, which stops following a conversation nobody here watches.
        return await asyncio.to_thread(_frames, state, conversation_id, turn_id, local=False)

    def close(turn: Turn, sent: int, events: list[TurnEvent]) -> None:
        turn_close(state, turn.conversation_id, str(turn.id), turn.model, sent, events)

    def runs_here(conversation_id: str) -> bool:
        return conversation_id in state.turns

    return await lease.turns_reap(runs_here=runs_here, frames=frames, close=close)


async def _periodic() -> int:
    reaped = await turns_reap()
    await approvals_expire()
    return reaped


def turns_started() -> None:
    """At the server's start, on its loop: end the turns of workers that died, and decline the
    tool approval requests left unanswered too long, from now on."""
    state = runtime()
    if state.reaper is None or state.reaper.done():
        state.reaper = state.spawn(lease.reap_forever(_periodic), name="turn reaper")


async def turns_stopping() -> None:
    """Before the server exits: let the running turns end (or end them as interrupted)."""
    await turns_drain(runtime())


async def turns_closed() -> None:
    """Last, once nothing else needs them: stop the background work and close the clients."""
    await runtime().close()


async def turns_cancel_all() -> None:
    """Cancel every turn of this process (a test's end)."""
    await asyncio.gather(*(turn.cancel() for turn in list(runtime().turns.values())), return_exceptions=True)
