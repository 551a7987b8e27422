"""Spending limits from the usage ledger: BUDGET_USD_PER_DAY, or a user's own in the admin.

The day is the UTC day. A turn is refused before it starts once the day's spend reached the
limit; a turn that starts under it runs to its end (its cost is known only afterwards), so a
day can end a turn's cost over the limit, never more.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from accounts.identity import Identity
from accounts.models import UserLimits
from chat.models import UsageRecord
from chat.store.db import db_async


def budget_limit(*, user_id: int | None) -> Decimal | None:
    if user_id is not None:
        own = UserLimits.objects.filter(user_id=user_id).values_list("budget_usd_per_day", flat=True).first()
        if own is not None:
            return own
    return settings.BUDGET_USD_PER_DAY


def spent_today(*, user_id: int | None) -> Decimal:
    """US dollars in today's ledger rows: the user's, or (no users) the whole server's."""
    midnight = datetime.combine(timezone.now().date(), time.min, tzinfo=UTC)
    rows = UsageRecord.objects.filter(created_at__gte=midnight)
    if user_id is not None:
        rows = rows.filter(user_id=user_id)
    return rows.aggregate(total=Sum("cost_usd"))["total"] or Decimal(0)


def budget_left(*, user_id: int | None) -> tuple[Decimal, Decimal] | None:
    """(spent, limit) when the limit is reached, else None."""
    limit = budget_limit(user_id=user_id)
    if limit is None:
        return None
    spent = spent_today(user_id=user_id)
    return (spent, limit) if spent >= limit else None


abudget_left = db_async(budget_left)


async def budget_exceeded(identity: Identity) -> str | None:
    """The message of a `budget_exceeded` error, or None when the turn may start."""
    if identity.user_id is None and settings.BUDGET_USD_PER_DAY is None:
        return None  # no limit can apply: no trip to the database thread on every turn
    reached = await abudget_left(user_id=identity.user_id)
    if reached is None:
        return None
    spent, limit = reached
    return (
        f"The spending limit of ${limit:.2f} a day is reached (${spent:.2f} spent today, UTC); "
        "it resets at midnight UTC."
    )
