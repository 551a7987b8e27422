"""The ledger: cost arithmetic, per-request rows, estimates, and turn totals that add up."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import litellm
import pytest

from chat.catalog import Price, catalog_get
from chat.models import UsageRecord
from chat.usage import usage_cost
from tests.fake_provider import error, text, tools

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("model_id", "map_key"),
    [("gpt-4o", "gpt-4o"), ("claude-sonnet-4-5", "claude-sonnet-4-5"), ("gemini-2.5-flash", "gemini/gemini-2.5-flash")],
)
def test_cost_follows_litellms_price_map_for_each_provider(provider, model_id, map_key):
    model = catalog_get().get(model_id)
    known = litellm.model_cost[map_key]
    cost = usage_cost(price=model.price, input_tokens=10_000, cached_input_tokens=4_000, output_tokens=2_000)
    expected = (
        6_000 * Decimal(str(known["input_cost_per_token"]))
        + 4_000 * Decimal(str(known["cache_read_input_token_cost"]))
        + 2_000 * Decimal(str(known["output_cost_per_token"]))
    )
    assert cost == expected


def test_cached_tokens_are_never_counted_twice():
    price = Price(input=2e-6, output=8e-6, cached_input=0.5e-6)
    assert usage_cost(price=price, input_tokens=100, cached_input_tokens=100, output_tokens=0) == Decimal("0.00005")
    assert usage_cost(price=price, input_tokens=100, cached_input_tokens=0, output_tokens=0) == Decimal("0.0002")


def test_no_price_no_cost():
    assert usage_cost(price=None, input_tokens=100, cached_input_tokens=0, output_tokens=100) is None


async def test_a_tool_turn_adds_up_to_its_ledger_rows(ws, provider):
    provider.script(
        tools(("ls", {}), usage=(100, 20, 40)), tools(("ls", {}), usage=(150, 10, 100)), text("ok", usage=(200, 30, 0))
    )
    events = await ws.turn("go")
    end = events[-1]["usage"]
    rows = [row async for row in UsageRecord.objects.filter(turn_id=events[0]["message_id"]).order_by("created_at")]
    assert len(rows) == end["requests"] == 3
    assert [(r.input_tokens, r.cached_input_tokens, r.output_tokens) for r in rows] == [
        (100, 40, 20),
        (150, 100, 10),
        (200, 0, 30),
    ]
    assert end["input_tokens"] == 450 and end["output_tokens"] == 60 and end["total_tokens"] == 510
    assert end["cost_usd"] == pytest.approx(float(sum(r.cost_usd for r in rows)))
    gpt = litellm.model_cost["gpt-4o"]
    assert float(rows[0].cost_usd) == pytest.approx(
        60 * gpt["input_cost_per_token"] + 40 * gpt["cache_read_input_token_cost"] + 20 * gpt["output_cost_per_token"]
    )
    first = rows[0]
    assert first.model == "gpt-4o" and first.provider == "openai" and first.estimated is False
    assert first.input_price == Decimal("2.5") and first.output_price == Decimal("10")
    assert first.latency_ms is not None and first.ttft_ms is not None and first.ttft_ms <= first.latency_ms


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "gemini-2.5-flash"])
async def test_input_tokens_include_cached_on_every_route(ws, provider, model):
    provider.script(text("hi", usage=(20, 5, 4)))
    events = await ws.turn("hello", model=model)
    row = await UsageRecord.objects.aget(turn_id=events[0]["message_id"])
    assert (row.input_tokens, row.cached_input_tokens, row.output_tokens) == (20, 4, 5)
    assert events[-1]["usage"]["input_tokens"] == 20


async def test_a_model_without_a_price_records_tokens_and_a_null_cost(ws, provider):
    provider.script(text("local"))
    events = await ws.turn("hi", model="local-llama")
    assert events[-1]["usage"]["cost_usd"] is None and events[-1]["usage"]["output_tokens"] == 7
    row = await UsageRecord.objects.aget(turn_id=events[0]["message_id"])
    assert row.cost_usd is None and row.input_price is None


async def test_a_cancelled_turn_is_billed_by_estimate(ws, provider):
    provider.script(text(*["word "] * 300, interval=0.01))
    await ws.send({"message": "long"})
    await ws.receive()
    await asyncio.sleep(0.2)
    await ws.send({"type": "cancel"})
    events = await ws.until_end()
    row = await UsageRecord.objects.aget(turn_id=events[-1]["message_id"])
    assert row.estimated is True and row.input_tokens > 0 and row.output_tokens > 0
    assert events[-1]["usage"]["requests"] == 1 and events[-1]["usage"]["cost_usd"] == pytest.approx(
        float(row.cost_usd)
    )


async def test_a_cut_stream_is_billed_by_estimate_and_a_refused_request_is_not(ws, provider):
    provider.script(text("some ", "words ", "then", cut_after=3))
    cut = await ws.turn("hi")
    row = await UsageRecord.objects.aget(turn_id=cut[0]["message_id"])
    assert row.estimated and row.output_tokens >= 2
    provider.script(error(401))
    refused = await ws.turn("hi")
    assert await UsageRecord.objects.filter(turn_id=refused[0]["message_id"]).acount() == 0
    assert refused[-1]["usage"] == {
        "requests": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": 0,
        "cost_usd": 0.0,
    }
