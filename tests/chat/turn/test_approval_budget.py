"""Tool approval and the day's budget: a turn that waited for an answer is checked against the
budget again as the answer resumes it (the user may have spent it in other conversations while
it waited); over it, the turn ends as a new turn over budget is refused, with no provider call,
and within it, it reserves its next request like a started turn, so resumes racing cannot all
overspend."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import Sum
from django.test import override_settings

from accounts.budget import spent_today
from accounts.models import BudgetHold
from chat.models import ApprovalStatus, ToolApproval, Turn, TurnStatus, UsageRecord
from chat.store.db import db_async
from tests.chat.frontend import as_shown, render, without_empty
from tests.chat.turn.test_approval import READ, answer, types, until_request
from tests.conftest import Client, connect
from tests.fake_provider import FakeProvider, text, tools

pytestmark = [pytest.mark.django_db(transaction=True)]
aspent_today = db_async(spent_today)


@pytest.fixture
def gated(provider: FakeProvider, workspace: Any) -> Any:
    (workspace / "todo.md").write_text("- write tests\n")
    with override_settings(TOOLS_REQUIRE_APPROVAL=frozenset({"read_file"})):
        yield provider


async def spend_elsewhere(amount: str) -> None:
    await UsageRecord.objects.acreate(model="gpt-4o", provider="openai", cost_usd=Decimal(amount))


async def paused_turn(conversation_id: str) -> tuple[Client, list[dict[str, Any]]]:
    ws = await connect(conversation_id, protocol=2)
    await ws.send({"message": "What is on my list?"})
    return ws, await until_request(ws)


async def turn_cost(message_id: str) -> Decimal:
    rows = UsageRecord.objects.filter(turn_id=message_id)
    return (await rows.aaggregate(total=Sum("cost_usd")))["total"] or Decimal(0)


async def test_a_resume_after_the_budget_was_spent_elsewhere_ends_over_budget(gated, async_client):
    gated.script(tools(READ, text=["Checking."]), text("You need to write tests."))
    earlier = await aspent_today(user_id=None)
    with override_settings(BUDGET_USD_PER_DAY=earlier + Decimal("1.00")):
        ws, paused = await paused_turn("apprbudget1")
        request = paused[-1]
        await spend_elsewhere("1.00")  # another conversation, while this one waits
        await ws.send(answer(request))
        rest = await ws.until_end()
    await ws.communicator.disconnect()
    assert types(rest) == ["final_response_start", "error", "stream_end"]
    error, end = rest[1], rest[2]
    assert error["code"] == "budget_exceeded" and error["retryable"] is False and "$" in error["error"]
    assert end["finish_reason"] == "error" and end["usage"]["requests"] == 1
    events = paused + rest
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["message_id"] for e in events} == {request["message_id"]}
    assert len(gated.requests) == 1  # the model was not called again
    turn = await Turn.objects.aget(id=request["message_id"])
    assert (turn.status, turn.error_code) == (TurnStatus.ERROR, "budget_exceeded")
    assert (await ToolApproval.objects.aget(id=request["approval_id"])).status == ApprovalStatus.APPROVED
    body = (await async_client.get("/conversations/apprbudget1")).json()
    assert body["pending_approvals"] == [] and "live" not in body
    shown = as_shown(body["messages"])
    assert shown == without_empty(render(events, "What is on my list?"))
    assert shown[1] == {"role": "assistant", "content": "Checking."}  # streamed before the pause: kept
    assert body["usage"]["requests"] == 1


async def test_a_resume_within_budget_goes_on_and_reserves_its_next_request(gated, async_client):
    gated.script(tools(READ), text("You need to write tests."))
    earlier = await aspent_today(user_id=None)
    with override_settings(BUDGET_USD_PER_DAY=earlier + Decimal("1.00")):
        ws, paused = await paused_turn("apprbudget2")
        request = paused[-1]
        first_hold = (await BudgetHold.objects.aget(turn_id=request["message_id"])).amount_usd
        before_pause = await turn_cost(request["message_id"])
        await ws.send(answer(request))
        rest = await ws.until_end()
    await ws.communicator.disconnect()
    assert rest[0]["type"] == "tool_result" and rest[-1]["finish_reason"] == "stop"
    assert len(gated.requests) == 2
    # Its hold was renewed as it resumed: what it had spent, and the request after the pause
    # (whose prompt holds the first request's and its tool call).
    hold = (await BudgetHold.objects.aget(turn_id=request["message_id"])).amount_usd
    assert before_pause > 0 and hold > first_hold + before_pause
    # Both requests are in the ledger, and the day's spending counts them.
    assert await UsageRecord.objects.filter(turn_id=request["message_id"]).acount() == 2
    cost = await turn_cost(request["message_id"])
    assert Decimal(str(rest[-1]["usage"]["cost_usd"])) == pytest.approx(cost)
    assert await aspent_today(user_id=None) - earlier == cost
    body = (await async_client.get("/conversations/apprbudget2")).json()
    assert body["usage"]["requests"] == 2


async def test_two_resumes_racing_on_the_last_of_the_budget_resume_one(gated):
    """Each resume reserves its next request's worst cost in the transaction that takes the
    turn back: with less than one such reservation left, only the first goes on."""
    gated.script(tools(READ), tools(READ), text("Done."), text("Done."))
    earlier = await aspent_today(user_id=None)
    with override_settings(BUDGET_USD_PER_DAY=earlier + Decimal("10")):
        first, first_paused = await paused_turn("apprbudget3")
        second, second_paused = await paused_turn("apprbudget4")
    spent = await aspent_today(user_id=None)
    with override_settings(BUDGET_USD_PER_DAY=spent + Decimal("0.10")):  # under one request's reservation
        await asyncio.gather(first.send(answer(first_paused[-1])), second.send(answer(second_paused[-1])))
        ends = await asyncio.gather(first.until_end(), second.until_end())
    for client in (first, second):
        await client.communicator.disconnect()
    outcomes = sorted(end[-1]["finish_reason"] for end in ends)
    assert outcomes == ["error", "stop"]
    refused = next(end for end in ends if end[-1]["finish_reason"] == "error")
    assert [e["code"] for e in refused if e["type"] == "error"] == ["budget_exceeded"]
    assert len(gated.requests) == 3  # two before the pauses, one after


async def test_without_a_budget_a_resume_is_not_checked(gated):
    gated.script(tools(READ), text("Done."))
    ws, paused = await paused_turn("apprbudget5")
    await spend_elsewhere("1000")
    await ws.send(answer(paused[-1]))
    rest = await ws.until_end()
    await ws.communicator.disconnect()
    assert rest[-1]["finish_reason"] == "stop" and len(gated.requests) == 2
    assert not await BudgetHold.objects.filter(turn_id=paused[-1]["message_id"]).aexists()
