"""Writes and reads on a conversation's tree (chat/store/tree.py) beyond a turn's start: switch
the active path, fork a path into a new conversation, list the nodes with their usage.
(A `regenerate` or an `edit` is a turn's start: `services.turn_start(branch=)`.)"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from django.db import transaction

from chat.exceptions import ConversationBusy, ConversationExists, ConversationNotFound
from chat.models import Conversation, Message, SessionItem, Turn, TurnStatus, UsageRecord
from chat.store.services import turns_check_idle
from chat.store.tree import Node, tree_load
from chat.usage import stream_end_usage, usage_sum
from chat.visibility import owned


def _conversation_lock(*, conversation_id: str, owner_id: int | None) -> Conversation:
    """The caller's conversation, its row locked (PostgreSQL) against a turn starting meanwhile."""
    conversation = owned(Conversation.objects, owner_id).select_for_update().filter(id=conversation_id).first()
    if conversation is None:
        raise ConversationNotFound(f"Conversation {conversation_id} not found")
    return conversation


@transaction.atomic
def branch_switch(*, conversation_id: str, message_id: str, owner_id: int | None = None) -> Conversation:
    """Make the path through `message_id` active, down to the newest turn below it (the branch
    as its user left it last). Refused while a turn runs: it would land on another path."""
    conversation = _conversation_lock(conversation_id=conversation_id, owner_id=owner_id)
    turns_check_idle(conversation_id=conversation_id)
    tree = tree_load(conversation_id=conversation_id, active_leaf=conversation.active_leaf_id)
    role, key = tree.resolve(message_id)
    conversation.active_leaf_id = tree.leaf_under(role, key)
    Conversation.objects.filter(id=conversation_id).update(active_leaf_id=conversation.active_leaf_id)
    return conversation


@transaction.atomic
def conversation_fork(
    *, conversation_id: str, message_id: str, new_id: str | None = None, owner_id: int | None = None
) -> Conversation:
    """A new conversation (the caller's) holding the path up to and including `message_id`,
    with its replay items. Forking at a user message copies it without its answer, as a turn
    that was stopped before any output. The copy has no usage: its requests were the
    original's (whose ledger keeps them)."""
    source = _conversation_lock(conversation_id=conversation_id, owner_id=owner_id)
    tree = tree_load(conversation_id=conversation_id, active_leaf=source.active_leaf_id)
    role, key = tree.resolve(message_id)
    if role == "assistant":
        path, question_only = tree.path(key), None
    else:
        question = tree.answers[key][0]
        path, question_only = tree.path(question.id), question.id
    running = Turn.objects.filter(id__in=[node.id for node in path], status=TurnStatus.STREAMING)
    if question_only is None and running.exists():
        raise ConversationBusy("That reply is still being generated; fork it once it has ended.")
    new_id = new_id or uuid.uuid4().hex
    fork = Conversation(id=new_id, owner_id=owner_id, model=source.model, title=source.title)
    if Conversation.objects.filter(id=new_id).exists():
        raise ConversationExists(f"Conversation {new_id} already exists; choose another session_id.")
    fork.save(force_insert=True)
    fork.active_leaf_id = _copy_path(source.id, fork.id, path, question_only)
    Conversation.objects.filter(id=fork.id).update(active_leaf_id=fork.active_leaf_id)
    return fork


def _copy_path(source_id: str, fork_id: str, path: list[Node], question_only: uuid.UUID | None) -> uuid.UUID:
    """Copy the turns of `path` (the last one's user message only, with `question_only`), their
    display entries and replay items; the last copy's id."""
    originals = Turn.objects.in_bulk([node.id for node in path])
    copies: dict[uuid.UUID, Turn] = {}
    parent: Turn | None = None
    for node in path:
        turn = originals[node.id]
        copy = Turn(
            conversation_id=fork_id,
            parent=parent,
            model=turn.model,
            status=turn.status,
            finish_reason=turn.finish_reason,
            error_code=turn.error_code,
            error=turn.error,
            finished_at=turn.finished_at,
        )
        if node.id == question_only:
            copy.status, copy.finish_reason, copy.error_code, copy.error = TurnStatus.CANCELLED, "cancelled", "", ""
        copies[node.id] = parent = copy
    Turn.objects.bulk_create(copies.values())
    for node in path:  # the originals' times (auto_now_add set them to now)
        copies[node.id].created_at = copies[node.id].heartbeat_at = originals[node.id].created_at
    Turn.objects.bulk_update(copies.values(), ["created_at", "heartbeat_at"])
    entries = Message.objects.filter(turn_id__in=list(copies)).order_by("turn_id", "position")
    if question_only is not None:
        entries = entries.exclude(turn_id=question_only, position__gt=0)
    Message.objects.bulk_create(
        [_copied(entry, turn=copies[entry.turn_id]) for entry in entries],
        batch_size=500,
    )
    items = SessionItem.objects.filter(conversation_id=source_id).order_by("id")
    replay = [
        SessionItem(
            conversation_id=fork_id,
            turn=copies[item.turn_id] if item.turn_id is not None else None,
            data=item.data,
            synthetic=item.synthetic,
        )
        for item in items
        if item.turn_id is None or item.turn_id in copies
    ]
    if question_only is not None:  # the question's own item, without the answer's
        replay = [item for item in replay if item.turn_id != copies[question_only].id] + [
            SessionItem(
                conversation_id=fork_id,
                turn=copies[question_only],
                data={"role": "user", "content": entries.get(turn_id=question_only).content},
                synthetic=True,
            )
        ]
    SessionItem.objects.bulk_create(replay, batch_size=500)
    return copies[path[-1].id].id


def _copied(entry: Message, *, turn: Turn) -> Message:
    entry.pk = None
    entry.turn = turn
    entry._state.adding = True
    return entry


def conversation_tree(*, conversation_id: str, owner_id: int | None = None) -> dict[str, Any]:
    """`GET /conversations/<id>/tree`: every node, each answer with its turn's usage; the
    conversation's total (every branch) and the active path's."""
    conversation = owned(Conversation.objects, owner_id).filter(id=conversation_id).first()
    if conversation is None:
        raise ConversationNotFound(f"Conversation {conversation_id} not found")
    tree = tree_load(conversation_id=conversation_id, active_leaf=conversation.active_leaf_id)
    ledger: dict[Any, list[UsageRecord]] = defaultdict(list)
    for row in UsageRecord.objects.filter(conversation_id=conversation_id):
        ledger[row.turn_id].append(row)
    nodes = tree.nodes()
    for node in nodes:
        node["usage"] = stream_end_usage(ledger[uuid.UUID(node["id"])]) if node["role"] == "assistant" else None
    active = [row for node in tree.path() for row in ledger[node.id]]
    return {
        "nodes": nodes,
        "active_leaf": str(tree.active_leaf) if tree.active_leaf is not None else None,
        "usage": usage_sum([row for rows in ledger.values() for row in rows]),
        "active_usage": usage_sum(active),
    }
