"""BUDGET_USD_PER_DAY (and a user's own in the admin): past it, a turn is refused before any
provider call, with a lone `budget_exceeded` error."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings
from django.utils import timezone

from accounts.budget import spent_today
from accounts.models import BudgetHold, UserLimits
from accounts.tokens import token_create
from chat.models import Conversation, UsageRecord
from chat.store.db import db_async
from tests.accounts.sockets import open_socket
from tests.fake_provider import text

pytestmark = pytest.mark.django_db(transaction=True)
aspent_today = db_async(spent_today)  # returns its connection, as the app's calls do


async def spend(amount: str, *, user=None, days_ago: int = 0) -> None:
    row = await UsageRecord.objects.acreate(model="gpt-4o", provider="openai", cost_usd=Decimal(amount), user=user)
    if days_ago:
        when = timezone.now() - timedelta(days=days_ago)
        await UsageRecord.objects.filter(pk=row.pk).aupdate(created_at=when)


async def chat(socket, provider) -> dict:
    provider.script(text("ok"))
    await socket.send_json_to({"message": "hi"})
    return await socket.receive_json_from(timeout=10)


async def test_without_users_the_budget_is_the_servers(provider):
    await spend("0.60", days_ago=1)  # yesterday's spending does not count
    with override_settings(BUDGET_USD_PER_DAY=Decimal("0.50")):
        _accepted, _sub, socket = await open_socket("/ws/budget1")
        await socket.receive_json_from()
        first = await chat(socket, provider)
        assert first["type"] == "stream"
        while (await socket.receive_json_from(timeout=10))["type"] != "stream_end":
            pass
        await spend("0.50")
        refused = await chat(socket, provider)
        assert refused["type"] == "error" and refused["code"] == "budget_exceeded"
        assert "$0.50" in refused["error"] and refused["retryable"] is False
        assert await socket.receive_nothing(timeout=0.1)  # a lone error, no stream_end
        assert len(provider.requests) == 1
        await socket.disconnect()


async def test_in_django_mode_the_budget_is_per_user_with_an_override(provider, django_user_model):
    alice = await django_user_model.objects.acreate(username="alice")
    bob = await django_user_model.objects.acreate(username="bob")
    _, alice_raw = await sync_to_async(token_create)(user=alice)
    _, bob_raw = await sync_to_async(token_create)(user=bob)
    await spend("2.00", user=alice)
    await UserLimits.objects.acreate(user=bob, budget_usd_per_day=Decimal("0"))
    with override_settings(AUTH_MODE="django", BUDGET_USD_PER_DAY=Decimal("1.00")):
        _, _sub, alice_socket = await open_socket("/ws/budget-a", subprotocols=["bearer", alice_raw])
        await alice_socket.receive_json_from()
        assert (await chat(alice_socket, provider))["code"] == "budget_exceeded"
        _, _sub, bob_socket = await open_socket("/ws/budget-b", subprotocols=["bearer", bob_raw])
        await bob_socket.receive_json_from()
        assert (await chat(bob_socket, provider))["code"] == "budget_exceeded"  # his own limit: $0
        await UserLimits.objects.filter(user=bob).aupdate(budget_usd_per_day=Decimal("5"))
        assert (await chat(bob_socket, provider))["type"] == "stream"  # alice's spending is not his
        assert len(provider.requests) == 1
        await alice_socket.disconnect()
        await bob_socket.disconnect()


async def _one_turn(path: str) -> str:
    """Open a socket, send one message, and say how it ended: `stream_end` or an error code."""
    _accepted, _sub, socket = await open_socket(path)
    await socket.receive_json_from()
    await socket.send_json_to({"message": "hi"})
    try:
        while True:
            event = await socket.receive_json_from(timeout=30)
            if event["type"] == "error" and "seq" not in event:  # a lone error: no turn started
                return event["code"]
            if event["type"] == "stream_end":
                return "stream_end"
    finally:
        await socket.disconnect()


async def test_simultaneous_turns_spend_at_most_one_turn_over_the_budget(provider):
    """20 turns sent at once on a budget of a few turns: each reserves its first request's
    worst cost as it starts, so they cannot all pass the check of an empty ledger."""
    # gpt-4o: $2.50 / $10 per million; a reply of 1,000 prompt and 16,000 output tokens costs
    # $0.1625, under what a turn reserves (its prompt and the model's 16,384-token output cap).
    per_turn = Decimal("0.1625")
    budget = Decimal("1.00")
    earlier = await aspent_today(user_id=None)  # rows another test left, if any
    provider.script(*(text("ok", usage=(1000, 16000, 0), ttft=0.3) for _ in range(20)))
    with override_settings(BUDGET_USD_PER_DAY=earlier + budget):
        outcomes = await asyncio.gather(*(_one_turn(f"/ws/burst{n}") for n in range(20)))
    spent = await aspent_today(user_id=None) - earlier
    assert outcomes.count("stream_end") + outcomes.count("budget_exceeded") == 20
    assert outcomes.count("budget_exceeded") >= 10
    assert spent <= budget + per_turn, f"spent ${spent} on a ${budget} budget"
    assert len(provider.requests) == outcomes.count("stream_end")


async def test_a_refused_turn_stores_nothing_and_a_settled_hold_frees_the_budget(provider):
    """The budget is checked in the transaction that stores the message: a refused turn leaves
    no conversation, turn or message; a turn that ended counts by its ledger rows only."""
    with override_settings(BUDGET_USD_PER_DAY=Decimal("0.01")):
        provider.script(text("ok"))
        assert await _one_turn("/ws/held1") == "stream_end"  # costs $0.0001, but reserved ~$0.16
        provider.script(text("ok"))
        assert await _one_turn("/ws/held2") == "stream_end"  # the first one's hold is settled
        await spend("0.01")
        assert await _one_turn("/ws/held3") == "budget_exceeded"
    assert not await Conversation.objects.filter(id="held3").aexists()
    assert await BudgetHold.objects.acount() == 2
