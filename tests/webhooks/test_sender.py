"""Webhooks at a turn's end: stored with the end, signed as Standard Webhooks do, retried while
the receiver is down (by whichever process runs next), and never held up by a slow receiver."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django.utils import timezone

from dreamytin.config import config_from_env
from tests.chat.sse_client import request
from tests.fake_provider import error, text
from tests.webhooks.receiver import Receiver
from webhooks.models import WebhookDelivery
from webhooks.sender import WebhookSender, backoff
from webhooks.signing import signature_valid

pytestmark = pytest.mark.django_db(transaction=True)
KEY = b"k" * 32
SECRET = "whsec_" + base64.b64encode(KEY).decode()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


async def streamed_turn(conversation_id: str, message: str = "hi") -> list[dict]:
    response = await request("POST", f"/conversations/{conversation_id}/messages", {"message": message, "stream": True})
    return await response.until_end()


async def deliver_all(sender: WebhookSender) -> None:
    await sender.deliver_due()
    await sender.drain()


async def test_a_completed_turn_is_posted_signed_once(provider, receiver):
    provider.script(text("Hello"))
    with override_settings(WEBHOOK_URLS=[receiver.url], WEBHOOK_SECRET=KEY):
        events = await streamed_turn("w1")
        sender = WebhookSender()
        try:
            await deliver_all(sender)
            await deliver_all(sender)  # delivered: not sent again
        finally:
            await sender.close()
    assert len(receiver.received) == 1
    hook = receiver.received[0]
    assert signature_valid(KEY, hook.headers, hook.body)
    assert hook.headers["webhook-id"].startswith("msg_")
    assert abs(int(hook.headers["webhook-timestamp"]) - time.time()) < 60
    body = json.loads(hook.body)
    end = events[-1]["data"]
    assert body["type"] == "turn.completed"
    assert body["data"] == {
        "conversation_id": "w1",
        "message_id": end["message_id"],
        "finish_reason": "stop",
        "usage": end["usage"],
        "error": None,
    }
    row = await WebhookDelivery.objects.aget()
    assert row.delivered_at is not None and row.attempts == 1 and row.last_status == 200


async def test_failed_and_cancelled_turns_have_their_events(provider, receiver):
    provider.script(error(400, "bad request"))
    with override_settings(WEBHOOK_URLS=[receiver.url], WEBHOOK_SECRET=KEY):
        await streamed_turn("w2")
        provider.script(text(*("x" * 100), interval=0.05))
        response = await request("POST", "/conversations/w2/messages", {"message": "again", "stream": True})
        await response.next_event()
        await request("POST", "/conversations/w2/cancel")
        await response.until_end()
    kinds = [row.event_type async for row in WebhookDelivery.objects.order_by("created_at")]
    assert kinds == ["turn.failed", "turn.cancelled"]
    failed = await WebhookDelivery.objects.aget(event_type="turn.failed")
    assert failed.payload["data"]["finish_reason"] == "error"
    assert failed.payload["data"]["error"]["code"]


async def test_a_receiver_that_is_down_gets_it_later_from_a_new_process(provider, receiver):
    provider.script(text("Hello"))
    receiver.status = 503
    with override_settings(WEBHOOK_URLS=[receiver.url], WEBHOOK_SECRET=KEY):
        await streamed_turn("w3")
        first = WebhookSender()
        await deliver_all(first)
        await first.close()  # the process stops
        row = await WebhookDelivery.objects.aget()
        assert row.delivered_at is None and row.attempts == 1 and row.last_status == 503
        assert row.next_attempt_at > timezone.now() + timedelta(seconds=backoff(1) - 1)
        second = WebhookSender()  # a restarted process: not due yet, nothing sent
        await deliver_all(second)
        assert len(receiver.received) == 1
        receiver.status = 204
        await WebhookDelivery.objects.all().aupdate(next_attempt_at=timezone.now())  # the backoff passed
        await deliver_all(second)
        await second.close()
    assert len(receiver.received) == 2
    assert receiver.received[0].headers["webhook-id"] == receiver.received[1].headers["webhook-id"]
    row = await WebhookDelivery.objects.aget()
    assert row.delivered_at is not None and row.attempts == 2


async def test_a_hanging_receiver_holds_up_nothing_else(provider, receiver):
    slow = Receiver()
    slow.hang = 3.0
    provider.script(text("Hello"))
    try:
        with override_settings(WEBHOOK_URLS=[slow.url, receiver.url], WEBHOOK_SECRET=KEY, WEBHOOK_TIMEOUT=1.0):
            await streamed_turn("w4")
            sender = WebhookSender()
            started = time.monotonic()
            await sender.deliver_due()
            deadline = time.monotonic() + 5
            while not receiver.received and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert receiver.received and receiver.received[0].at - started < 0.9
            await sender.drain()
            assert time.monotonic() - started < 2.5  # the hanging one was cut at its timeout
            await sender.close()
        slow_row = await WebhookDelivery.objects.aget(url=slow.url)
        assert slow_row.delivered_at is None and "Timeout" in slow_row.last_error
    finally:
        slow.stop()


async def test_no_receivers_no_outbox(provider):
    provider.script(text("Hello"))
    await streamed_turn("w5")
    assert not await WebhookDelivery.objects.aexists()


def test_the_secret_and_urls_are_checked_at_start_up():
    assert config_from_env({"WEBHOOK_URLS": "https://a.example/h", "WEBHOOK_SECRET": SECRET}).webhook_secret == KEY
    for bad in (
        {"WEBHOOK_URLS": "https://a.example/h"},
        {"WEBHOOK_URLS": "https://a.example/h", "WEBHOOK_SECRET": "not-whsec"},
        {"WEBHOOK_URLS": "https://a.example/h", "WEBHOOK_SECRET": "whsec_%%%"},
        {"WEBHOOK_URLS": "ftp://a.example/h", "WEBHOOK_SECRET": SECRET},
    ):
        with pytest.raises(ImproperlyConfigured, match="WEBHOOK"):
            config_from_env(bad)


def test_backoff_grows_and_is_capped():
    assert [backoff(n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert backoff(40) == 3600.0
