"""The usage ledger: cost arithmetic, one row per model request, and totals."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import TruncDate

from chat.catalog import PER_MILLION, CatalogModel, Price
from chat.models import UsageRecord


@dataclass(frozen=True, kw_only=True)
class RequestUsage:
    input_tokens: int  # includes cached_input_tokens (OpenAI convention)
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    latency_ms: float | None = None
    ttft_ms: float | None = None
    estimated: bool = False


def usage_cost(
    *, price: Price | None, input_tokens: int, cached_input_tokens: int, output_tokens: int
) -> Decimal | None:
    """US dollars; cached input at the cached rate and never counted twice; None without a price."""
    if price is None:
        return None
    cached = min(cached_input_tokens, input_tokens)
    return (
        Decimal(input_tokens - cached) * Decimal(str(price.input))
        + Decimal(cached) * Decimal(str(price.cached_input))
        + Decimal(output_tokens) * Decimal(str(price.output))
    )


def _per_million(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value)) * PER_MILLION


def usage_row(
    *, conversation_id: str | None, turn_id: Any, model: CatalogModel, usage: RequestUsage, user_id: int | None = None
) -> UsageRecord:
    """A ledger row, not yet saved: a turn writes its rows with its next database trip."""
    price = model.price
    return UsageRecord(
        conversation_id=conversation_id,
        turn_id=turn_id,
        user_id=user_id,
        model=model.id,
        provider=model.provider,
        input_tokens=usage.input_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        output_tokens=usage.output_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        cost_usd=usage_cost(
            price=price,
            input_tokens=usage.input_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            output_tokens=usage.output_tokens,
        ),
        input_price=_per_million(price.input if price else None),
        cached_input_price=_per_million(price.cached_input if price else None),
        output_price=_per_million(price.output if price else None),
        latency_ms=usage.latency_ms,
        ttft_ms=usage.ttft_ms,
        estimated=usage.estimated,
    )


def usage_rows(
    *,
    conversation_id: str | None = None,
    turn_id: Any = None,
    start: date | None = None,
    end: date | None = None,
    user_id: int | None = None,
) -> QuerySet[UsageRecord]:
    rows = UsageRecord.objects.all()
    if user_id is not None:
        rows = rows.filter(user_id=user_id)
    if conversation_id is not None:
        rows = rows.filter(conversation_id=conversation_id)
    if turn_id is not None:
        rows = rows.filter(turn_id=turn_id)
    if start is not None:
        rows = rows.filter(created_at__date__gte=start)
    if end is not None:
        rows = rows.filter(created_at__date__lte=end)
    return rows


_TOTALS = {
    "requests": Count("id"),
    "input_tokens": Sum("input_tokens"),
    "cached_input_tokens": Sum("cached_input_tokens"),
    "output_tokens": Sum("output_tokens"),
    "reasoning_tokens": Sum("reasoning_tokens"),
    "cost_usd": Sum("cost_usd"),
}


def _shape(row: dict[str, Any]) -> dict[str, Any]:
    input_tokens = row["input_tokens"] or 0
    output_tokens = row["output_tokens"] or 0
    cost = row["cost_usd"]
    return {
        "requests": row["requests"],
        "input_tokens": input_tokens,
        "cached_input_tokens": row["cached_input_tokens"] or 0,
        "output_tokens": output_tokens,
        "reasoning_tokens": row["reasoning_tokens"] or 0,
        "total_tokens": input_tokens + output_tokens,
        # Null only when no request had a known price (no made-up cost).
        "cost_usd": None if cost is None and row["requests"] else float(cost or 0),
    }


def stream_end_usage(rows: list[UsageRecord]) -> dict[str, Any]:
    """A turn's totals as its `stream_end` reports them."""
    totals = usage_sum(rows)
    return {key: totals[key] for key in ("requests", "input_tokens", "output_tokens", "total_tokens", "cost_usd")}


def usage_sum(rows: list[UsageRecord]) -> dict[str, Any]:
    """Totals of ledger rows in hand (a turn's), in the shape of `usage_totals`."""
    costs = [row.cost_usd for row in rows if row.cost_usd is not None]
    return _shape(
        {
            "requests": len(rows),
            "input_tokens": sum(row.input_tokens for row in rows),
            "cached_input_tokens": sum(row.cached_input_tokens for row in rows),
            "output_tokens": sum(row.output_tokens for row in rows),
            "reasoning_tokens": sum(row.reasoning_tokens for row in rows),
            "cost_usd": sum(costs) if costs else None,
        }
    )


def usage_totals(**filters: Any) -> dict[str, Any]:
    return _shape(usage_rows(**filters).aggregate(**_TOTALS))


def usage_report(**filters: Any) -> dict[str, Any]:
    rows = usage_rows(**filters)
    by_model = rows.order_by().values("model").annotate(**_TOTALS).order_by("model")
    by_day = rows.annotate(day=TruncDate("created_at")).order_by().values("day").annotate(**_TOTALS).order_by("day")
    return {
        "totals": _shape(rows.aggregate(**_TOTALS)),
        "by_model": [{"model": row["model"], **_shape(row)} for row in by_model],
        "by_day": [{"day": row["day"].isoformat(), **_shape(row)} for row in by_day],
    }


def request_usage(usage: Any, *, started: float, first_output: float | None, ended: float) -> RequestUsage:
    """A ledger entry from the SDK's per-request usage (`response.completed`)."""
    input_details = getattr(usage, "input_tokens_details", None)
    output_details = getattr(usage, "output_tokens_details", None)
    return RequestUsage(
        input_tokens=usage.input_tokens or 0,
        cached_input_tokens=getattr(input_details, "cached_tokens", 0) or 0,
        output_tokens=usage.output_tokens or 0,
        reasoning_tokens=getattr(output_details, "reasoning_tokens", 0) or 0,
        latency_ms=round((ended - started) * 1000, 2),
        ttft_ms=None if first_output is None else round((first_output - started) * 1000, 2),
    )


def usage_estimate(
    *, model: CatalogModel, prompt_items: list[dict[str, Any]], instructions: str, output_text: str
) -> RequestUsage:
    """Tokens of a request the provider never reported (a cut stream, a cancel): counted with
    LiteLLM's token counter and marked estimated."""
    import litellm

    prompt = instructions + "\n" + "\n".join(json.dumps(item, ensure_ascii=False) for item in prompt_items)
    return RequestUsage(
        input_tokens=litellm.token_counter(model=model.litellm_model, text=prompt),
        output_tokens=litellm.token_counter(model=model.litellm_model, text=output_text) if output_text else 0,
        estimated=True,
    )
