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


def conversation_foreign(*, conversation_id: str, owner_id: int | None) -> bool:
    """Whether the id is a conversation the caller may not see (someone else's, or one made
    before users were on). An unknown id is not: its first chat frame makes it the caller's."""
    if owner_id is None:
        return False
    return Conversation.objects.filter(id=conversation_id).exclude(owner_id=owner_id).exists()


aconversation_foreign = db_async(conversation_foreign)
