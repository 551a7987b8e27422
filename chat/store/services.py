"""Writes: conversations and turns. Small keyword-only functions; async twins carry an `a`."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from django.db import IntegrityError, transaction
from django.utils import timezone

from chat.exceptions import ConversationBusy, ConversationNotFound, UnknownMessage
from chat.models import (
    LEASE_STALE_AFTER,
    Conversation,
    Message,
    MessageKind,
    SessionItem,
    Turn,
    TurnStatus,
    UsageRecord,
)
from chat.store.approvals import PauseWrite, turn_pause_write
from chat.store.db import db_async, db_batched
from chat.store.sql import column_values, objects_insert, rows_update, rows_values
from chat.store.tree import BranchRequest, Tree, tree_load
from chat.visibility import owned
from tools.approval import approval_configured
from webhooks.outbox import webhooks_turn_ended

INTERRUPTED_ERROR = "The server running this reply stopped before it finished; the partial reply is kept. Try again."
TITLE_CHARS = 80


def conversation_create(*, conversation_id: str, model: str, owner_id: int | None = None) -> tuple[Conversation, bool]:
    """`owner_id` (AUTH_MODE=django): the new conversation is theirs, and another user's is
    not found, as if it did not exist."""
    conversation, created = Conversation.objects.get_or_create(
        id=conversation_id, defaults={"model": model, "owner_id": owner_id}
    )
    if owner_id is not None and conversation.owner_id != owner_id:
        raise ConversationNotFound(f"Conversation {conversation_id} not found")
    return conversation, created


def conversation_delete(*, conversation_id: str, owner_id: int | None = None) -> None:
    deleted, _ = owned(Conversation.objects.filter(id=conversation_id), owner_id).delete()
    if not deleted:
        raise ConversationNotFound(f"Conversation {conversation_id} not found")


def title_from_message(message: str) -> str:
    words = " ".join(message.split())
    if len(words) <= TITLE_CHARS:
        return words
    return words[: TITLE_CHARS - 1].rsplit(" ", 1)[0] + "…"


@transaction.atomic
def turn_start(
    *,
    conversation_id: str,
    model: str,
    user_message: str,
    owner_id: int | None = None,
    admit: Callable[..., None] | None = None,
    branch: BranchRequest | None = None,
) -> tuple[Turn, list[dict[str, Any]]]:
    """Store the user's message before the model is called; refuse when a live turn runs.
    Returns the turn and the replay items of the path it follows (read in the same trip).

    The turn follows the active path's last turn, or with `branch` starts a new branch
    (chat/store/tree.py): a `regenerate` answers that turn's user message (`user_message` is
    its text) again, an `edit` puts `user_message` beside that user message. The new turn ends
    the active path.

    Every turn starts here, so it costs as few queries as it can (its writes go through
    `chat.store.sql`): the update also locks the conversation's row (PostgreSQL), against a second
    turn starting beside this one. With `owner_id`, another user's conversation is not found
    (never joined). `admit(turn=, history=)` (the budget, accounts.budget) runs last, in the
    same transaction: what it raises undoes the whole start.
    """
    history: list[dict[str, Any]] = []
    new_title = title_from_message(user_message)

    mine = {"id": conversation_id} if owner_id is None else {"id": conversation_id, "owner_id": owner_id}

    def touched() -> bool:
        values = {"model": model, "updated_at": timezone.now()}
        return bool(rows_update(Conversation, where=mine, values=values))

    existed = touched()
    if not existed:
        conversation = Conversation(id=conversation_id, model=model, title=new_title, owner_id=owner_id)
        created = objects_insert([conversation], ignore_conflicts=True)
        existed = not created and touched()  # not created: another worker created it this instant
        if not created and not existed:  # it is another user's
            raise ConversationNotFound(f"Conversation {conversation_id} not found")
    parent_id, prompt_id = None, uuid.uuid4()
    if existed:
        turns_check_idle(conversation_id=conversation_id)
        if branch is None:
            parent_id, path = active_path(conversation_id)
        else:
            tree = tree_load(conversation_id=conversation_id)
            parent_id, prompt_id = _branch_point(tree, branch, prompt_id)
            path = {node.id for node in tree.path(parent_id)} if parent_id else set()
        history = path_items(conversation_id=conversation_id, path=path)
        if not history:  # its first turn, as when POST /conversations made it: the message titles it
            Conversation.objects.filter(id=conversation_id, title="").update(title=new_title)
    elif branch is not None:
        raise UnknownMessage(f"No message {branch.message_id!r} in this conversation.")
    turn = Turn(conversation_id=conversation_id, model=model, parent_id=parent_id, prompt_id=prompt_id)
    objects_insert([turn])
    objects_insert([Message(turn=turn, position=0, kind=MessageKind.USER, content=user_message)])
    values = {"active_leaf_id": turn.id} if branch is None else {"active_leaf_id": turn.id, "branched": True}
    rows_update(Conversation, where={"id": conversation_id}, values=values)
    if admit is not None:
        admit(turn=turn, history=history)
    return turn, history


def active_path(conversation_id: str) -> tuple[Any, set[Any] | None]:
    """The active leaf and the ids of the turns of its path (None: every turn of the
    conversation, which never branched). A branched one's path is walked up each turn's parent:
    its siblings and times are no business of a chat turn."""
    ((leaf, branched),) = rows_values(Conversation, ("active_leaf", "branched"), where={"id": conversation_id})
    if not branched and leaf is not None:
        return leaf, None
    parents = dict(rows_values(Turn, ("id", "parent"), where={"conversation_id": conversation_id}))
    if leaf not in parents:  # no turn yet, or its turn is gone: then the newest turn ends the path
        leaf = tree_load(conversation_id=conversation_id).active_leaf if parents else None
    path, node = set(), leaf
    while node is not None:
        path.add(node)
        node = parents.get(node)
    return leaf, path if len(path) < len(parents) else None


def _branch_point(tree: Tree, branch: BranchRequest, prompt_id: uuid.UUID) -> tuple[Any, uuid.UUID]:
    """The new turn's parent and user message id where `branch` says."""
    if branch.kind == "regenerate":
        answered = tree.turn_of(branch.message_id)
        return answered.parent_id, answered.prompt_id
    return tree.prompt_of(branch.message_id).parent_id, prompt_id


def path_items(*, conversation_id: str, path: set[Any] | None) -> list[dict[str, Any]]:
    """The replay items of the turns in `path` (None: of every turn), in order, and those of no
    turn (an import's)."""
    where = {"conversation_id": conversation_id}
    if path is None:  # a conversation of one path: no turn's id to read
        return column_values(SessionItem, "data", where=where, order_by="id")
    rows = rows_values(SessionItem, ("turn", "data"), where=where, order_by="id")
    return [data for turn_id, data in rows if turn_id is None or turn_id in path]


def turns_check_idle(*, conversation_id: str) -> None:
    streaming = {"conversation_id": conversation_id, "status": TurnStatus.STREAMING}
    heartbeats = column_values(Turn, "heartbeat_at", where=streaming)
    if any(beat >= timezone.now() - LEASE_STALE_AFTER for beat in heartbeats):
        raise ConversationBusy("A reply is still being generated in this conversation; wait for it or cancel it.")
    # A turn paused for tool approval: possible only when some tool needs it (no query otherwise).
    waiting = {"conversation_id": conversation_id, "status": TurnStatus.WAITING}
    if approval_configured() and column_values(Turn, "id", where=waiting):
        raise ConversationBusy("A tool call of the reply waits for your approval; answer it or cancel the reply.")
    # All stale: their processes died, and the reaper marks them interrupted; a new turn need
    # not wait for it.


class EntryWrite(NamedTuple):
    """A display entry to store at `position` of its turn."""

    position: int
    fields: dict[str, Any]
    new: bool  # nothing wrote it before: one insert stores it


class TurnEnd(NamedTuple):
    """How a turn ended, as its row records it."""

    status: TurnStatus
    finish_reason: str
    error_code: str = ""
    error: str = ""

    @classmethod
    def of(cls, finish_reason: str, *, error_code: str = "", error: str = "") -> TurnEnd:
        """The one table from a `stream_end`'s finish reason (and its error) to a turn's status."""
        if finish_reason == "stop":
            status = TurnStatus.COMPLETE
        elif finish_reason == "cancelled":
            status = TurnStatus.CANCELLED
        elif error_code == "interrupted":
            status = TurnStatus.INTERRUPTED
        else:  # "error", "max_turns"
            status = TurnStatus.ERROR
        return cls(status, finish_reason, error_code, error)


def _turn_flush(
    *,
    turn_id: Any,
    conversation_id: str,
    entries: list[EntryWrite],
    session_items: list[dict[str, Any]],
    usage_rows: list[UsageRecord],
    end: TurnEnd | None = None,
    replay_items: list[dict[str, Any]] | None = None,
    pause: PauseWrite | None = None,
) -> bool:
    """Write what a turn's journal holds unsaved, in one transaction: its changed display
    entries, replay items and ledger rows; then renew its lease (`end` None) or end it, with,
    for an unfinished turn, the items the model will be replayed instead of what the SDK saved.
    With `pause` (and a `waiting` end) it pauses for tool approval instead, its run stored.
    False: the turn's lease was lost (another process ended it as orphaned)."""
    # Only while the turn is `streaming`: once another process took over its lapsed lease (its
    # worker seemed dead), the turn is that process's to end, and this writes nothing.
    now = timezone.now()
    running = {"id": turn_id, "status": TurnStatus.STREAMING}
    if end is None:
        values: dict[str, Any] = {"heartbeat_at": now}
    elif end.status == TurnStatus.WAITING:
        values = {"status": TurnStatus.WAITING, "heartbeat_at": now}
    else:
        values = {**end._asdict(), "finished_at": now}
    if not rows_update(Turn, where=running, values=values):
        return False
    for entry in entries:
        message_save(turn_id=turn_id, position=entry.position, fields=entry.fields, new=entry.new)
    if session_items:
        session_items_add(conversation_id=conversation_id, turn_id=turn_id, items=session_items)
    if usage_rows:
        objects_insert(usage_rows)
    if replay_items is not None:
        session_turn_rebuild(conversation_id=conversation_id, turn_id=turn_id, items=replay_items)
    if pause is not None:
        turn_pause_write(turn_id=turn_id, conversation_id=conversation_id, pause=pause)
    if end is not None:
        rows_update(Conversation, where={"id": conversation_id}, values={"updated_at": now})
        # The outbox (webhooks/): its events exist exactly when the turn's end does.
        webhooks_turn_ended(turn_id=turn_id, conversation_id=conversation_id, **end._asdict())
    return True


def message_save(*, turn_id: Any, position: int, fields: dict[str, Any], new: bool = False) -> None:
    """Create or update the display entry at `position`. With `new` the caller knows nothing
    is there yet, and it is one insert; otherwise an update first, then an insert if it found
    nothing."""
    if new:
        objects_insert([Message(turn_id=turn_id, position=position, **fields)])
        return
    # The update is what a running turn's heartbeat does every few seconds: the fast path's
    # statement, not the ORM's (docs/performance.md).
    where = {"turn_id": turn_id, "position": position}
    if rows_update(Message, where=where, values=fields):
        return
    try:
        with transaction.atomic():
            Message.objects.create(turn_id=turn_id, position=position, **fields)
    except IntegrityError:  # another worker's flush created it this instant (PostgreSQL)
        rows_update(Message, where=where, values=fields)


def session_items_add(
    *, conversation_id: str, turn_id: Any, items: list[dict[str, Any]], synthetic: bool = False
) -> None:
    objects_insert(
        [
            SessionItem(conversation_id=conversation_id, turn_id=turn_id, data=item, synthetic=synthetic)
            for item in items
        ]
    )


def session_item_pop(*, conversation_id: str) -> dict[str, Any] | None:
    last = SessionItem.objects.filter(conversation_id=conversation_id).order_by("-id").first()
    if last is None:
        return None
    last.delete()
    return last.data


def session_items_clear(*, conversation_id: str) -> None:
    SessionItem.objects.filter(conversation_id=conversation_id).delete()


@transaction.atomic
def session_turn_rebuild(*, conversation_id: str, turn_id: Any, items: list[dict[str, Any]]) -> None:
    """Replace what the SDK saved of an unfinished turn (it saves whole steps only) with
    `items`, keeping the user's message it saved first."""
    saved = SessionItem.objects.filter(turn_id=turn_id).order_by("id")
    first = saved.first()
    keep = first.pk if first is not None and first.data.get("role") == "user" else None
    saved.exclude(pk=keep).delete()
    if keep is None:  # the turn stopped before the SDK's items were written: the question first
        question = Message.objects.filter(turn_id=turn_id, position=0).values_list("content", flat=True).first()
        items = [{"role": "user", "content": question or ""}, *items]
    session_items_add(conversation_id=conversation_id, turn_id=turn_id, items=items, synthetic=True)


aconversation_create = db_async(conversation_create)
aturn_start = db_async(turn_start)
turn_flush = transaction.atomic(_turn_flush)
aturn_flush = db_batched(_turn_flush)  # in the transaction of its batch
asession_item_pop = db_async(session_item_pop)
asession_items_clear = db_async(session_items_clear)


def session_items_delete_turn(*, turn_id: Any) -> None:
    """Forget what a failed attempt of this turn saved, before it is tried again."""
    SessionItem.objects.filter(turn_id=turn_id).delete()


asession_items_delete_turn = db_async(session_items_delete_turn)
