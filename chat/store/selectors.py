"""Reads: conversations, their display lists and replay items."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet

from chat.store.db import db_async
from chat.exceptions import ConversationNotFound
from chat.models import Conversation, Message, MessageKind, SessionItem, Turn, TurnStatus
from chat.store.services import turns_mark_interrupted
from chat.visibility import owned

TOOL_ICON = "🔧"


FAILED_TURN = (TurnStatus.ERROR, TurnStatus.INTERRUPTED)


def conversation_list(*, owner_id: int | None = None) -> QuerySet[Conversation]:
    """Newest first, each with the number of messages its display list shows (a failed turn's
    error entry among them)."""
    return owned(Conversation.objects, owner_id).annotate(
        message_count=Count(
            "turns__messages",
            filter=~Q(turns__messages__kind=MessageKind.ASSISTANT, turns__messages__content=""),
            distinct=True,
        )
        + Count("turns", filter=Q(turns__status__in=FAILED_TURN), distinct=True)
    ).order_by("-updated_at")


def conversation_get(*, conversation_id: str, owner_id: int | None = None) -> Conversation:
    try:
        return owned(Conversation.objects, owner_id).get(id=conversation_id)
    except Conversation.DoesNotExist as exc:
        raise ConversationNotFound(f"Conversation {conversation_id} not found") from exc


def conversation_display_messages(*, conversation_id: str) -> list[dict[str, Any]]:
    """What the frontend showed while the turns streamed (contract's rendering rules)."""
    turns_mark_interrupted(conversation_id=conversation_id)
    messages: list[dict[str, Any]] = []
    turns = Turn.objects.filter(conversation_id=conversation_id).prefetch_related("messages").order_by("created_at")
    for turn in turns:
        messages.extend(entry for message in turn.messages.all() if (entry := _display_entry(message)) is not None)
        # Live, the error has an entry of its own after whatever was streamed (PROTOCOL.md,
        # "Errors after output").
        if turn.status in FAILED_TURN:
            error = turn.error or "The reply was interrupted."
            messages.append({"role": "assistant", "content": f"Error: {error}"})
    return messages


def _display_entry(message: Message) -> dict[str, Any] | None:
    if message.kind == MessageKind.TOOL:
        return {
            "role": "tool",
            "content": f"{TOOL_ICON} {message.tool_name}",
            "toolName": message.tool_name,
            "toolResult": message.tool_result,
        }
    if message.kind == MessageKind.ASSISTANT and not message.content:
        return None
    return {"role": message.kind, "content": message.content}


def session_items(*, conversation_id: str) -> list[dict[str, Any]]:
    return list(
        SessionItem.objects.filter(conversation_id=conversation_id).order_by("id").values_list("data", flat=True)
    )


def conversation_model(*, conversation_id: str) -> str | None:
    return Conversation.objects.filter(id=conversation_id).values_list("model", flat=True).first()


asession_items = db_async(session_items)
aconversation_model = db_async(conversation_model)
