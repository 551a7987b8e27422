"""RETENTION_DAYS: conversations untouched that long are deleted by the server's periodic task
and by `manage.py purge_conversations`; the usage ledger keeps its rows."""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from chat import retention
from chat.models import Conversation, Message, SessionItem, Turn, TurnStatus, UsageRecord
from chat.runtime import runtime
from chat.store import services
from tests.chat.test_search import chat, found

pytestmark = pytest.mark.django_db(transaction=True)


def aged(conversation_id: str, days: float) -> None:
    Conversation.objects.filter(id=conversation_id).update(updated_at=timezone.now() - timedelta(days=days))


def spent(conversation_id: str) -> None:
    turn = Turn.objects.filter(conversation_id=conversation_id).first()
    UsageRecord.objects.create(
        conversation_id=conversation_id, turn=turn, model="gpt-4o", provider="openai", input_tokens=9
    )


def purge(*args: str) -> str:
    out = io.StringIO()
    call_command("purge_conversations", *args, stdout=out)
    return out.getvalue()


def test_purge_deletes_what_is_untouched_and_keeps_the_ledger(client):
    chat("stale", "An old question about pelicans", "An old answer")
    chat("fresh", "A new question about pelicans", "A new answer")
    spent("stale")
    aged("stale", 31)
    aged("fresh", 29)
    with override_settings(RETENTION_DAYS=30):
        assert purge("--dry-run") == "1 conversations untouched for 30 days would be deleted.\n"
        assert Conversation.objects.filter(id="stale").exists()
        assert purge() == "1 conversations untouched for 30 days deleted.\n"
    assert list(Conversation.objects.values_list("id", flat=True)) == ["fresh"]
    assert not Message.objects.filter(turn__conversation_id="stale").exists()
    assert not SessionItem.objects.filter(conversation_id="stale").exists()
    row = UsageRecord.objects.get()  # kept, its links emptied
    assert row.input_tokens == 9 and row.conversation_id is None and row.turn_id is None
    assert [hit["id"] for hit in found(client, "pelicans")] == ["fresh"]


def test_a_running_reply_keeps_its_conversation():
    services.turn_start(conversation_id="busy", model="gpt-4o", user_message="still going")
    aged("busy", 100)
    assert Turn.objects.get(conversation_id="busy").status == TurnStatus.STREAMING
    assert purge("--days", "30") == "0 conversations untouched for 30 days deleted.\n"


def test_the_command_needs_a_number_of_days():
    with override_settings(RETENTION_DAYS=None), pytest.raises(CommandError, match="RETENTION_DAYS is not set"):
        purge()
    with pytest.raises(CommandError, match="at least 1"):
        purge("--days", "0")


async def test_the_server_purges_on_its_own(monkeypatch):
    await asyncio.to_thread(chat, "stale", "Old")
    await asyncio.to_thread(aged, "stale", 10)
    monkeypatch.setattr(retention, "FIRST_PURGE_AFTER_SECONDS", 0)
    with override_settings(RETENTION_DAYS=7):
        retention.retention_start()
        task = runtime().purger
        assert task is not None
        try:
            for _ in range(100):
                if not await Conversation.objects.filter(id="stale").aexists():
                    break
                await asyncio.sleep(0.05)
            assert not await Conversation.objects.filter(id="stale").aexists()
        finally:
            task.cancel()
            runtime().purger = None
