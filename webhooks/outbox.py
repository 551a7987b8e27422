"""Write a turn's webhook events into the outbox, in the transaction that records its end."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.utils import timezone

from chat.models import TurnStatus, UsageRecord
from chat.usage import stream_end_usage
from webhooks.models import WebhookDelivery

EVENT_OF_STATUS = {
    TurnStatus.COMPLETE: "turn.completed",
    TurnStatus.CANCELLED: "turn.cancelled",
    TurnStatus.ERROR: "turn.failed",
    TurnStatus.INTERRUPTED: "turn.failed",
}


def webhooks_turn_ended(
    *, turn_id: Any, conversation_id: str, status: str, finish_reason: str, error_code: str, error: str
) -> None:
    """Queue the turn's end for every WEBHOOK_URLS receiver (inside the caller's transaction:
    the event is stored exactly when the end is). Nothing without receivers."""
    urls = settings.WEBHOOK_URLS
    if not urls:
        return
    event = EVENT_OF_STATUS[TurnStatus(status)]
    payload = {
        "type": event,
        "timestamp": timezone.now().isoformat(),
        "data": {
            "conversation_id": conversation_id,
            "message_id": str(turn_id),
            "finish_reason": finish_reason,
            "usage": stream_end_usage(list(UsageRecord.objects.filter(turn_id=turn_id))),
            "error": {"code": error_code, "error": error} if error_code else None,
        },
    }
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(message_id=f"msg_{uuid.uuid4().hex}", url=url, event_type=event, payload=payload)
            for url in urls
        ]
    )
