"""RETENTION_DAYS: conversations untouched that long are deleted, with their turns, messages and
replay items; the usage ledger keeps its rows (their links are emptied: `UsageRecord`), so
totals and budgets never shrink.

Every process runs the check once an hour (`retention_start`, at the server's start) and
`manage.py purge_conversations` runs it by hand. Several workers may check at once: each
deletes only what is still expired when it deletes, so the work is at worst done twice, never
wrongly. A conversation with a reply running is kept.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from chat.models import Conversation, TurnStatus
from chat.runtime import runtime
from chat.store.db import db_async

logger = logging.getLogger(__name__)
PURGE_EVERY_SECONDS = 3600.0
# The first check waits this long, so a server's start is not slowed by it.
FIRST_PURGE_AFTER_SECONDS = 60.0
BATCH = 500


def conversations_expired(*, days: int, now: datetime | None = None) -> QuerySet[Conversation]:
    cutoff = (now or timezone.now()) - timedelta(days=days)
    return Conversation.objects.filter(updated_at__lt=cutoff).exclude(
        turns__status__in=(TurnStatus.STREAMING, TurnStatus.WAITING)
    )


def conversations_purge(*, days: int, dry_run: bool = False) -> int:
    """Delete the conversations untouched for `days` days (a batch at a time); how many were
    (or, with `dry_run`, would be) deleted."""
    now = timezone.now()
    if dry_run:
        return conversations_expired(days=days, now=now).count()
    deleted = 0
    while ids := list(conversations_expired(days=days, now=now).values_list("id", flat=True)[:BATCH]):
        # Checked again as it deletes: a conversation touched since it was listed stays.
        _, by_model = conversations_expired(days=days, now=now).filter(id__in=ids).delete()
        deleted += by_model.get(Conversation._meta.label, 0)
    return deleted


aconversations_purge = db_async(conversations_purge)


async def _purge_forever() -> None:
    await asyncio.sleep(FIRST_PURGE_AFTER_SECONDS)
    while True:
        days = settings.RETENTION_DAYS
        if days is not None:
            try:
                deleted = await aconversations_purge(days=days)
                if deleted:
                    logger.info(
                        "deleted %s conversations untouched for %s days",
                        deleted,
                        days,
                        extra={"event": "conversations_purged", "deleted": deleted},
                    )
            except Exception:
                logger.exception("could not delete expired conversations", extra={"event": "purge_failed"})
        await asyncio.sleep(PURGE_EVERY_SECONDS)


def retention_start() -> None:
    """Start the hourly check, once (at the server's start), if RETENTION_DAYS is set; the
    runtime stops it at shutdown."""
    state = runtime()
    if settings.RETENTION_DAYS is not None and (state.purger is None or state.purger.done()):
        state.purger = state.spawn(_purge_forever(), name="conversation retention")
