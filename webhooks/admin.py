"""The outbox in the admin: what was sent, what waits, why it failed; a retry at once."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from webhooks.models import WebhookDelivery


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "message_id",
        "event_type",
        "url",
        "created_at",
        "attempts",
        "delivered_at",
        "next_attempt_at",
        "last_status",
    )
    list_filter = ("event_type", ("delivered_at", admin.EmptyFieldListFilter))
    search_fields = ("message_id", "url")
    readonly_fields = [field.name for field in WebhookDelivery._meta.fields]
    actions = ["retry_now"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rows come from turns' ends only

    @admin.action(description="Retry the selected undelivered webhooks now")
    def retry_now(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = queryset.filter(delivered_at__isnull=True).update(next_attempt_at=timezone.now())
        self.message_user(request, f"{count} webhook(s) will be retried within a second.")
