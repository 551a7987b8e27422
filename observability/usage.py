"""The usage page's numbers (selectors over the ledger) and its charts: inline SVG built here,
so the admin page needs no script and no CDN."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone
from django.utils.html import escape

from chat.models import UsageRecord

# Colour-blind-safe (Okabe-Ito), then grey for the rest.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
OTHER_COLOUR = "#999999"
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 220, 64, 28, 12


@dataclass(frozen=True)
class DayModel:
    day: date
    model: str
    cost: Decimal
    tokens: int


def usage_by_day(*, days: int) -> list[DayModel]:
    """Cost and tokens (input + output) per day and model, the last `days` days, UTC."""
    since = timezone.now() - timedelta(days=days - 1)
    start = since.replace(hour=0, minute=0, second=0, microsecond=0)
    rows = (
        UsageRecord.objects.filter(created_at__gte=start)
        .annotate(day=TruncDate("created_at"))
        .values("day", "model")
        .annotate(cost=Coalesce(Sum("cost_usd"), Decimal(0)), input=Sum("input_tokens"), output=Sum("output_tokens"))
        .order_by("day", "model")
    )
    return [DayModel(row["day"], row["model"], row["cost"], row["input"] + row["output"]) for row in rows]


def costliest_conversations(*, days: int, limit: int = 10) -> list[dict[str, Any]]:
    since = timezone.now() - timedelta(days=days)
    return list(
        UsageRecord.objects.filter(created_at__gte=since, conversation__isnull=False)
        .values("conversation_id", "conversation__title")
        .annotate(cost=Coalesce(Sum("cost_usd"), Decimal(0)), tokens=Sum("output_tokens"), requests=Count("id"))
        .order_by("-cost", "-tokens")[:limit]
    )


def colours(models: list[str]) -> dict[str, str]:
    return {model: PALETTE[i] if i < len(PALETTE) else OTHER_COLOUR for i, model in enumerate(models)}


def stacked_bars(
    rows: list[DayModel], *, days: int, value: str, colour_of: dict[str, str], label: str, unit: str = ""
) -> str:
    """A bar per day, stacked by model; every bar carries its figures as a tooltip."""
    end = timezone.now().date()
    axis = [end - timedelta(days=days - 1 - i) for i in range(days)]
    stacks: dict[date, list[tuple[str, float]]] = {day: [] for day in axis}
    for row in rows:
        if row.day in stacks:
            stacks[row.day].append((row.model, float(getattr(row, value))))
    peak = max((sum(v for _, v in stack) for stack in stacks.values()), default=0.0) or 1.0
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    slot = plot_w / days
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="usage-chart" data-value="{value}" '
        f'width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" aria-label="{escape(label)}">',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 8}" y2="{TOP + plot_h}" stroke="#888"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 10}" text-anchor="end" font-size="11">{_figure(peak, unit)}</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end" font-size="11">0</text>',
    ]
    for index, day in enumerate(axis):
        x, y = LEFT + index * slot + 1, TOP + plot_h
        for model, amount in stacks[day]:
            height = amount / peak * plot_h
            y -= height
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{max(slot - 2, 1):.1f}" height="{height:.1f}" '
                f'fill="{colour_of.get(model, OTHER_COLOUR)}" data-model="{escape(model)}" data-day="{day}">'
                f"<title>{day} {escape(model)}: {_figure(amount, unit)}</title></rect>"
            )
        if index % max(days // 7, 1) == 0:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{HEIGHT - 10}" text-anchor="middle" font-size="11">{day:%m-%d}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _figure(amount: float, unit: str) -> str:
    if unit == "$":
        return f"${amount:,.4f}" if amount < 1 else f"${amount:,.2f}"
    return f"{amount:,.0f}"
