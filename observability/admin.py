"""The admin's usage page: cost and tokens per day and model as charts, and the costliest
conversations (the ledger itself stays in chat's admin)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse

from observability.models import UsageChart
from observability.usage import colours, costliest_conversations, stacked_bars, usage_by_day

PERIODS = (7, 30, 90)


@admin.register(UsageChart)
class UsageChartAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        requested = request.GET.get("days", "")
        days = int(requested) if requested.isdigit() and int(requested) in PERIODS else 30
        rows = usage_by_day(days=days)
        models = sorted({row.model for row in rows}, key=lambda model: -sum(r.cost for r in rows if r.model == model))
        colour_of = colours(models)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Usage, last {days} days",
            "opts": self.model._meta,
            "days": days,
            "periods": PERIODS,
            "legend": [(model, colour_of[model]) for model in models],
            "cost_chart": stacked_bars(
                rows, days=days, value="cost", colour_of=colour_of, label="Cost per day (US dollars)", unit="$"
            ),
            "tokens_chart": stacked_bars(
                rows, days=days, value="tokens", colour_of=colour_of, label="Tokens per day (input + output)"
            ),
            "total_cost": sum(row.cost for row in rows),
            "total_tokens": sum(row.tokens for row in rows),
            "conversations": costliest_conversations(days=days),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "observability/usage.html", context)
