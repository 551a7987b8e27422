"""Deliver the outbox: every worker sends the rows that are due, each at most once at a time.

A worker takes a due row by moving its next attempt past its own timeout (an update that only
one worker's can win); the row is then marked delivered on a 2xx, or due again after a backoff.
A worker that dies mid-send leaves its rows due again once that time passes: at least once,
across restarts, never lost. Each send is its own task, WEBHOOK_CONCURRENCY at most, each cut
at WEBHOOK_TIMEOUT: a receiver that hangs holds a slot for that long and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import timedelta

import httpx
from django.conf import settings
from django.utils import timezone

from chat.store.db import db_async
from webhooks.models import WebhookDelivery
from webhooks.signing import signed_headers

logger = logging.getLogger(__name__)
POLL_SECONDS = 1.0
BACKOFF_FIRST_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 3600.0


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones: 2, 4, 8, ... up to an hour."""
    return min(BACKOFF_FIRST_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_MAX_SECONDS)


def deliveries_take(limit: int) -> list[WebhookDelivery]:
    """Up to `limit` due rows, each taken by this worker alone until its send's timeout passes."""
    now = timezone.now()
    due = WebhookDelivery.objects.filter(delivered_at__isnull=True, next_attempt_at__lte=now)
    taken = []
    held_until = now + timedelta(seconds=settings.WEBHOOK_TIMEOUT + 5)
    for row in due.order_by("next_attempt_at")[:limit]:
        won = WebhookDelivery.objects.filter(id=row.id, next_attempt_at=row.next_attempt_at, delivered_at__isnull=True)
        if won.update(next_attempt_at=held_until):
            taken.append(row)
    return taken


def delivery_record(*, delivery_id: int, attempts: int, status: int | None, error: str) -> None:
    now = timezone.now()
    fields: dict[str, object] = {"attempts": attempts, "last_status": status, "last_error": error}
    if status is not None and 200 <= status < 300:
        fields["delivered_at"] = now
    else:
        fields["next_attempt_at"] = now + timedelta(seconds=backoff(attempts))
    WebhookDelivery.objects.filter(id=delivery_id).update(**fields)


adeliveries_take = db_async(deliveries_take)
adelivery_record = db_async(delivery_record)


async def deliver(client: httpx.AsyncClient, delivery: WebhookDelivery) -> bool:
    """One attempt; whether the receiver took it (2xx)."""
    body = json.dumps(delivery.payload, ensure_ascii=False, separators=(",", ":")).encode()
    key = settings.WEBHOOK_SECRET or b""
    headers = signed_headers(key, delivery.message_id, int(time.time()), body)
    status: int | None = None
    error = ""
    try:
        response = await client.post(delivery.url, content=body, headers=headers, timeout=settings.WEBHOOK_TIMEOUT)
        status = response.status_code
        if not 200 <= status < 300:
            error = f"HTTP {status}: {response.text[:200]}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    attempts = delivery.attempts + 1
    await adelivery_record(delivery_id=delivery.id, attempts=attempts, status=status, error=error)
    if error:
        logger.warning(
            "webhook %s to %s failed (attempt %s): %s",
            delivery.message_id,
            delivery.url,
            attempts,
            error,
            extra={"event": "webhook_failed"},
        )
    return not error


class WebhookSender:
    """This process's deliveries: a poll of the outbox, and the sends in flight."""

    def __init__(self) -> None:
        self.slots = asyncio.Semaphore(settings.WEBHOOK_CONCURRENCY)
        self.in_flight: set[asyncio.Task[bool]] = set()
        self.client = httpx.AsyncClient(follow_redirects=False)

    async def deliver_due(self) -> int:
        """Start a send for each due row there is a free slot for; how many it started."""
        free = settings.WEBHOOK_CONCURRENCY - len(self.in_flight)
        if free <= 0:
            return 0
        for delivery in await adeliveries_take(free):
            task = asyncio.create_task(self._send(delivery), name=f"webhook {delivery.message_id}")
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)
        return free

    async def _send(self, delivery: WebhookDelivery) -> bool:
        async with self.slots:
            return await deliver(self.client, delivery)

    async def drain(self) -> None:
        await asyncio.gather(*self.in_flight, return_exceptions=True)

    async def close(self) -> None:
        for task in list(self.in_flight):
            task.cancel()
        await asyncio.gather(*self.in_flight, return_exceptions=True)
        await self.client.aclose()


async def webhooks_forever() -> None:
    """Poll the outbox while the process runs (started at start-up when WEBHOOK_URLS is set)."""
    sender = WebhookSender()
    try:
        while True:
            try:
                await sender.deliver_due()
            except Exception:
                logger.exception("could not read the webhook outbox", extra={"event": "webhook_poll_failed"})
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await sender.close()


def webhooks_start() -> None:
    """At the server's start, on its loop: deliver the outbox, when there are receivers."""
    if settings.WEBHOOK_URLS:
        from chat.runtime import runtime

        runtime().spawn(webhooks_forever(), name="webhooks")
