"""Which conversations a caller sees: all of them without users, only one's own with users
(AUTH_MODE=django, where every caller has an `owner_id`)."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Manager, QuerySet

from chat.models import Conversation
from chat.store.db import db_async

M = TypeVar("M", bound=Any)


def owned(rows: QuerySet[M] | Manager[M], owner_id: int | None) -> QuerySet[M]:
    rows = rows.all()
    return rows if owner_id is None else rows.filter(owner_id=owner_id)


def conversation_claim(*, conversation_id: str, owner_id: int | None, model: str) -> bool:
    """Whether the caller may watch the conversation: with users, one that is theirs. An
    unknown id becomes theirs now (an empty conversation, as `POST /conversations` makes), so
    nobody else can start a turn in it for this socket to see."""
    if owner_id is None:
        return True
    conversation, _ = Conversation.objects.get_or_create(
        id=conversation_id, defaults={"model": model, "owner_id": owner_id}
    )
    return conversation.owner_id == owner_id


aconversation_claim = db_async(conversation_claim)
