"""Reads: conversations, their display lists and replay items."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from chat.exceptions import ConversationNotFound, TurnNotFound
from chat.models import (
    LEASE_STALE_AFTER,
    Conversation,
    Message,
    MessageKind,
    Turn,
    TurnStatus,
    UsageRecord,
    turn_lapsed,
    turn_leased,
)
from chat.store.db import db_async
from chat.store.services import INTERRUPTED_ERROR, path_items, turns_check_idle
from chat.store.tree import BranchRequest, Node, Tree, tree_load
from chat.usage import stream_end_usage
from chat.visibility import owned

TOOL_ICON = "🔧"


FAILED_TURN = (TurnStatus.ERROR, TurnStatus.INTERRUPTED)


def _failed(prefix: str = "") -> Q:
    """Turns that failed, or whose lease lapsed (their worker died; the reaper will say so)."""
    return Q(**{f"{prefix}status__in": FAILED_TURN}) | turn_lapsed(prefix)


def conversation_list(*, owner_id: int | None = None) -> QuerySet[Conversation]:
    """Newest first, each with the number of messages its display list shows (a failed turn's
    error entry among them)."""
    return (
        owned(Conversation.objects, owner_id)
        .annotate(
            message_count=Count(
                "turns__messages",
                filter=~Q(turns__messages__kind=MessageKind.ASSISTANT, turns__messages__content=""),
                distinct=True,
            )
            + Count("turns", filter=_failed("turns__"), distinct=True)
        )
        .order_by("-updated_at")
    )


# `conversation_list`'s rows for a few conversations (a search's page), in one statement written
# by hand: building Django's query took 1.7 ms of Python a search, more than the statement itself
# (tests/chat/test_search.py holds the two equal).
_LISTED = """
SELECT c.id, c.owner_id, c.title, c.model, c.created_at, c.updated_at, c.active_leaf_id, c.branched,
       (SELECT count(*) FROM {messages} AND NOT (m.kind = %s AND m.content = ''))
       + (SELECT count(*) FROM chat_turn t
          WHERE t.conversation_id = c.id AND (t.status IN (%s, %s) OR (t.status = %s AND t.heartbeat_at < %s)))
       AS message_count
FROM chat_conversation c WHERE c.id IN ({keys}) {owned}
"""
# A conversation's messages: on PostgreSQL by the conversation each message carries for the
# search (migration 0008), one index range instead of a lookup per turn (0.8 -> 0.2 ms a page).
_MESSAGES_OF = {
    "postgresql": "chat_message m WHERE m.search_conversation_id = c.id",
    "sqlite": "chat_turn t JOIN chat_message m ON m.turn_id = t.id WHERE t.conversation_id = c.id",
}


def conversation_list_rows(*, conversation_ids: list[str], owner_id: int | None = None) -> list[Conversation]:
    """The rows of `conversation_list` (each with its message_count) of these conversations."""
    if not conversation_ids:
        return []
    owned_sql, mine = ("AND c.owner_id = %s", [owner_id]) if owner_id is not None else ("", [])
    cutoff = connection.ops.adapt_datetimefield_value(timezone.now() - LEASE_STALE_AFTER)
    keys = ", ".join(["%s"] * len(conversation_ids))
    sql = _LISTED.format(messages=_MESSAGES_OF[connection.vendor], keys=keys, owned=owned_sql)
    params = [MessageKind.ASSISTANT, *FAILED_TURN, TurnStatus.STREAMING, cutoff, *conversation_ids, *mine]
    return list(Conversation.objects.raw(sql, params))


def conversation_get(*, conversation_id: str, owner_id: int | None = None) -> Conversation:
    try:
        return owned(Conversation.objects, owner_id).get(id=conversation_id)
    except Conversation.DoesNotExist as exc:
        raise ConversationNotFound(f"Conversation {conversation_id} not found") from exc


def turn_in_progress(*, conversation_id: str) -> str | None:
    """The id of the conversation's turn that is running (its lease is current), if any."""
    running = Turn.objects.filter(turn_leased(), conversation_id=conversation_id)
    turn_id = running.order_by("-created_at").values_list("id", flat=True).first()
    return str(turn_id) if turn_id is not None else None


def conversation_display_messages(
    *, conversation_id: str, active_leaf: Any = None, live: tuple[str, list[dict[str, Any]]] | None = None
) -> list[dict[str, Any]]:
    """The active path (chat/store/tree.py) as the frontend showed it while its turns streamed
    (contract's rendering rules), each entry with its node's id, and which of its siblings it
    is. `active_leaf`: the conversation's. `live`: the turn in progress and its entries as its
    event log shows them (its rows lag behind)."""
    # Plain rows, only the columns shown: a model instance per row, and a prefetch queryset
    # per turn, cost more than the rest of this function (bench.branches).
    turns = {
        row[0]: row
        for row in Turn.objects.filter(conversation_id=conversation_id)
        .order_by()
        .values_list("id", "parent_id", "prompt_id", "created_at", "status", "heartbeat_at", "error")
    }
    tree = Tree([Node(*row[:4]) for row in turns.values()], active_leaf)
    path = tree.path()
    messages_of: dict[uuid.UUID, list[tuple[str, str, str, str | None]]] = {turn.id: [] for turn in path}
    rows = Message.objects.filter(turn__conversation_id=conversation_id).order_by("turn_id", "position")
    for turn_id, kind, content, tool_name, tool_result in rows.values_list(
        "turn_id", "kind", "content", "tool_name", "tool_result"
    ):
        if turn_id in messages_of:  # else off the path
            messages_of[turn_id].append((kind, content, tool_name, tool_result))
    lapsed_before = timezone.now() - LEASE_STALE_AFTER
    messages: list[dict[str, Any]] = []
    for node in path:
        _, _, prompt_id, _, status, heartbeat_at, error = turns[node.id]
        (kind, question, _, _), *rest = messages_of[node.id]
        user = {"role": kind, "content": question, "id": str(prompt_id)}  # a turn's first message
        _mark_branch(user, tree.branch_of_user(node))
        messages.append(user)
        message_id = str(node.id)
        if live is not None and message_id == live[0]:
            answer = [dict(entry) for entry in live[1]]
        else:
            answer = [
                entry
                for kind, content, tool_name, tool_result in rest
                if (entry := display_entry(kind=kind, content=content, tool_name=tool_name, tool_result=tool_result))
                is not None
            ]
            # Live, the error has an entry of its own after whatever was streamed (PROTOCOL.md,
            # "Errors after output").
            lapsed = status == TurnStatus.STREAMING and heartbeat_at < lapsed_before
            if status in FAILED_TURN or lapsed:
                answer.append(error_entry(error or INTERRUPTED_ERROR))
        for entry in answer:
            entry["message_id"] = message_id
        if answer:
            _mark_branch(answer[0], tree.branch_of_answer(node))
        messages.extend(answer)
    return messages


def _mark_branch(entry: dict[str, Any], branch: tuple[int, int]) -> None:
    """An entry with siblings says which of them it is."""
    if branch[1] > 1:
        entry["branch"] = {"index": branch[0], "count": branch[1]}


def error_entry(error: str) -> dict[str, Any]:
    """A failed turn's error, as the frontend writes it into an assistant entry of its own."""
    return {"role": "assistant", "content": f"Error: {error}"}


def display_entry(
    *, kind: str, content: str, tool_name: str = "", tool_result: str | None = None
) -> dict[str, Any] | None:
    if kind == MessageKind.TOOL:
        return {"role": "tool", "content": f"{TOOL_ICON} {tool_name}", "toolName": tool_name, "toolResult": tool_result}
    if kind == MessageKind.ASSISTANT and not content:
        return None
    return {"role": kind, "content": content}


def session_items(*, conversation_id: str, leaf: Any) -> list[dict[str, Any]]:
    """The replay items of the path that ends at turn `leaf` (a running turn's own included)."""
    tree = tree_load(conversation_id=conversation_id, active_leaf=leaf)
    return path_items(conversation_id=conversation_id, path={node.id for node in tree.path(leaf)})


def prompt_text(*, conversation_id: str, message_id: str) -> str:
    """The user message that the turn `message_id` answers (what a `regenerate` sends again)."""
    turn = tree_load(conversation_id=conversation_id).turn_of(message_id)
    return Message.objects.filter(turn_id=turn.id, position=0).values_list("content", flat=True).get()


def branch_check(*, conversation_id: str, branch: BranchRequest, owner_id: int | None = None) -> None:
    """What `services.turn_start` would refuse a `regenerate` or `edit` for, read without a write:
    with `owner_id`, a conversation that is not theirs (`not_found`, and nothing said of its
    turns); a message id that names no fitting message of the conversation, or a turn that runs
    or waits (on any worker). The consumer asks before the turn rate limit counts the frame."""
    if owner_id is not None and Conversation.objects.filter(id=conversation_id).exclude(owner_id=owner_id).exists():
        raise ConversationNotFound(f"Conversation {conversation_id} not found")
    tree = tree_load(conversation_id=conversation_id)
    if branch.kind == "regenerate":
        tree.turn_of(branch.message_id)
    else:
        tree.prompt_of(branch.message_id)
    turns_check_idle(conversation_id=conversation_id)


def conversation_model(*, conversation_id: str) -> str | None:
    return Conversation.objects.filter(id=conversation_id).values_list("model", flat=True).first()


def turn_usage(*, turn_id: Any) -> dict[str, Any]:
    """What a turn's requests cost so far, as `stream_end` reports it."""
    return stream_end_usage(list(UsageRecord.objects.filter(turn_id=turn_id)))


# A turn's status as `GET /conversations/<id>/turns/<message_id>` and the webhooks name it.
TURN_STATUS_NAMES = {
    TurnStatus.STREAMING: "running",
    TurnStatus.COMPLETE: "completed",
    TurnStatus.ERROR: "failed",
    TurnStatus.CANCELLED: "cancelled",
    TurnStatus.INTERRUPTED: "interrupted",
}


def turn_report(*, conversation_id: str, turn_id: str, owner_id: int | None = None) -> dict[str, Any]:
    """A turn of one of the caller's conversations: its status, how it finished, its usage."""
    conversation_get(conversation_id=conversation_id, owner_id=owner_id)
    try:
        key = uuid.UUID(turn_id)
    except ValueError:
        key = None
    turn = Turn.objects.filter(id=key, conversation_id=conversation_id).first() if key is not None else None
    if turn is None:
        raise TurnNotFound(f"Conversation {conversation_id} has no turn {turn_id}")
    return {
        "message_id": str(turn.id),
        "status": TURN_STATUS_NAMES[TurnStatus(turn.status)],
        "finish_reason": turn.finish_reason or None,
        "usage": turn_usage(turn_id=turn.id),
        "error": {"code": turn.error_code, "error": turn.error} if turn.error_code else None,
    }


def turn_latest(*, turn_id: Any) -> bool:
    """Whether no newer turn of its conversation exists."""
    turn = Turn.objects.filter(id=turn_id).values("conversation_id", "created_at").first()
    if turn is None:
        return False
    newer = Turn.objects.filter(conversation_id=turn["conversation_id"], created_at__gt=turn["created_at"])
    return not newer.exists()


asession_items = db_async(session_items)
aprompt_text = db_async(prompt_text)
abranch_check = db_async(branch_check)
aturn_latest = db_async(turn_latest)
aturn_usage = db_async(turn_usage)
aturn_report = db_async(turn_report)
aconversation_get = db_async(conversation_get)
aturn_in_progress = db_async(turn_in_progress)
aconversation_model = db_async(conversation_model)
