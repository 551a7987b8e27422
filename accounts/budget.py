"""Spending limits from the usage ledger: BUDGET_USD_PER_DAY, or a user's own in the admin.

The day is the UTC day. A turn's cost is known only at its end, so turns that start together
would all pass a check of the ledger alone. Each turn therefore reserves, in the transaction
that starts it, what its first request may cost (its prompt, and the model's whole output
cap): a `BudgetHold`. A turn starts only while the day's ledger plus the holds of running turns
is under the limit; the starts of one budget are serialized (a transaction lock), in every
worker. A hold counts while its turn streams, less what the turn has recorded; once the turn
ends, its ledger rows alone count (the hold is settled).

A turn paused for the user's approval of a tool call (status `waiting`) holds nothing; the
answer that resumes it passes the same check, and renews its hold for the next request
(`resume_admission`), or ends it over budget.

So a day ends over the limit by at most the last admitted turn's cost, plus, for a turn of
several requests (tool calls), what its later requests cost beyond its hold.
"""

from __future__ import annotations

import json
import os
import zlib
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from accounts.identity import Identity
from accounts.models import BudgetHold, UserLimits
from chat.catalog import CatalogModel, catalog_get
from chat.exceptions import ChatError
from chat.models import Turn, TurnStatus, UsageRecord
from chat.store.selectors import session_items
from chat.usage import usage_cost

# UTF-8 bytes per token a reservation assumes: about right for CJK text, a third high for
# English (a reservation should err high).
BYTES_PER_TOKEN = 3
_LOCK_NAMESPACE = "dreamytin:budget:"


class BudgetExceeded(ChatError):
    code = "budget_exceeded"
    http_status = 429


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


def held_for_running_turns(*, user_id: int | None) -> Decimal:
    """What the holds of running turns still reserve: each hold less its turn's recorded cost."""
    holds = dict(
        BudgetHold.objects.filter(user_id=user_id, turn__status=TurnStatus.STREAMING).values_list(
            "turn_id", "amount_usd"
        )
    )
    if not holds:
        return Decimal(0)
    recorded = dict(
        UsageRecord.objects.filter(turn_id__in=holds)
        .order_by()
        .values("turn_id")
        .annotate(total=Sum("cost_usd"))
        .values_list("turn_id", "total")
    )
    left = (max(amount - (recorded.get(turn_id) or 0), Decimal(0)) for turn_id, amount in holds.items())
    return sum(left, Decimal(0))


def request_estimate(*, model: CatalogModel, history: list[dict[str, Any]], message: str) -> Decimal:
    """US dollars one request of the turn may cost: its prompt at the input price and the
    model's output cap at the output price (no tokenizer: bytes over BYTES_PER_TOKEN)."""
    prompt_bytes = len(json.dumps(history, ensure_ascii=False).encode()) + len(message.encode())
    with suppress(OSError):
        prompt_bytes += os.path.getsize(settings.SYSTEM_PROMPT_FILE)
    cost = usage_cost(
        price=model.price,
        input_tokens=-(-prompt_bytes // BYTES_PER_TOKEN),
        cached_input_tokens=0,
        output_tokens=model.max_output_tokens,
    )
    return cost or Decimal(0)  # a model without a known price costs nothing in the ledger


def _budget_lock(user_id: int | None) -> None:
    """Serialize the turn starts of one budget until the transaction ends, in every worker.
    SQLite needs nothing: its transactions take the database's write lock when they begin
    (`transaction_mode` IMMEDIATE)."""
    if connection.vendor == "postgresql":
        key = zlib.crc32(f"{_LOCK_NAMESPACE}{user_id}".encode())
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _within_budget(user_id: int | None) -> bool:
    """Under the budget's lock (held until the transaction ends): False when no limit applies
    (nothing to hold); `BudgetExceeded` when the day's ledger and the running turns' holds
    reach it."""
    _budget_lock(user_id)
    limit = budget_limit(user_id=user_id)
    if limit is None:
        return False
    # The holds first, the ledger last: a turn that ends between the reads (its hold settles
    # and its rows land at once) is then counted twice, never missed.
    held = held_for_running_turns(user_id=user_id)
    spent = spent_today(user_id=user_id)
    if spent + held >= limit:
        running = f" and ${held:.2f} held by replies still running" if held else ""
        raise BudgetExceeded(
            f"The spending limit of ${limit:.2f} a day is reached (${spent:.2f} spent today, UTC{running}); "
            "it resets at midnight UTC."
        )
    return True


@dataclass(frozen=True)
class BudgetAdmission:
    """Called by `turn_start` inside its transaction, once the turn's row exists: refuse the
    turn (the transaction, and with it the stored message, rolls back) or reserve its hold."""

    user_id: int | None

    def __call__(self, *, turn: Turn, history: list[dict[str, Any]], model: CatalogModel, message: str) -> None:
        if _within_budget(self.user_id):
            amount = request_estimate(model=model, history=history, message=message)
            BudgetHold.objects.create(turn=turn, user_id=self.user_id, amount_usd=amount)


def budget_admission(identity: Identity) -> BudgetAdmission | None:
    """The check a turn of `identity` must pass, or None when no limit can apply (no trip to
    the database on every turn)."""
    if not _budget_may_apply(identity.user_id):
        return None
    return BudgetAdmission(identity.user_id)


def _budget_may_apply(user_id: int | None) -> bool:
    """A user may have a limit of their own; without users, only BUDGET_USD_PER_DAY applies."""
    return user_id is not None or settings.BUDGET_USD_PER_DAY is not None


def resume_admission(*, turn_id: Any, conversation_id: str, user_id: int | None, model_id: str) -> ChatError | None:
    """The check a turn paused for tool approval passes again as the answer resumes it (the
    user may have spent the budget elsewhere meanwhile), inside the answer's transaction and
    while the turn still waits (its own hold does not count): the refusal, or None, its hold
    then reserving what it recorded before the pause and its next request, whose prompt is the
    conversation's path up to the turn's items so far."""
    if not _budget_may_apply(user_id):
        return None
    try:
        if not _within_budget(user_id):
            return None
    except BudgetExceeded as exc:
        return exc  # returned, not raised: the answer is recorded all the same
    model = catalog_get().get_or_default(model_id)
    prompt = session_items(conversation_id=conversation_id, leaf=turn_id)
    estimate = request_estimate(model=model, history=prompt, message="") if model is not None else Decimal(0)
    recorded = UsageRecord.objects.filter(turn_id=turn_id).aggregate(total=Sum("cost_usd"))["total"] or Decimal(0)
    hold = {"user_id": user_id, "amount_usd": recorded + estimate}
    BudgetHold.objects.update_or_create(turn_id=turn_id, defaults=hold)
    return None
