"""The webhooks' outbox: one row per event and receiver, written in the transaction that ends
the turn (so an event exists exactly when its turn's end does), kept until the receiver
answers 2xx."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class WebhookDelivery(models.Model):
    # The `webhook-id` header: the same on every attempt, so a receiver can drop repeats.
    message_id = models.CharField(max_length=64, unique=True)
    url = models.URLField(max_length=2000)
    event_type = models.CharField(max_length=40, db_index=True)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    # The next attempt is due then; a worker that takes a row moves it on by its timeout first,
    # so no other worker sends it meanwhile, and a worker that died mid-send leaves it due again.
    next_attempt_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveIntegerField(null=True, blank=True)  # the receiver's last HTTP status
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["next_attempt_at"], name="webhook_due", condition=models.Q(delivered_at__isnull=True))
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.message_id} -> {self.url}"
